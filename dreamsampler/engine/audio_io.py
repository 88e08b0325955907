"""Reading input clips: decode any common format, mix to mono, resample with soxr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


class AudioFileError(ValueError):
    """An audio file cannot be used; the message names the path and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def probe_audio(path: Path) -> float:
    """Check that ``path`` is a decodable audio file and return its duration in seconds.

    Raises:
        AudioFileError: missing, a directory, or not audio.
    """
    path = Path(path)
    if not path.exists():
        raise AudioFileError(path, "no such file")
    if not path.is_file():
        raise AudioFileError(path, "not a file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioFileError(path, f"not a readable audio file ({exc})") from None
    if info.frames == 0:
        raise AudioFileError(path, "contains no samples")
    return info.frames / info.samplerate


def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Decode an audio file, mix it to mono and resample it.

    Args:
        path: WAV, FLAC, OGG/Vorbis, Opus, MP3 or anything libsndfile reads.
        sample_rate: target rate in Hz.

    Returns:
        float32 waveform of shape ``(samples,)`` in [-1, 1] at ``sample_rate``.

    Raises:
        AudioFileError: missing, unreadable or empty file.
    """
    probe_audio(path)
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioFileError(path, f"cannot decode ({exc})") from None
    mono = data.mean(axis=1)
    if file_rate != sample_rate:
        mono = soxr.resample(mono, file_rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample ``(channels, samples)`` audio with soxr (HQ); returns the same layout."""
    if rate_in == rate_out:
        return audio
    return np.ascontiguousarray(
        soxr.resample(audio.T, rate_in, rate_out, quality="HQ").T, dtype=np.float32
    )
