"""Every family reads only the frames a request needs; sample rates are checked (issue 22,
item 6: Stable Audio read the whole input, +1.15 GB for a 255 MiB WAV, and a header claiming
5.3 MHz passed)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from dreamsampler.engine.audio_io import AudioFileError, probe_audio
from dreamsampler.engine.families import load_model


@pytest.fixture(scope="module", params=["tiny:stable-audio", "tiny:sa3", "tiny"])
def model(request: pytest.FixtureRequest) -> object:
    return load_model(request.param, "cpu")


def _long_wav(path: Path, seconds: float, rate: int = 48000) -> np.ndarray:
    rng = np.random.default_rng(3)
    audio = (0.3 * rng.standard_normal((int(seconds * rate), 2))).astype(np.float32)
    sf.write(path, audio, rate, subtype="FLOAT")
    return audio


@pytest.mark.parametrize("name", ["tiny:stable-audio", "tiny:sa3"])
def test_only_the_needed_frames_are_read(name: str, tmp_path: Path) -> None:
    """(AudioLDM/MusicLDM read the whole input on purpose, decoded to mono block by block: the
    reference normalises by the whole file's mean and peak; docs/engine.md.)"""
    model = load_model(name, "cpu")
    path = tmp_path / "long.wav"
    audio = _long_wav(path, 60.0)  # 60 s of stereo float at 48 kHz: 23 MB on disk
    n = model.sample_rate  # a 1 s clip
    tracemalloc.start()
    try:
        wave = model.load_waveform(path, n)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000, f"{peak / 1e6:.1f} MB to read 1 s of a 60 s file"
    assert wave.shape[-1] == n
    # the same samples as the reference: soxr over the whole file, cropped (edge tolerance)
    reference = soxr.resample(audio, 48000, model.sample_rate, "HQ").T[:, :n]
    got = wave[0].numpy()
    np.testing.assert_allclose(got, reference, atol=2e-3)


def test_an_implausible_header_rate_is_refused(tmp_path: Path, model: object) -> None:
    path = tmp_path / "fast.wav"
    sf.write(path, np.zeros((5300, 1), np.float32), 5_300_000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match=r"implausible sample rate 5\.3e"):
        probe_audio(path)
    with pytest.raises(AudioFileError, match="implausible sample rate"):
        model.load_waveform(path, 44100)  # type: ignore[attr-defined]


def test_a_name_longer_than_the_file_system_allows_is_a_clean_error(tmp_path: Path) -> None:
    from dreamsampler.engine.audio_io import load_audio, read_audio

    long = tmp_path / ("a" * 300 + ".wav")
    for read in (probe_audio, read_audio, lambda p: load_audio(p, 16000)):
        with pytest.raises(AudioFileError, match="File name too long"):
            read(long)


def test_warm_up_imports_what_the_first_non_audio_input_needs(tmp_path: Path) -> None:
    """After the start-up warm-up, the first file libsndfile cannot read imports nothing more
    (before: 1-7 s of imports on the event loop at the first such /transfer)."""
    import os
    import subprocess
    import sys

    notes = tmp_path / "notes.txt"
    notes.write_text("not audio")
    code = (
        "import sys\n"
        "from dreamsampler.engine.audio_io import AudioFileError, probe_audio, "
        "warm_up_decoders\n"
        "warm_up_decoders()\n"
        "before = set(sys.modules)\n"
        "try:\n"
        f"    probe_audio({str(notes)!r})\n"
        "except AudioFileError:\n"
        "    pass\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout
    assert out.strip() == "[]", out
