"""Concept folders made by hand for the tiny model (no training), for fast engine tests."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from dreamsampler.engine.concepts import (
    CONCEPT_FILE,
    LORA_FILE,
    TI_FILE,
    ConceptMeta,
    fingerprint,
    token_embedding,
)
from dreamsampler.engine.families import ModelFamily, load_model


def write_meta(folder: Path, model: ModelFamily, method: str) -> None:
    meta = ConceptMeta(name=folder.name, method=method,  # type: ignore[arg-type]
                       placeholder_token=f"<{folder.name}>", base_model=model.model_id,
                       base_fingerprint=fingerprint(model))
    (folder / CONCEPT_FILE).write_text(yaml.safe_dump(meta.model_dump(mode="json")))


def ti_concept(root: Path, name: str = "warm", embeds: torch.Tensor | None = None) -> Path:
    """``<root>/<name>``: a textual-inversion concept with one (random or given) embedding row."""
    model = load_model("tiny", "cpu")
    dim = token_embedding(model.components["text_encoder"]).embedding_dim
    folder = root / name
    folder.mkdir(parents=True)
    if embeds is None:
        embeds = torch.randn(1, dim, generator=torch.Generator().manual_seed(3))
    save_file({f"<{name}>": embeds}, str(folder / TI_FILE))
    write_meta(folder, model, "ti")
    return folder


def lora_concept(root: Path, name: str = "tint", poison: bool = False) -> Path:
    """``<root>/<name>``: a LoRA concept (rank 2 on ``time_emb_proj``); ``poison`` puts an
    infinity into one of its tensors."""
    from peft import LoraConfig

    model = load_model("tiny", "cpu")
    folder = root / name
    folder.mkdir(parents=True)
    unet = load_model("tiny", "cpu").components["unet"]
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights="gaussian",
                                target_modules=["time_emb_proj"]), adapter_name=name)
    unet.save_lora_adapter(str(folder), adapter_name=name, weight_name=LORA_FILE)
    if poison:
        from safetensors import safe_open

        with safe_open(str(folder / LORA_FILE), "pt") as fh:
            metadata = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        first = sorted(tensors)[0]
        tensors[first] = tensors[first].clone()
        tensors[first].view(-1)[0] = float("inf")
        save_file(tensors, str(folder / LORA_FILE), metadata=metadata)
    write_meta(folder, model, "lora")
    return folder


def dreambooth_concept(root: Path, name: str = "db", poison: bool = False) -> Path:
    """``<root>/<name>``: a DreamBooth concept (a copy of the tiny UNet); ``poison`` sets one
    weight to NaN."""
    model = load_model("tiny", "cpu")
    folder = root / name
    folder.mkdir(parents=True)
    unet = load_model("tiny", "cpu").components["unet"]
    if poison:
        with torch.no_grad():
            next(unet.parameters()).view(-1)[0] = float("nan")
    unet.save_pretrained(str(folder / "unet"), safe_serialization=True)
    write_meta(folder, model, "dreambooth")
    return folder
