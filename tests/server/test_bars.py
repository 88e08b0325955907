"""fit_to_bars exact lengths and loop WAV metadata (acid/smpl), read back by libsndfile and by
parsers that are not libsndfile (a struct RIFF reader, wavinfo)."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dreamsampler.engine.bars import (
    bar_samples,
    fit_to_bars,
    loop_file_name,
    read_loop_info,
    write_loop_wav,
)
from tests.riff import read_riff_wave

SR = 22050


def _noise(n: int, channels: int = 2) -> np.ndarray:
    return (0.1 * np.random.default_rng(0).standard_normal((channels, n))).astype(np.float32)


@pytest.mark.parametrize("bars, bpm", [(1, 120.0), (2, 97.0), (4, 174.0)])
@pytest.mark.parametrize("n", [30000, 200000])
def test_cut_exact_length(bars: int, bpm: float, n: int) -> None:
    out = fit_to_bars(_noise(n), SR, bars, bpm, mode="cut")
    assert out.shape == (2, round(bars * 4 * 60 / bpm * SR)) == (2, bar_samples(bars, bpm, SR))
    assert out.dtype == np.float32
    end = min(n, out.shape[1])
    assert out[0, end - 1] == pytest.approx(0.0, abs=1e-6)  # faded out at the cut


@pytest.mark.parametrize("bars, bpm", [(1, 120.0), (2, 97.0)])
def test_stretch_exact_length(bars: int, bpm: float) -> None:
    audio = _noise(50000)
    out = fit_to_bars(audio, SR, bars, bpm, mode="stretch")
    assert out.shape == (2, bar_samples(bars, bpm, SR))
    # energy is kept by the phase vocoder (not padded with silence)
    assert np.sqrt(np.mean(out[:, : out.shape[1] // 2] ** 2)) > 0.05


def test_trim_to_onset_puts_downbeat_at_zero() -> None:
    audio = np.zeros((1, 60000), dtype=np.float32)
    audio[:, 12345:] = _noise(60000 - 12345, 1)
    out = fit_to_bars(audio, SR, 1, 120, trim_leading=True)
    assert np.flatnonzero(np.abs(out[0]) > 1e-3)[0] < 8
    with pytest.raises(ValueError):
        fit_to_bars(audio, SR, 1, 120, mode="warp")  # type: ignore[arg-type]


def test_loop_wav_metadata(tmp_path: Path) -> None:
    audio = fit_to_bars(_noise(100000), SR, 2, 100)
    name = loop_file_name("lofi drums", 100, 2)
    assert name == "lofi-drums_100bpm_2bars.wav"
    path = write_loop_wav(tmp_path / name, audio, SR, bpm=100, bars=2)
    info = read_loop_info(path)
    assert info is not None
    assert info.bpm == pytest.approx(100.0) and info.beats == 8 and info.time_sig == (4, 4)
    assert (info.loop_start, info.loop_end) == (0, audio.shape[1] - 1)
    assert sf.info(str(path)).frames == audio.shape[1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == [name]
    plain = tmp_path / "plain.wav"
    sf.write(plain, audio.T, SR)
    assert read_loop_info(plain) is None


@pytest.mark.parametrize(("bars", "bpm", "sr"), [(2, 120.0, 16000), (2, 120.0, 44100),
                                                 (3, 97.0, 48000)])
def test_loop_chunks_for_other_readers(tmp_path: Path, bars: int, bpm: float, sr: int) -> None:
    """The smpl loop covers every frame: dwEnd is the last sample (frames - 1, inclusive, as
    the RIFF spec says), read from the file's bytes, not through libsndfile (whose
    SF_INSTRUMENT loop end is exclusive)."""
    frames = bar_samples(bars, bpm, sr)
    audio = fit_to_bars(_noise(frames + 500, 1), sr, bars, bpm)
    path = write_loop_wav(tmp_path / "loop.wav", audio, sr, bpm=bpm, bars=bars)
    riff = read_riff_wave(path)
    assert (riff.frames, riff.sample_rate, riff.channels) == (frames, sr, 1)
    assert riff.smpl_loops() == [(0, 0, frames - 1)]  # type 0 = forward
    assert riff.smpl_unity_note() == 60
    acid = riff.acid()
    assert acid["tempo"] == pytest.approx(bpm) and acid["beats"] == bars * 4
    assert acid["meter"] == (4, 4) and acid["root_note"] == 60
    assert not acid["flags"] & 0x01  # not a one-shot: a loop
    wavinfo = pytest.importorskip("wavinfo")  # a second independent parser (dev extra)
    smpl = wavinfo.WavInfoReader(str(path)).smpl
    assert [(loop.start, loop.end) for loop in smpl.sample_loops] == [(0, frames - 1)]
