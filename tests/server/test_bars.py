"""fit_to_bars exact lengths and loop WAV metadata (acid/smpl through libsndfile)."""

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
