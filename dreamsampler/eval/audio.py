"""Audio input handling for the metrics: layout checks, mono mix-down, resampling, loading.

Conventions used throughout :mod:`dreamsampler.eval`: a clip is a float array of shape
``(samples,)`` (mono) or ``(channels, samples)``; sample rates are in Hz; full scale is ±1.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dreamsampler.engine import audio_io as engine_audio
from dreamsampler.engine.level import peak_dbfs

__all__ = [
    "SILENCE_DBFS",
    "AudioClip",
    "AudioError",
    "AudioTooShortError",
    "SilentAudioError",
    "as_channels_first",
    "check_audio",
    "load_clip",
    "load_many",
    "peak_dbfs",
    "resample",
    "to_mono",
]

#: A clip whose peak is below this level (dBFS) counts as silent.
SILENCE_DBFS = -80.0
_MAX_CHANNELS = 16


class AudioError(ValueError):
    """Audio cannot be analysed (bad layout, non-finite samples, unreadable file)."""


class SilentAudioError(AudioError):
    """Audio is silent (peak below :data:`SILENCE_DBFS`)."""


class AudioTooShortError(AudioError):
    """Audio is shorter than an analysis needs."""


def as_channels_first(audio: ArrayLike, name: str = "audio") -> NDArray[np.float64]:
    """Return audio as ``(channels, samples)`` float64.

    Args:
        audio: shape ``(samples,)`` or ``(channels, samples)`` with at most 16 channels.
        name: label used in error messages (e.g. a file name).

    Returns:
        Array of shape ``(channels, samples)``.

    Raises:
        AudioError: not 1-D/2-D, looks like ``(samples, channels)``, empty, or non-finite.
    """
    arr = np.asarray(audio, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise AudioError(
            f"{name}: expected shape (samples,) or (channels, samples); got {arr.shape}"
        )
    if arr.shape[0] > _MAX_CHANNELS:
        raise AudioError(
            f"{name}: shape {arr.shape} has more than {_MAX_CHANNELS} channels; "
            "pass (channels, samples), e.g. transpose soundfile's (samples, channels)"
        )
    if arr.shape[1] == 0:
        raise AudioError(f"{name}: no samples")
    if not np.all(np.isfinite(arr)):
        raise AudioError(f"{name}: contains NaN or infinite samples")
    return arr


def to_mono(audio: ArrayLike, name: str = "audio") -> NDArray[np.float64]:
    """Average channels: ``(samples,)`` or ``(channels, samples)`` → ``(samples,)``."""
    return as_channels_first(audio, name).mean(axis=0)


def check_audio(
    audio: ArrayLike, sr: int, min_seconds: float = 0.0, name: str = "audio"
) -> NDArray[np.float64]:
    """Validate a clip for analysis.

    Args:
        audio: shape ``(samples,)`` or ``(channels, samples)``.
        sr: sample rate in Hz (> 0).
        min_seconds: minimum duration in seconds.
        name: label used in error messages.

    Returns:
        The clip as ``(channels, samples)`` float64.

    Raises:
        AudioError: bad layout or sample rate; SilentAudioError: peak below −80 dBFS;
        AudioTooShortError: shorter than ``min_seconds``.
    """
    if sr <= 0:
        raise AudioError(f"{name}: sample rate must be positive; got {sr}")
    arr = as_channels_first(audio, name)
    dur = arr.shape[1] / sr
    if dur < min_seconds:
        raise AudioTooShortError(
            f"{name}: {dur:.2f} s is shorter than the {min_seconds:.2f} s needed"
        )
    level = peak_dbfs(arr)
    if level < SILENCE_DBFS:
        raise SilentAudioError(f"{name}: silent (peak {level:.1f} dBFS < {SILENCE_DBFS:.0f} dBFS)")
    return arr


def resample(audio: ArrayLike, sr_in: int, sr_out: int) -> NDArray[np.float64]:
    """Resample with soxr (VHQ).

    Args:
        audio: shape ``(samples,)`` or ``(channels, samples)``.
        sr_in: input rate in Hz.
        sr_out: output rate in Hz.

    Returns:
        Same layout as the input, ``round(samples * sr_out / sr_in)`` samples.
    """
    arr = np.asarray(audio, dtype=np.float64)
    if sr_in == sr_out:
        return arr.copy()
    return engine_audio.resample(arr, sr_in, sr_out, quality="VHQ")


@dataclass(frozen=True)
class AudioClip:
    """A decoded clip.

    Attributes:
        audio: shape ``(channels, samples)``, float64, full scale ±1.
        sr: sample rate in Hz.
        path: the file it came from, if any.
    """

    audio: NDArray[np.float64]
    sr: int
    path: Path | None = None

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.audio.shape[1] / self.sr

    @property
    def mono(self) -> NDArray[np.float64]:
        """Channel average, shape ``(samples,)``."""
        return self.audio.mean(axis=0)


def load_clip(path: str | Path, sr: int | None = None) -> AudioClip:
    """Read an audio file with soundfile, optionally resampling with soxr.

    Args:
        path: any format libsndfile reads (WAV, FLAC, OGG, MP3 with libsndfile >= 1.1).
        sr: target rate in Hz, or ``None`` to keep the file's rate.

    Returns:
        :class:`AudioClip` with audio of shape ``(channels, samples)``.

    Raises:
        AudioError: the file is missing, unreadable or empty (the message names the file).
    """
    p = Path(path)
    try:
        data, file_sr = engine_audio.read_audio(p)
    except engine_audio.AudioFileError as exc:
        raise AudioError(str(exc)) from None
    audio = data.astype(np.float64)
    if sr is not None and sr != file_sr:
        audio = resample(audio, int(file_sr), sr)
        file_sr = sr
    return AudioClip(audio=audio, sr=int(file_sr), path=p)


def load_many(paths: Sequence[str | Path], sr: int | None = None) -> list[AudioClip]:
    """:func:`load_clip` for several files; the error names the first file that fails."""
    return [load_clip(p, sr) for p in paths]
