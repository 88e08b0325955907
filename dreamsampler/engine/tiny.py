"""Miniature random-weight pipelines of the real classes, built offline in code.

``tiny`` (MusicLDM-shaped) and ``tiny:audioldm`` are wiring/test fixtures: the same diffusers and
transformers classes as the full models (``AutoencoderKL``, ``UNet2DConditionModel``,
``ClapModel``/``ClapTextModelWithProjection``, ``RobertaTokenizer``, ``SpeechT5HifiGan``,
``DDIMScheduler``) with a few thousand random weights each. They produce noise, not music, but
every code path (text encoding, sampling loop, SDEdit, VAE, vocoder, concepts) runs in milliseconds
with no network. Weights are seeded, so two builds are identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dreamsampler.engine.catalog import PIPELINE_FAMILIES, TINY_NAMES
from dreamsampler.engine.tiny_audioldm import SAMPLE_RATE, tiny_clap_components, tiny_tokenizer

__all__ = ["SAMPLE_RATE", "TINY_NAMES", "build_tiny_components", "save_tiny_pipeline",
           "tiny_tokenizer"]

_PIPELINE_CLASS = {family: pipeline for pipeline, family in PIPELINE_FAMILIES.items()}


def build_tiny_components(name: str = "tiny", seed: int = 0) -> tuple[str, dict[str, object]]:
    """Build a tiny pipeline's components in memory.

    Args:
        name: a key of :data:`TINY_NAMES`.
        seed: seeds the random weights (the global RNG is left as it was).

    Returns:
        ``(family, components)`` with keys tokenizer, text_encoder, vae, unet, vocoder, scheduler.

    Raises:
        KeyError: unknown tiny name.
    """
    family = TINY_NAMES[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family in ("stable-audio", "sa3"):  # imported here: they build on diffusers' DiTs
            from dreamsampler.engine.tiny_stable_audio import build_components

            components = build_components(family)
        elif family == "audioldm2":
            from dreamsampler.engine.tiny_audioldm2 import tiny_audioldm2_components

            components = tiny_audioldm2_components()
        else:
            components = tiny_clap_components(family)
    for module in components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    return family, components


def save_tiny_pipeline(directory: Path, name: str = "tiny", seed: int = 0) -> Path:
    """Write a tiny pipeline in the diffusers folder layout (``model_index.json`` + subfolders).

    The result loads through the same ``from_pretrained(dir)`` code as a downloaded model.
    """
    family, components = build_tiny_components(name, seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    index: dict[str, object] = {"_class_name": _PIPELINE_CLASS[family], "_diffusers_version": ""}
    for key, component in components.items():
        component.save_pretrained(directory / key)  # type: ignore[attr-defined]
        cls = type(component)
        while not cls.__module__.startswith(("diffusers", "transformers")):
            cls = cls.__mro__[1]  # our adapter subclasses record their diffusers class
        library = "diffusers" if cls.__module__.startswith("diffusers") else "transformers"
        index[key] = [library, cls.__name__]
    (directory / "model_index.json").write_text(json.dumps(index, indent=2))
    return directory
