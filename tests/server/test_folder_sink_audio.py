"""What the folder sink writes: 44.1 kHz by default with bar-exact loops, both rates in the
sidecar, non-finite audio refused (also end to end over OSC: /fail), overs normalised."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dreamsampler.config import load_config
from dreamsampler.engine.bars import bar_samples
from dreamsampler.engine.request import GenerationResult
from dreamsampler.engine.tiny import save_tiny_pipeline
from dreamsampler.server.folder_sink import FolderSink, LoopSpec, SinkError
from tests.conftest import RunningServer, make_config, run_server
from tests.riff import read_riff_wave

MODEL_RATE = 16000  # Hz, AudioLDM/MusicLDM


def _result(audio: np.ndarray) -> GenerationResult:
    return GenerationResult(audio=audio.astype(np.float32)[None], sample_rate=MODEL_RATE,
                            record={"prompt": "test", "seed": 1, "sample_rate": MODEL_RATE})


def _sine(seconds: float, hz: float = 1000.0, peak: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * MODEL_RATE)) / MODEL_RATE
    return peak * np.sin(2 * np.pi * hz * t)


def test_default_config_writes_44100() -> None:
    assert load_config(None, {}).output.sample_rate == 44100
    assert load_config(None, {"output.sample_rate": "native"}).output.sample_rate == "native"


def test_resampled_file_keeps_pitch_level_and_records_both_rates(tmp_path: Path) -> None:
    """A 1 kHz tone at -6 dBFS, 16 kHz in, 44.1 kHz out: same frequency, same level."""
    path = FolderSink(tmp_path, "FLOAT", 44100).write(_result(_sine(1.0)), name="tone")
    audio, rate = sf.read(path, dtype="float64")
    assert rate == 44100 and audio.shape == (44100,)
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    assert np.argmax(spectrum) * rate / audio.size == pytest.approx(1000.0, abs=1.0)
    middle = audio[4410:-4410]  # away from the resampler's edges
    t = np.arange(44100)[4410:-4410] / 44100
    np.testing.assert_allclose(middle, 0.5 * np.sin(2 * np.pi * 1000 * t), atol=1e-3)
    record = json.loads(path.with_suffix(".json").read_text())
    assert (record["model_sample_rate"], record["file_sample_rate"]) == (16000, 44100)
    assert record["file_gain_db"] == 0.0
    # the sample peak: -6.02 dBFS plus a little ringing where the tone starts abruptly
    assert record["file_peak_dbfs"] == pytest.approx(20 * math.log10(0.5), abs=0.1)


def test_native_keeps_the_model_rate_bit_for_bit(tmp_path: Path) -> None:
    audio = _sine(0.5)
    for rate in ("native", None):
        path = FolderSink(tmp_path, "FLOAT", rate).write(_result(audio), name=f"n{rate}")
        written, sr = sf.read(path, dtype="float32")
        assert sr == MODEL_RATE
        np.testing.assert_array_equal(written, audio.astype(np.float32))


@pytest.mark.parametrize(("bars", "bpm", "frames"), [(2, 120.0, 176400), (3, 97.0, None),
                                                     (1, 174.0, None)])
def test_loops_are_bar_exact_at_the_output_rate(tmp_path: Path, bars: int, bpm: float,
                                                frames: int | None) -> None:
    """2 bars at 120 BPM = 4 s = 176400 frames at 44.1 kHz; odd tempos round once, at 44.1 kHz
    (not at 16 kHz and then scaled); the smpl loop covers every frame."""
    expected = frames or round(bars * 4 * 60 / bpm * 44100)
    model_length = bar_samples(bars, bpm, MODEL_RATE)  # what the service's bar fit makes
    sink = FolderSink(tmp_path, "PCM_24", 44100)
    path = sink.write(_result(_sine(model_length / MODEL_RATE)), loop=LoopSpec(bpm, bars))
    riff = read_riff_wave(path)
    assert (riff.sample_rate, riff.frames) == (44100, expected)
    assert riff.smpl_loops() == [(0, 0, expected - 1)]
    assert riff.acid()["tempo"] == pytest.approx(bpm)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_audio_is_refused_and_nothing_written(tmp_path: Path, bad: float) -> None:
    audio = _sine(0.5)
    audio[100] = bad
    sink = FolderSink(tmp_path / "out", "PCM_24", 44100)
    counts = "1 NaN and 0 infinite" if np.isnan(bad) else "0 NaN and 1 infinite"
    with pytest.raises(SinkError, match=counts):
        sink.write(_result(audio), name="bad")
    with pytest.raises(SinkError, match=counts):
        sink.write(_result(audio), name="bad", loop=LoopSpec(120.0, 1))
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_resampler_overs_are_normalised_to_minus_1_dbfs(tmp_path: Path) -> None:
    """A full-scale square wave: band-limited resampling rings above 0 dBFS (Gibbs); the file
    is scaled to a -1 dBFS peak (one gain, recorded) instead of clipped."""
    square = np.sign(_sine(0.5, hz=500.0, peak=1.0))
    square[square == 0] = 1.0
    path = FolderSink(tmp_path, "FLOAT", 44100).write(_result(square), name="square")
    written, _ = sf.read(path, dtype="float64")
    record = json.loads(path.with_suffix(".json").read_text())
    assert np.abs(written).max() == pytest.approx(10 ** (-1 / 20), rel=1e-5)
    assert record["file_gain_db"] < -1.0  # the resampled peak was above 0 dBFS
    assert record["file_peak_dbfs"] == pytest.approx(-1.0, abs=1e-3)


@pytest.fixture
def nan_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A real server whose model (a saved tiny pipeline) has NaN vocoder weights: a broken
    checkpoint, loaded through the same from_pretrained path as any model folder."""
    from transformers import SpeechT5HifiGan

    folder = save_tiny_pipeline(tmp_path / "nan-model")
    vocoder = SpeechT5HifiGan.from_pretrained(str(folder / "vocoder"))
    with torch.no_grad():
        vocoder.conv_post.weight.fill_(float("nan"))
    vocoder.save_pretrained(str(folder / "vocoder"))
    yield from run_server(make_config(tmp_path, **{"model.id": str(folder)}))


def test_nan_model_output_fails_over_osc_and_writes_nothing(nan_server: RunningServer) -> None:
    with nan_server.client() as c:
        replies = c.request("/gen", "warm analog bass", "seed", 3, timeout=60)
        final = replies[-1]
        assert final.address == "/fail" and final.args[0] == "/gen", replies
        assert "holds 16000 NaN and 0 infinite samples" in final.args[1], final
        assert "refused" in final.args[1], final
        status = c.request("/status", timeout=5)[-1]
        assert status.address == "/status.reply"
    out = nan_server.output_dir
    assert not out.exists() or list(out.iterdir()) == []
