"""Stable Audio families in our loop: stereo 44.1 kHz, latents sized to the clip, timing
conditioning, progress and cancel, loading from a diffusers folder, request validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dreamsampler.engine.families import ModelFamily, load_model
from dreamsampler.engine.request import GenerationRequest, RequestError
from dreamsampler.engine.sampler import Cancelled, sample
from dreamsampler.engine.stable_audio import StableAudio3DiT, StableAudioDiT
from dreamsampler.engine.tiny import save_tiny_pipeline
from tests.engine.tolerance import LOAD_PATH_ATOL


@pytest.fixture(scope="module", params=["tiny:stable-audio", "tiny:sa3"])
def model(request: pytest.FixtureRequest) -> ModelFamily:
    return load_model(request.param, "cpu")


def _req(**kw: object) -> GenerationRequest:
    base: dict[str, object] = {"prompt": "warm analog bass", "seed": 5,
                               "num_inference_steps": 3, "duration": 1.3}
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


def test_stereo_44k_with_latents_sized_to_the_clip(model: ModelFamily) -> None:
    result = sample(model, _req(), return_latents=True)
    assert result.audio.shape == (2, int(1.3 * 44100)) and result.sample_rate == 44100
    assert np.isfinite(result.audio).all()
    hop = 2048 if model.name == "stable-audio" else 4096
    assert result.latents.shape[-1] == int(np.ceil(1.3 * 44100 / hop))  # not the DiT window
    assert result.record["family"] == model.name
    again = sample(model, _req())
    np.testing.assert_array_equal(result.audio, again.audio)
    assert not np.array_equal(result.audio, sample(model, _req(seed=6)).audio)


def test_timing_conditioning_follows_the_duration(model: ModelFamily) -> None:
    """seconds_total is the requested duration (not the latent length) and reaches the DiT."""
    cond = model.conditioning(_req(duration=1.3), guided=False)
    assert cond.seconds_total == 1.3 and cond.seconds_start == 0.0
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, model.latent_shape(1.3)[0][0], 28, generator=gen)
    t = torch.tensor(0.5)
    with torch.no_grad():
        short = model.denoise(x, t, dataclasses.replace(cond, seconds_total=1.3))
        long = model.denoise(x, t, dataclasses.replace(cond, seconds_total=40.0))
        implied = model.denoise(x, t, dataclasses.replace(cond, seconds_total=None))
        exact = model.denoise(x, t, dataclasses.replace(cond, seconds_total=28 * model.hop_length
                                                         / 44100))  # type: ignore[attr-defined]
    assert (short - long).abs().max() > 1e-3
    torch.testing.assert_close(implied, exact)  # training clips: seconds from the latent length


def test_progress_and_cancel_per_step(model: ModelFamily) -> None:
    steps: list[tuple[int, int]] = []
    sample(model, _req(num_inference_steps=4), on_step=lambda i, n: steps.append((i, n)))
    assert steps == [(i, 4) for i in range(1, 5)]
    seen: list[int] = []
    with pytest.raises(Cancelled):
        sample(model, _req(num_inference_steps=4), on_step=lambda i, n: seen.append(i),
               should_cancel=lambda: len(seen) >= 2)
    assert seen == [1, 2]


def test_guidance_and_negative_prompt_change_the_output(model: ModelFamily) -> None:
    base = sample(model, _req(guidance_scale=1.0)).audio
    guided = sample(model, _req(guidance_scale=5.0)).audio
    negative = sample(model, _req(guidance_scale=5.0, negative_prompt="noise")).audio
    assert np.abs(base - guided).max() > 1e-4 and np.abs(guided - negative).max() > 1e-4


def test_transfer_strength_zero_is_the_reconstruction_and_one_ignores_the_input(
    model: ModelFamily, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "in.wav"
    sf.write(path, (0.3 * rng.standard_normal((int(1.3 * 44100), 2))).astype(np.float32), 44100,
             subtype="FLOAT")
    n = int(1.3 * 44100)
    wave = model.load_waveform(path, n)
    with torch.no_grad():
        recon = model.latents_to_audio(model.audio_to_latents(wave, 1.3))[0, :, :n].numpy()
    zero = sample(model, _req(input_path=path, strength=0.0)).audio
    np.testing.assert_allclose(zero, recon, atol=1e-6)
    half = sample(model, _req(input_path=path, strength=0.5)).audio
    assert np.abs(half - zero).max() > 1e-4
    assert "strength" in sample(model, _req(input_path=path, strength=0.5)).record


def test_open_refuses_durations_beyond_its_window() -> None:
    model = load_model("tiny:stable-audio", "cpu")
    window = model.window_seconds  # type: ignore[attr-defined]
    assert sample(model, _req(duration=window)).audio.shape == (2, int(window * 44100))
    with pytest.raises(RequestError, match="training window"):
        sample(model, _req(duration=window + 0.1))


def test_inpainting_needs_a_family_that_can(tmp_path: Path) -> None:
    path = tmp_path / "in.wav"
    sf.write(path, np.zeros((44100, 2), np.float32), 44100)
    model = load_model("tiny:stable-audio", "cpu")
    with pytest.raises(RequestError, match="cannot inpaint"):
        sample(model, _req(input_path=path, mask_start=0.2, mask_end=0.5))
    with pytest.raises(RequestError, match="cannot inpaint"):
        sample(model, _req(input_path=path, continuation=1.0))


@pytest.mark.parametrize("kw, message", [
    ({"mask_start": 0.1}, "together"),
    ({"mask_start": 0.5, "mask_end": 0.2, "input_path": Path("x.wav")}, "mask region"),
    ({"mask_start": 0.5, "mask_end": 9.0, "input_path": Path("x.wav")}, "mask region"),
    ({"mask_start": 0.1, "mask_end": 0.2}, "needs an input"),
    ({"continuation": 2.0}, "needs an input"),
    ({"continuation": 0.0, "input_path": Path("x.wav")}, "> 0"),
    ({"continuation": 1.0, "mask_start": 0.1, "mask_end": 0.2, "input_path": Path("x.wav")},
     "not both"),
])
def test_inpainting_fields_are_validated(kw: dict[str, object], message: str) -> None:
    with pytest.raises(RequestError, match=message):
        _req(**kw)


def test_records_name_the_scheduler_used_and_keep_unset_fields_out(model: ModelFamily) -> None:
    record = sample(model, _req()).record
    assert record["scheduler"] in ("CosineDPMSolverMultistepScheduler",
                                   "FlowMatchEulerDiscreteScheduler")
    assert "mask_start" not in record and "continuation" not in record


@pytest.mark.parametrize("name, dit", [("tiny:stable-audio", StableAudioDiT),
                                       ("tiny:sa3", StableAudio3DiT)])
def test_loads_from_a_diffusers_folder_like_a_hub_model(
    tmp_path: Path, name: str, dit: type
) -> None:
    folder = save_tiny_pipeline(tmp_path / "pipe", name)
    loaded = load_model(str(folder), "cpu")
    assert loaded.name == load_model(name, "cpu").name
    assert type(loaded.components["transformer"]) is dit  # with LoRA methods
    ours = sample(loaded, _req()).audio
    # two load paths: other kernels may round differently per CPU (see tests/engine/tolerance)
    np.testing.assert_allclose(ours, sample(load_model(name, "cpu"), _req()).audio, rtol=0,
                               atol=LOAD_PATH_ATOL)
