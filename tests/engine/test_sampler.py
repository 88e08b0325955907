"""The sampling loop on tiny pipelines of the real classes: determinism, SDEdit, progress."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dreamsampler.engine.families import ModelLoadError, load_model
from dreamsampler.engine.request import SCHEDULER_NAMES, GenerationRequest, RequestError
from dreamsampler.engine.sampler import Cancelled, sample
from dreamsampler.engine.tiny import save_tiny_pipeline
from tests.conftest import write_pluck


@pytest.fixture(scope="module", params=["tiny", "tiny:audioldm"])
def model(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return load_model(request.param, "cpu")


def _req(**kw: object) -> GenerationRequest:
    base: dict[str, object] = {"prompt": "warm analog bass", "seed": 7,
                               "num_inference_steps": 3, "duration": 1.0}
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_deterministic_per_seed_for_every_scheduler(model, scheduler: str) -> None:  # type: ignore[no-untyped-def]
    a = sample(model, _req(scheduler=scheduler))
    b = sample(model, _req(scheduler=scheduler))
    c = sample(model, _req(scheduler=scheduler, seed=8))
    np.testing.assert_array_equal(a.audio, b.audio)
    assert not np.array_equal(a.audio, c.audio)
    assert a.audio.shape == (1, 16000) and a.audio.dtype == np.float32
    assert a.sample_rate == 16000 and a.record["scheduler"] == scheduler


def test_prompt_and_guidance_change_the_output(model) -> None:  # type: ignore[no-untyped-def]
    base = sample(model, _req()).audio
    assert not np.array_equal(base, sample(model, _req(prompt="glassy pad")).audio)
    assert not np.array_equal(base, sample(model, _req(guidance_scale=6.0)).audio)
    assert not np.array_equal(base, sample(model, _req(negative_prompt="noise")).audio)


@pytest.mark.parametrize("duration", [0.5, 1.37, 2.0])
def test_duration_is_exact_in_samples(model, duration: float) -> None:  # type: ignore[no-untyped-def]
    assert sample(model, _req(duration=duration)).audio.shape[-1] == round(duration * 16000)


def test_progress_callback_and_cancel(model) -> None:  # type: ignore[no-untyped-def]
    steps: list[tuple[int, int]] = []
    sample(model, _req(num_inference_steps=5), on_step=lambda i, n: steps.append((i, n)))
    assert steps == [(i, 5) for i in range(1, 6)]
    seen: list[int] = []
    with pytest.raises(Cancelled):
        sample(model, _req(num_inference_steps=5), on_step=lambda i, n: seen.append(i),
               should_cancel=lambda: len(seen) >= 2)
    assert seen == [1, 2]


def test_sdedit_strength(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Strength sets how many steps run and how far the result moves from the input."""
    source = write_pluck(tmp_path / "pluck.wav", sample_rate=44100)
    steps: dict[float, int] = {}
    latents = {}
    from dreamsampler.engine.audio_io import load_audio

    wave = torch.from_numpy(load_audio(source, 16000))[:16000]
    reference = model.audio_to_latents(wave[None], 1.0).flatten()
    for strength in (0.0, 0.3, 0.8, 1.0):
        count: list[int] = []
        result = sample(model, _req(input_path=source, strength=strength, num_inference_steps=10),
                        on_step=lambda i, n, c=count: c.append(n))
        steps[strength] = count[0] if count else 0
        assert result.audio.shape == (1, 16000)
        assert result.record["strength"] == strength and result.record["input_path"] == str(source)
        latents[strength] = result
    assert steps == {0.0: 0, 0.3: 3, 0.8: 8, 1.0: 10}
    # strength 0 is the input's VAE/vocoder reconstruction: deterministic, no noise
    again = sample(model, _req(input_path=source, strength=0.0, seed=99))
    np.testing.assert_array_equal(latents[0.0].audio, again.audio)
    assert reference.numel() > 0


def test_sdedit_moves_further_from_input_with_strength(tmp_path: Path) -> None:
    """Measured in VAE-latent space: cosine to the input's latent falls as strength rises."""
    from dreamsampler.engine.audio_io import load_audio

    model = load_model("tiny", "cpu")
    source = write_pluck(tmp_path / "pluck.wav", sample_rate=16000)
    clean = model.audio_to_latents(torch.from_numpy(load_audio(source, 16000))[None, :16000], 1.0)
    cosines = []
    for strength in (0.1, 0.5, 0.9):
        out = sample(model, _req(input_path=source, strength=strength, num_inference_steps=20,
                                 guidance_scale=1.0), return_latents=True)
        z = out.latents
        cosines.append(torch.nn.functional.cosine_similarity(z.flatten(), clean.flatten(),
                                                             dim=0).item())
    assert cosines[0] > cosines[1] > cosines[2], cosines


def test_loads_a_saved_pipeline_through_from_pretrained(tmp_path: Path) -> None:
    folder = save_tiny_pipeline(tmp_path / "tiny-musicldm")
    loaded = load_model(str(folder), "cpu")
    built = load_model("tiny", "cpu")
    assert loaded.name == "musicldm" and loaded.model_id == str(folder)
    np.testing.assert_array_equal(sample(loaded, _req()).audio, sample(built, _req()).audio)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"cannot read model_index\.json"):
        load_model(str(tmp_path / "missing"), "cpu")
    folder = save_tiny_pipeline(tmp_path / "m")
    index = (folder / "model_index.json")
    index.write_text(index.read_text().replace("MusicLDMPipeline", "FluxPipeline"))
    with pytest.raises(ModelLoadError, match="unsupported pipeline 'FluxPipeline'"):
        load_model(str(folder), "cpu")


@pytest.mark.parametrize(
    ("kw", "text"),
    [({"strength": 1.2}, "strength"), ({"num_inference_steps": 0}, "steps"),
     ({"duration": 0.0}, "duration"), ({"seed": -1}, "seed"), ({"scheduler": "x"}, "scheduler"),
     ({"guidance_scale": -1.0}, "guidance")],
)
def test_request_validation(kw: dict[str, object], text: str) -> None:
    with pytest.raises(RequestError, match=text):
        _req(**kw)
