"""The sampling loop on tiny pipelines of the real classes: equal to diffusers' pipelines,
determinism, SDEdit, progress, and the level guard (non-finite refused, overs normalised)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dreamsampler.engine.audio_io import AudioFileError, load_audio
from dreamsampler.engine.families import ModelFamily, ModelLoadError, load_model
from dreamsampler.engine.level import NonFiniteAudioError
from dreamsampler.engine.request import SCHEDULER_NAMES, GenerationRequest, RequestError
from dreamsampler.engine.sampler import Cancelled, sample
from dreamsampler.engine.tiny import save_tiny_pipeline
from tests.conftest import write_pluck
from tests.engine.tolerance import LOAD_PATH_ATOL


@pytest.fixture(scope="module", params=["tiny", "tiny:audioldm"])
def model(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return load_model(request.param, "cpu")


def _req(**kw: object) -> GenerationRequest:
    base: dict[str, object] = {"prompt": "warm analog bass", "seed": 7,
                               "num_inference_steps": 3, "duration": 1.0}
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


def _pipeline_audio(model: ModelFamily, request: GenerationRequest) -> np.ndarray:
    """The same request through diffusers' own pipeline on the same components (the reference).

    AudioLDMPipeline encodes the prompt itself; MusicLDMPipeline's ``_encode_prompt`` breaks
    under transformers 5 (``get_text_features`` returns an output object), so it gets the
    embeddings as ``prompt_embeds``/``negative_prompt_embeds``.
    """
    from diffusers import AudioLDMPipeline, MusicLDMPipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both pipelines are deprecated
        if model.name == "musicldm":
            pipe = MusicLDMPipeline(**model.components, feature_extractor=None)
            embeds = model.encode_prompt([request.negative_prompt, request.prompt])
            prompt = {"prompt_embeds": embeds[1:], "negative_prompt_embeds": embeds[:1]}
        else:
            pipe = AudioLDMPipeline(**model.components)
            prompt = {"prompt": request.prompt, "negative_prompt": request.negative_prompt}
        pipe.set_progress_bar_config(disable=True)
        return pipe(num_inference_steps=request.num_inference_steps,
                    audio_length_in_s=request.duration, guidance_scale=request.guidance_scale,
                    generator=torch.Generator("cpu").manual_seed(request.seed),
                    output_type="np", **prompt).audios


@pytest.mark.parametrize("guidance", [1.0, 2.5])
def test_equals_diffusers_pipeline(model, guidance: float) -> None:  # type: ignore[no-untyped-def]
    """Same weights, seed, steps and guidance: bit-identical to MusicLDM/AudioLDMPipeline."""
    request = _req(guidance_scale=guidance, negative_prompt="noise" if guidance > 1 else "")
    ours = sample(model, request)
    reference = _pipeline_audio(model, request)
    assert reference.shape == ours.audio.shape == (1, 16000)
    assert np.abs(reference).max() > 0.01  # the tiny vocoder makes audible output
    np.testing.assert_array_equal(ours.audio, reference)
    assert ours.record["gain_db"] == 0.0 and ours.record["overs_gain_db"] == 0.0
    assert ours.record["peak_dbfs"] == pytest.approx(20 * math.log10(np.abs(reference).max()),
                                                     abs=1e-3)


def test_audioldm_text_conditioning_equals_pipeline_encode_prompt() -> None:
    from diffusers import AudioLDMPipeline

    model = load_model("tiny:audioldm", "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = AudioLDMPipeline(**model.components)
    reference = pipe._encode_prompt(["warm analog bass"], "cpu", 1, True, ["noise"])
    ours = model.encode_prompt(["noise", "warm analog bass"])
    torch.testing.assert_close(ours, reference, atol=0, rtol=0)


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
    results = {}
    wave = torch.from_numpy(load_audio(source, 16000))  # the whole input, as the sampler
    reference = model.audio_to_latents(wave[None], 1.0)
    gain = model.input_gain(wave, 1.0)
    for strength in (0.0, 0.3, 0.8, 1.0):
        count: list[int] = []
        result = sample(model, _req(input_path=source, strength=strength, num_inference_steps=10),
                        on_step=lambda i, n, c=count: c.append(n), return_latents=True)
        steps[strength] = count[0] if count else 0
        assert result.audio.shape == (1, 16000)
        assert result.record["strength"] == strength and result.record["input_path"] == str(source)
        assert result.record["input_gain_db"] == pytest.approx(20 * math.log10(gain), abs=1e-3)
        results[strength] = result
    assert steps == {0.0: 0, 0.3: 3, 0.8: 8, 1.0: 10}
    # strength 0 is the input's VAE/vocoder reconstruction: no noise, the input's own latent,
    # decoded and brought back from AudioLDM's peak 0.5 to the input's level
    torch.testing.assert_close(results[0.0].latents, reference, atol=0, rtol=0)
    with torch.no_grad():
        decoded = model.latents_to_audio(reference)[:, :16000].numpy().astype(np.float64)
    np.testing.assert_allclose(results[0.0].audio, decoded / gain, rtol=1e-6, atol=1e-7)
    again = sample(model, _req(input_path=source, strength=0.0, seed=99))
    np.testing.assert_array_equal(results[0.0].audio, again.audio)
    # more strength, further from the input's latent
    distance = [float((results[s].latents - reference).detach().norm()) for s in (0.0, 0.3, 0.8)]
    assert distance[0] == 0.0 < distance[1] < distance[2], distance


def test_transfer_output_follows_the_input_level(tmp_path: Path) -> None:
    """The model sees the input at AudioLDM's peak 0.5 whatever its level; the output is
    brought back: 14 dB quieter input, 14 dB quieter output, same waveform otherwise."""
    model = load_model("tiny", "cpu")
    t = np.arange(24000) / 16000
    tone = (np.sin(2 * np.pi * 220 * t) * np.exp(-2 * t)).astype(np.float32)
    outputs = {}
    for level_db in (-6.0, -20.0):
        path = tmp_path / f"tone{level_db:g}.wav"
        sf.write(path, tone * 10 ** (level_db / 20), 16000, subtype="FLOAT")
        outputs[level_db] = sample(model, _req(input_path=path, strength=0.5,
                                               num_inference_steps=10))
    loud, quiet = outputs[-6.0], outputs[-20.0]
    # the two inputs are brought to peak 0.5 by different gains, so the model sees inputs that
    # differ in the last bits; kernels round those differently per CPU (4.3e-7 seen on AVX2):
    # a tolerance of 1e-5 of the output's peak (a wrong level would be off by its whole size)
    np.testing.assert_allclose(quiet.audio, loud.audio * 10 ** (-14 / 20), rtol=1e-4,
                               atol=1e-5 * float(np.abs(quiet.audio).max()))
    assert quiet.record["input_gain_db"] - loud.record["input_gain_db"] == pytest.approx(14.0,
                                                                                          abs=1e-2)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.full(16000, 0.1, dtype=np.float32), 16000)  # DC only: silent once centred
    with pytest.raises(AudioFileError, match="silent"):
        sample(model, _req(input_path=silent, strength=0.5))


def test_non_finite_output_is_refused() -> None:
    """A vocoder with NaN weights: the sampler raises instead of returning the clip."""
    model = load_model("tiny", "cpu")
    with torch.no_grad():
        model.components["vocoder"].conv_post.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteAudioError, match="16000 NaN"):
        sample(model, _req())


def test_peaks_above_full_scale_are_normalised_to_minus_1_dbfs(tmp_path: Path) -> None:
    """A transfer of a hot input (-0.5 dBFS) through a saturating vocoder: restoring the input's
    level puts the peak ~5 dB above full scale; one gain brings it to -1 dBFS, shape kept."""
    model = load_model("tiny", "cpu")
    with torch.no_grad():  # HiFi-GAN ends in tanh: a hot last layer saturates near +-1
        model.components["vocoder"].conv_post.weight.mul_(100.0)
    source = tmp_path / "hot.wav"
    t = np.arange(24000) / 16000
    sf.write(source, (10 ** (-0.5 / 20) * np.sin(2 * np.pi * 220 * t)).astype(np.float32),
             16000, subtype="FLOAT")
    result = sample(model, _req(input_path=source, strength=0.0))
    wave = torch.from_numpy(load_audio(source, 16000))
    with torch.no_grad():
        restored = (model.latents_to_audio(model.audio_to_latents(wave[None], 1.0))[:, :16000]
                    .numpy().astype(np.float64) / model.input_gain(wave, 1.0))
    assert np.abs(restored).max() > 1.5  # the reference level is well above full scale
    gain = 10 ** (-1 / 20) / np.abs(restored).max()
    np.testing.assert_allclose(result.audio, restored * gain, rtol=1e-5, atol=1e-6)
    assert np.abs(result.audio).max() == pytest.approx(10 ** (-1 / 20), rel=1e-5)
    assert result.record["overs_gain_db"] == pytest.approx(20 * math.log10(gain), abs=1e-3)
    assert result.record["peak_dbfs"] == pytest.approx(-1.0, abs=1e-3)
    assert result.record["gain_db"] == pytest.approx(
        result.record["overs_gain_db"] - result.record["input_gain_db"], abs=1e-3)


def test_loads_a_saved_pipeline_through_from_pretrained(tmp_path: Path) -> None:
    folder = save_tiny_pipeline(tmp_path / "tiny-musicldm")
    loaded = load_model(str(folder), "cpu")
    built = load_model("tiny", "cpu")
    assert loaded.name == "musicldm" and loaded.model_id == str(folder)
    # two load paths: other kernels may round differently per CPU (see tests/engine/tolerance)
    np.testing.assert_allclose(sample(loaded, _req()).audio, sample(built, _req()).audio,
                               rtol=0, atol=LOAD_PATH_ATOL)


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
