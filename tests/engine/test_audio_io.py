"""Reading inputs: only the frames a request needs, and refusing oversized files."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dreamsampler.engine.audio_io import AudioFileError, load_audio, probe_audio, resample


def sparse_wav(path: Path, size_bytes: int, rate: int = 44100, channels: int = 2) -> Path:
    """A valid 16-bit PCM WAV of about ``size_bytes`` whose samples are a sparse hole (zeros
    that take no disk space), with a short tone at the start."""
    frames = (size_bytes - 44) // (2 * channels)
    data_bytes = frames * 2 * channels
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels,
                                    2 * channels, 16)
    header += b"data" + struct.pack("<I", data_bytes)
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(np.repeat(tone[:, None], channels, axis=1).tobytes())
        fh.truncate(44 + data_bytes)
    return path


_PEAK_RSS = """
import resource, sys
from dreamsampler.engine.audio_io import load_audio
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
audio = load_audio(sys.argv[1], 16000, duration=0.5)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(audio), (after - before) // 1024)
"""


def test_a_huge_input_costs_only_the_frames_needed(tmp_path: Path) -> None:
    """A 256 MiB WAV used to cost +2.1 GB of memory for a 0.5 s transfer (issue 12, item 8)."""
    path = sparse_wav(tmp_path / "huge.wav", 256 * 2**20)
    assert sf.info(path).duration > 1500
    out = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(path)], capture_output=True,
                         text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    samples, growth_mib = map(int, out.stdout.split())
    assert samples == 8000
    assert growth_mib < 32, f"peak RSS grew by {growth_mib} MiB for 0.5 s of a 256 MiB file"


def test_partial_read_gives_the_same_samples_as_a_whole_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for rate, channels in [(44100, 2), (48000, 1), (16000, 1)]:
        path = tmp_path / f"noise{rate}.wav"
        sf.write(path, (0.2 * rng.standard_normal((3 * rate, channels))).astype(np.float32),
                 rate, subtype="FLOAT")
        whole = load_audio(path, 16000)
        for duration in (0.5, 1.28, 2.99, 4.0):
            part = load_audio(path, 16000, duration=duration)
            assert len(part) == min(round(duration * 16000), len(whole))
            np.testing.assert_array_equal(part, whole[: len(part)])


def test_oversized_and_overlong_inputs_are_refused_by_the_probe(tmp_path: Path) -> None:
    path = sparse_wav(tmp_path / "big.wav", 64 * 2**20)
    assert probe_audio(path) == pytest.approx(sf.info(path).duration)
    with pytest.raises(AudioFileError, match=r"big.wav: is 64.0 MiB, over the input limit of "
                       r"16 MiB"):
        probe_audio(path, max_bytes=16 * 2**20)
    with pytest.raises(AudioFileError, match=r"big.wav: is 380.4 s long, over the input limit "
                       r"of 60 s"):
        probe_audio(path, max_seconds=60)
    with pytest.raises(AudioFileError, match="over the input limit"):
        load_audio(path, 16000, duration=0.5, max_bytes=2**20)


def test_block_mono_mix_equals_the_whole_array_mix(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for channels in (1, 2, 3):
        path = tmp_path / f"c{channels}.wav"
        data = (0.3 * rng.standard_normal((200_000, channels))).astype(np.float32)
        sf.write(path, data, 44100, subtype="FLOAT")
        whole, rate = sf.read(path, dtype="float32", always_2d=True)
        reference = resample(whole.T.mean(axis=0, dtype=np.float64).astype(np.float32), rate,
                             16000)
        np.testing.assert_array_equal(load_audio(path, 16000), reference)


_PEAK_RSS_WHOLE = _PEAK_RSS.replace("duration=0.5", "duration=None")


def test_a_whole_read_holds_one_mono_copy(tmp_path: Path) -> None:
    """Families that normalise by the whole input read it all: one float32 per frame, not the
    channels in float32 and float64 (+1281 MiB for 256 MiB of 16-bit stereo before)."""
    path = sparse_wav(tmp_path / "whole.wav", 64 * 2**20)  # 16.8 M stereo frames
    out = subprocess.run([sys.executable, "-c", _PEAK_RSS_WHOLE, str(path)], capture_output=True,
                         text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    samples, growth_mib = map(int, out.stdout.split())
    assert samples == round(sf.info(path).frames * 16000 / 44100)
    mono_mib = sf.info(path).frames * 4 / 2**20  # 64 MiB
    assert growth_mib < 2.2 * mono_mib, f"peak RSS grew by {growth_mib} MiB"
