"""Reading audio files: decode any common format, mix to mono, resample with soxr.

The one decoder of the project: the engine (style-transfer input), training (concept clips) and
evaluation all read audio through :func:`read_audio`.
"""

from __future__ import annotations

import warnings
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


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioFileError(path, "no such file")
    if not path.is_file():
        raise AudioFileError(path, "not a file")


def read_audio(path: Path | str) -> tuple[np.ndarray, int]:
    """Decode an audio file at its own rate.

    libsndfile reads WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF…; other formats go through
    ``librosa.load`` where an audioread backend (ffmpeg) is installed.

    Returns:
        ``(audio, sample_rate)``: float32 ``(channels, samples)`` in [-1, 1], rate in Hz.

    Raises:
        AudioFileError: missing, not a file, undecodable, empty, or NaN/infinite samples.
    """
    path = Path(path)
    _check_path(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        audio = np.ascontiguousarray(data.T)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as first:
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mono_or_multi, rate = librosa.load(str(path), sr=None, mono=False,
                                                   dtype=np.float32)
            audio = np.atleast_2d(np.asarray(mono_or_multi, dtype=np.float32))
        except Exception:  # audioread raises many unrelated types
            raise AudioFileError(path, f"not a readable audio file ({first})") from None
    if audio.shape[-1] == 0 or rate <= 0:
        raise AudioFileError(path, "contains no samples")
    if not np.all(np.isfinite(audio)):
        raise AudioFileError(path, "contains NaN or infinite samples")
    return audio, int(rate)


def probe_audio(path: Path | str) -> float:
    """Check that ``path`` is a decodable audio file and return its duration in seconds.

    Reads only the header where libsndfile knows the format.

    Raises:
        AudioFileError: missing, a directory, or not audio.
    """
    path = Path(path)
    _check_path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        audio, rate = read_audio(path)
        return audio.shape[-1] / rate
    if info.frames == 0:
        raise AudioFileError(path, "contains no samples")
    return info.frames / info.samplerate


def resample(audio: np.ndarray, rate_in: int, rate_out: int, quality: str = "HQ") -> np.ndarray:
    """Resample ``(samples,)`` or ``(channels, samples)`` audio with soxr; same layout and dtype.

    Args:
        quality: soxr quality ("HQ", "VHQ", …).
    """
    if rate_in == rate_out:
        return audio
    if audio.ndim == 1:
        return soxr.resample(audio, rate_in, rate_out, quality=quality)
    return np.ascontiguousarray(soxr.resample(audio.T, rate_in, rate_out, quality=quality).T)


def load_audio(path: Path | str, sample_rate: int) -> np.ndarray:
    """Decode an audio file, mix it to mono and resample it.

    Args:
        path: any format :func:`read_audio` reads.
        sample_rate: target rate in Hz.

    Returns:
        float32 waveform of shape ``(samples,)`` in [-1, 1] at ``sample_rate``.

    Raises:
        AudioFileError: missing, unreadable or empty file.
    """
    audio, rate = read_audio(path)
    mono = audio.mean(axis=0, dtype=np.float64).astype(np.float32)
    return np.ascontiguousarray(resample(mono, rate, sample_rate), dtype=np.float32)
