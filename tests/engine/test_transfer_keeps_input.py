"""A style transfer without a duration is as long as its input (up to the model's limit), and a
stereo model takes a stereo input's two channels as they are (issue 17)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from dreamsampler.engine.families import load_model
from dreamsampler.engine.request import GenerationRequest, RequestError
from dreamsampler.engine.sampler import sample
from tests.engine.stereo_loop import render_stereo_loop

SECONDS = 4.0


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("loop") / "loop.wav"
    return path, render_stereo_loop(path, SECONDS)


def _transfer(path: Path) -> GenerationRequest:
    return GenerationRequest(prompt="a warm loop", seed=3, num_inference_steps=2,
                             duration=None, input_path=path, strength=0.6)


def _encoder_input(model: Any) -> list[torch.Tensor]:
    """Record what the model's own audio_to_latents receives (the real method still runs)."""
    seen: list[torch.Tensor] = []
    real = model.audio_to_latents

    def spy(waveform: torch.Tensor, duration: float) -> torch.Tensor:
        seen.append(waveform.detach().cpu().clone())
        return real(waveform, duration)

    model.audio_to_latents = spy
    return seen


@pytest.mark.parametrize("name", ["tiny:stable-audio", "tiny:sa3"])
def test_a_stereo_model_keeps_a_stereo_loop_stereo_and_its_length(
    loop: tuple[Path, np.ndarray], name: str
) -> None:
    path, audio = loop
    model = load_model(name, "cpu")
    seen = _encoder_input(model)
    result = sample(model, _transfer(path))
    limit = model.max_duration
    expected = SECONDS if limit is None else min(SECONDS, limit)  # tiny Open: a 2.97 s window
    n = int(expected * model.sample_rate)
    assert result.audio.shape == (2, n) and result.record["duration"] == pytest.approx(expected)
    # the VAE saw both channels as the file holds them (soundfile's read, not ours)
    (waveform,) = seen
    assert waveform.shape == (1, 2, n)
    np.testing.assert_allclose(waveform[0].numpy(), audio[:, :n], atol=1e-6)
    left, right = waveform[0].numpy()
    assert abs(np.corrcoef(left, right)[0, 1]) < 0.5, "bass left, piano right: not mono"


def test_a_mono_model_transfers_the_whole_loop(loop: tuple[Path, np.ndarray]) -> None:
    """MusicLDM is mono at 16 kHz: 4 s in, 4 s out (it used to be padded to 10 s)."""
    path, audio = loop
    model = load_model("tiny", "cpu")
    result = sample(model, _transfer(path))
    assert result.audio.shape == (1, int(SECONDS * 16000))
    assert result.record["duration"] == pytest.approx(SECONDS)
    mono = soxr.resample(audio.mean(axis=0), 44100, 16000)
    assert abs(len(mono) - result.audio.shape[1]) <= 1


def test_only_a_transfer_may_leave_the_duration_out(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match="duration is needed"):
        GenerationRequest(prompt="x", duration=None)
    clip = tmp_path / "c.wav"
    sf.write(clip, np.zeros((100, 2), np.float32), 16000)
    with pytest.raises(RequestError, match="duration is needed"):
        GenerationRequest(prompt="x", duration=None, input_path=clip, continuation=1.0)


@pytest.mark.parametrize(("model_id", "channels"), [("tiny:sa3", 2), ("tiny", 1)])
def test_transfer_over_osc_without_a_duration_is_as_long_as_its_input(
    tmp_path: Path, loop: tuple[Path, np.ndarray], model_id: str, channels: int
) -> None:
    """Through the real server: the session's duration (1 s here) does not apply to a
    /transfer that names none; an input beyond limits.max_duration is cut to the limit."""
    from tests.conftest import make_config, run_server

    config = make_config(tmp_path, **{"model.id": model_id, "output.subtype": "FLOAT",
                                      "limits.max_duration": 8.0})
    source = tmp_path / "in" / "loop.wav"
    source.write_bytes(loop[0].read_bytes())
    long = tmp_path / "in" / "long.wav"
    sf.write(long, np.tile(loop[1], 3).T, 44100, subtype="FLOAT")  # 12 s
    for server in run_server(config):
        with server.client() as c:
            for clip, seconds in ((source, SECONDS), (long, 8.0)):
                reply = c.request("/transfer", str(clip), "dusty keys", "seed", 3, "steps", 2,
                                  "strength", 0.5, timeout=60)[-1]
                assert reply.address == "/done", reply
                info = sf.info(reply.args[2])  # written at output.sample_rate (44.1 kHz)
                assert info.channels == channels
                assert abs(info.frames - seconds * info.samplerate) <= 1, (clip.name, info)
