"""Concepts on Stable Audio (tiny Open 1.0 and SA3): LoRA on the DiT learns the toy concept,
saves, loads through the ConceptManager and blends; textual inversion trains only its rows of the
T5 / T5Gemma table (t5's spare rows first) and unloads to the exact base table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soxr
import torch

from dreamsampler.engine.concepts import (
    ConceptError,
    ConceptManager,
    fingerprint,
    read_concept,
    token_embedding,
)
from dreamsampler.engine.families import ModelFamily, load_model
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample
from dreamsampler.engine.training.trainer import TrainSettings, evaluate_loss, train
from tests.engine import toy_world as toy

FAMILIES = ["tiny:stable-audio", "tiny:sa3"]
HELD_OUT = range(1000, 1016)
SEEDS = (0, 1, 2)
PROMPT = "a recording of a <plk> sound"


def _clips() -> list[np.ndarray]:
    """The toy world's plucked concept at 44.1 kHz (mono: duplicated to stereo for the VAE)."""
    return [soxr.resample(c, toy.SR, 44100).astype(np.float32) for c in toy.concept_clips()]


def _latents(model: ModelFamily, clips: list[np.ndarray]) -> torch.Tensor:
    seconds = clips[0].shape[0] / 44100
    with torch.no_grad():
        return torch.cat([model.audio_to_latents(torch.from_numpy(c)[None], seconds)
                          for c in clips])


def _cosine(z: torch.Tensor, target: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(
        z.flatten()[None], target.mean(0).flatten()[None]).item())


def _gen(prompt: str, seed: int, **kw: object) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, seed=seed, num_inference_steps=8, duration=1.0,
                             guidance_scale=1.0, **kw)  # type: ignore[arg-type]


@dataclass
class LoraRun:
    model: ModelFamily
    concepts_dir: Path
    latents: torch.Tensor
    before: float
    after: float
    before_cos: float
    after_cos: float


@pytest.fixture(scope="module", params=FAMILIES)
def lora_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LoraRun:
    model = load_model(request.param, "cpu")
    concepts_dir = tmp_path_factory.mktemp("concepts")
    clips = _clips()
    latents = _latents(model, clips)
    before = evaluate_loss(model, latents, PROMPT, HELD_OUT)
    gens = [sample(model, _gen(PROMPT, s), return_latents=True).latents for s in SEEDS]
    settings = TrainSettings(method="lora", name="plk", lr=1e-2, steps=80, rank=4,
                             checkpoint_every=0)
    train(model, settings, clips, concepts_dir)
    after = evaluate_loss(model, latents, PROMPT, HELD_OUT)
    trained = [sample(model, _gen(PROMPT, s), return_latents=True).latents for s in SEEDS]
    return LoraRun(model, concepts_dir, latents, before, after,
                   float(np.mean([_cosine(z, latents) for z in gens])),
                   float(np.mean([_cosine(z, latents) for z in trained])))


def test_lora_on_the_dit_lowers_held_out_loss_and_moves_generations(lora_run: LoraRun) -> None:
    print(f"{lora_run.model.name}: held-out loss {lora_run.before:.4f} → {lora_run.after:.4f}, "
          f"cosine to concept {lora_run.before_cos:.3f} → {lora_run.after_cos:.3f}")
    assert lora_run.after < 0.9 * lora_run.before
    assert lora_run.after_cos > lora_run.before_cos + 0.03
    meta = read_concept(lora_run.concepts_dir / "plk")
    assert meta.family == lora_run.model.name and meta.method == "lora"
    assert tuple(meta.training["lora_targets"]) == lora_run.model.lora_targets


def test_saved_lora_loads_scales_and_blends(lora_run: LoraRun, tmp_path: Path) -> None:
    trained = sample(lora_run.model, _gen(PROMPT, 3)).audio
    fresh = load_model(lora_run.model.model_id, "cpu")
    manager = ConceptManager(fresh, lora_run.concepts_dir)
    base = sample(fresh, _gen(PROMPT, 3)).audio
    manager.load("plk")
    assert np.array_equal(sample(fresh, _gen(PROMPT, 3)).audio, base)  # off unless named
    loaded = sample(fresh, _gen(PROMPT, 3, concept="plk")).audio
    np.testing.assert_allclose(loaded, trained, atol=1e-6)
    half = sample(fresh, _gen(PROMPT, 3, concept="plk", lora_scale=0.5)).audio
    assert np.abs(half - loaded).max() > 1e-4 and np.abs(half - base).max() > 1e-4
    # a blend names LoRAs with weights: (plk 1.0) equals the concept alone; adding a second
    # adapter at weight 0 changes nothing, at weight 1 it changes the output
    twin = lora_run.concepts_dir / "plk2"
    twin.mkdir()
    for f in (lora_run.concepts_dir / "plk").iterdir():
        if f.is_file():
            text = f.read_bytes()
            if f.name == "concept.yaml":
                text = text.replace(b"name: plk\n", b"name: plk2\n")
            (twin / f.name).write_bytes(text)
    manager.load("plk2")
    solo = sample(fresh, _gen(PROMPT, 3, loras=(("plk", 1.0),))).audio
    np.testing.assert_array_equal(solo, loaded)
    zero = sample(fresh, _gen(PROMPT, 3, loras=(("plk", 1.0), ("plk2", 0.0)))).audio
    np.testing.assert_allclose(zero, loaded, atol=1e-6)
    both = sample(fresh, _gen(PROMPT, 3, concept="plk", lora_scale=0.5,
                              loras=(("plk2", 0.5),))).audio
    np.testing.assert_allclose(both, loaded, atol=2e-5)  # twins at 0.5 + 0.5 = one at 1.0
    assert np.abs(sample(fresh, _gen(PROMPT, 3, loras=(("plk", 1.0), ("plk2", 1.0)))).audio
                  - loaded).max() > 1e-4
    assert np.array_equal(sample(fresh, _gen(PROMPT, 3)).audio, base)  # restored after


def test_concept_of_another_family_is_refused(lora_run: LoraRun) -> None:
    other = "tiny:sa3" if lora_run.model.name == "stable-audio" else "tiny:stable-audio"
    manager = ConceptManager(load_model(other, "cpu"), lora_run.concepts_dir)
    with pytest.raises(ConceptError, match="model family"):
        manager.load("plk")


@pytest.mark.parametrize("name", FAMILIES)
def test_ti_trains_only_its_rows_and_unloads_to_the_base_table(name: str, tmp_path: Path) -> None:
    model = load_model(name, "cpu")
    table0 = token_embedding(model.components["text_encoder"]).weight.detach().clone()
    vocab0 = len(model.components["tokenizer"])
    fp0 = fingerprint(model)
    clips = _clips()
    latents = _latents(model, clips)
    settings = TrainSettings(method="ti", name="plk-ti", lr=5e-2, steps=40, grad_accum=1,
                             scale_lr=False, num_vectors=2, checkpoint_every=0)
    prompt = "a recording of a <plk-ti>"
    train(model, settings, clips, tmp_path)
    after = evaluate_loss(model, latents, prompt, HELD_OUT)
    table = token_embedding(model.components["text_encoder"]).weight.detach()
    ids = model.components["tokenizer"].convert_tokens_to_ids(["<plk-ti>_0", "<plk-ti>_1"])
    assert ids == [vocab0, vocab0 + 1]
    if name == "tiny:stable-audio":  # t5: the tokens took never-trained spare rows
        assert table.shape[0] == table0.shape[0] > vocab0 + 1
    keep = torch.ones(table.shape[0], dtype=torch.bool)
    keep[ids] = False
    assert torch.equal(table[: table0.shape[0]][keep[: table0.shape[0]]],
                       table0[keep[: table0.shape[0]]])
    # the loss with the initial ("mean") rows is higher than with the learned ones
    fresh = load_model(name, "cpu")
    train(fresh, TrainSettings(method="ti", name="plk-ti", lr=1e-30, steps=1, grad_accum=1,
                               scale_lr=False, num_vectors=2, checkpoint_every=0),
          clips, tmp_path / "init")
    before = evaluate_loss(fresh, latents, prompt, HELD_OUT)
    print(f"{name} TI held-out loss {before:.4f} → {after:.4f}")
    assert after < before
    # load into a fresh model: same conditioning as the trained one; unload: the base table
    served = load_model(name, "cpu")
    manager = ConceptManager(served, tmp_path)
    manager.load("plk-ti")
    assert read_concept(tmp_path / "plk-ti").family == served.name
    a = sample(served, _gen(prompt, 1)).audio
    np.testing.assert_allclose(a, sample(model, _gen(prompt, 1)).audio, atol=1e-6)
    manager.unload("plk-ti")
    assert torch.equal(token_embedding(served.components["text_encoder"]).weight, table0)
    assert len(served.components["tokenizer"]) == vocab0 and fingerprint(served) == fp0


def test_dreambooth_on_the_dit_saves_and_swaps_in(tmp_path: Path) -> None:
    model = load_model("tiny:sa3", "cpu")
    base = sample(model, _gen(PROMPT, 2)).audio
    train(model, TrainSettings(method="dreambooth", name="plk-db", lr=1e-2, steps=5,
                               checkpoint_every=0), _clips(), tmp_path)
    trained = sample(model, _gen(PROMPT, 2)).audio
    assert np.abs(trained - base).max() > 1e-4
    served = load_model("tiny:sa3", "cpu")
    manager = ConceptManager(served, tmp_path)
    manager.load("plk-db")
    np.testing.assert_allclose(sample(served, _gen(PROMPT, 2, concept="plk-db")).audio, trained,
                               atol=1e-6)
    assert np.array_equal(sample(served, _gen(PROMPT, 2)).audio, base)
