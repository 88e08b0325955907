"""Concepts on AudioLDM 2 (tiny, real classes): TI in both text towers, LoRA through peft on a
UNet without adapter methods of its own, DreamBooth; trained by the shared trainer, loaded by the
shared ConceptManager."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dreamsampler.engine.audioldm2 import AudioLDM2Family
from dreamsampler.engine.concepts import (
    ConceptError,
    ConceptManager,
    read_concept,
    token_embedding,
)
from dreamsampler.engine.families import load_model
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample
from dreamsampler.engine.training.trainer import TrainSettings, train
from tests.engine import toy_world as toy

FAST = {"steps": 3, "checkpoint_every": 0, "lr": 5e-2, "grad_accum": 1}
TOWERS = (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2"))


def _request(prompt: str, concept: str | None = None, scale: float = 1.0) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, seed=4, num_inference_steps=3, duration=0.32,
                             concept=concept, lora_scale=scale)


def _model() -> AudioLDM2Family:
    model = load_model("tiny:audioldm2", "cpu")
    assert isinstance(model, AudioLDM2Family)
    return model


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """ti (2 vectors), lora and db concepts, and the audio each gives right after training."""
    root = tmp_path_factory.mktemp("concepts")
    clips = [c[:5120] for c in toy.concept_clips(2)]
    audio: dict[str, np.ndarray] = {}
    for method, name, extra, request in [
        ("ti", "ti", {"num_vectors": 2}, _request("a recording of a <ti>")),
        ("lora", "lora", {}, _request("a recording of a <lora> sound", "lora")),
        ("dreambooth", "db", {}, _request("a recording of a <db> sound")),
    ]:
        model = _model()
        train(model, TrainSettings(method=method, name=name, **FAST, **extra),  # type: ignore[arg-type]
              clips, root)
        if method == "lora":
            unet = model.components["unet"]
            unet.set_adapters(["lora"], [1.0])
            unet.enable_adapters()
            audio[name] = sample(model, dataclasses.replace(request, concept=None)).audio
        else:
            audio[name] = sample(model, request).audio
    return root, audio


def test_ti_enters_both_text_towers(trained: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, after_training = trained
    meta = read_concept(root / "ti")
    assert meta.family == "audioldm2"
    learned = load_file(str(root / "ti" / "learned_embeds.safetensors"))
    assert learned["<ti>"].shape == (2, 16)  # CLAP text width
    assert learned["text_encoder_2:<ti>"].shape == (2, 24)  # Flan-T5 width
    model = _model()
    base_rows = [token_embedding(model.components[e]).weight.detach().clone() for _, e in TOWERS]
    base_sizes = [len(model.components[t]) for t, _ in TOWERS]
    base_audio = sample(model, _request("a recording of a guitar")).audio
    manager = ConceptManager(model, root)
    manager.load("ti")
    for (tok_key, enc_key), name, size in zip(TOWERS, ("<ti>", "text_encoder_2:<ti>"),
                                              base_sizes, strict=True):
        tokenizer = model.components[tok_key]
        assert len(tokenizer) == size + 2
        ids = tokenizer.convert_tokens_to_ids(["<ti>_0", "<ti>_1"])
        assert torch.equal(token_embedding(model.components[enc_key]).weight[ids], learned[name])
        # the placeholder is one token per vector in both tokenizers
        assert ids[0] in tokenizer("a <ti>_0", add_special_tokens=False).input_ids
    # the loaded concept reproduces what the trained model generated
    np.testing.assert_array_equal(sample(model, _request("a recording of a <ti>")).audio,
                                  after_training["ti"])
    manager.unload("ti")
    for (tok_key, enc_key), rows, size in zip(TOWERS, base_rows, base_sizes, strict=True):
        assert len(model.components[tok_key]) == size
        assert torch.equal(token_embedding(model.components[enc_key]).weight, rows)
    np.testing.assert_array_equal(sample(model, _request("a recording of a guitar")).audio,
                                  base_audio)


def test_lora_and_dreambooth_on_the_audioldm2_unet(
    trained: tuple[Path, dict[str, np.ndarray]]
) -> None:
    root, after_training = trained
    model = _model()
    prompt = "a recording of a <lora> sound"
    base = sample(model, _request(prompt)).audio
    manager = ConceptManager(model, root)
    manager.load("lora")
    manager.load("db")
    unet = model.components["unet"]
    # the adapter sits on the cross-attention to GPT-2's states (transformer 1 of a block) and
    # to T5's (transformer 2): the text path
    lora_layers = {n.rsplit(".lora_A", 1)[0] for n, _ in unet.named_parameters() if "lora_A" in n}
    assert "down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k" in lora_layers
    assert "down_blocks.1.attentions.2.transformer_blocks.0.attn2.to_v" in lora_layers
    np.testing.assert_array_equal(sample(model, _request(prompt)).audio, base)
    with_lora = sample(model, _request(prompt, "lora")).audio
    np.testing.assert_array_equal(with_lora, after_training["lora"])
    assert not np.array_equal(with_lora, base)
    np.testing.assert_array_equal(sample(model, _request(prompt, "lora", 0.0)).audio, base)
    db_prompt = "a recording of a <db> sound"
    np.testing.assert_array_equal(sample(model, _request(db_prompt, "db")).audio,
                                  after_training["db"])
    manager.unload("lora")
    manager.unload("db")
    np.testing.assert_array_equal(sample(model, _request(prompt)).audio, base)


def test_a_concept_of_another_family_is_refused(
    trained: tuple[Path, dict[str, np.ndarray]]
) -> None:
    root, _ = trained
    manager = ConceptManager(load_model("tiny", "cpu"), root)
    with pytest.raises(ConceptError, match=r"for the audioldm2 family.*is musicldm"):
        manager.load("lora")
