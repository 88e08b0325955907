"""Reading audio files: decode any common format, mix to mono, resample with soxr.

The one decoder of the project: the engine (style-transfer input), training (concept clips) and
evaluation all read audio through :func:`read_audio`.
"""

from __future__ import annotations

import math
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


def read_audio(
    path: Path | str, duration: float | None = None, max_bytes: int | None = None
) -> tuple[np.ndarray, int]:
    """Decode an audio file at its own rate, or only its first ``duration`` seconds.

    libsndfile reads WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF…; other formats go through
    ``librosa.load`` where an audioread backend (ffmpeg) is installed. With ``duration`` only
    the frames needed are read (libsndfile stops there; audioread stops decoding), so memory
    follows ``duration``, not the file.

    Args:
        duration: seconds to read from the start; ``None`` reads the whole file.
        max_bytes: refuse files larger than this many bytes (``None``: no limit).

    Returns:
        ``(audio, sample_rate)``: float32 ``(channels, samples)`` in [-1, 1], rate in Hz.

    Raises:
        AudioFileError: missing, not a file, over ``max_bytes``, undecodable, empty, or
            NaN/infinite samples (in the part read).
    """
    path = Path(path)
    _check_path(path)
    check_size(path, max_bytes)
    try:
        with sf.SoundFile(str(path)) as fh:
            rate = fh.samplerate
            frames = fh.frames if duration is None else min(fh.frames,
                                                            math.ceil(duration * rate))
            data = fh.read(frames, dtype="float32", always_2d=True)
        audio = np.ascontiguousarray(data.T)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as first:
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mono_or_multi, rate = librosa.load(str(path), sr=None, mono=False,
                                                   dtype=np.float32, duration=duration)
            audio = np.atleast_2d(np.asarray(mono_or_multi, dtype=np.float32))
        except Exception:  # audioread raises many unrelated types
            raise AudioFileError(path, f"not a readable audio file ({first})") from None
    if audio.shape[-1] == 0 or rate <= 0:
        raise AudioFileError(path, "contains no samples")
    if not np.all(np.isfinite(audio)):
        raise AudioFileError(path, "contains NaN or infinite samples")
    return audio, int(rate)


def check_size(path: Path, max_bytes: int | None) -> None:
    """Refuse a file larger than ``max_bytes`` (``None``: any size).

    Raises:
        AudioFileError: names the size and the limit in MiB.
    """
    if max_bytes is None:
        return
    size = path.stat().st_size
    if size > max_bytes:
        raise AudioFileError(path, f"is {size / 2**20:.1f} MiB, over the input limit of "
                             f"{max_bytes / 2**20:g} MiB")


def probe_audio(
    path: Path | str, max_bytes: int | None = None, max_seconds: float | None = None
) -> float:
    """Check that ``path`` is a decodable audio file and return its duration in seconds.

    Reads only the header (libsndfile, else audioread through ``librosa.get_duration``); never
    decodes the samples.

    Args:
        max_bytes: refuse files larger than this (``None``: no limit).
        max_seconds: refuse files longer than this (``None``: no limit).

    Raises:
        AudioFileError: missing, a directory, not audio, empty, or over a limit.
    """
    path = Path(path)
    _check_path(path)
    check_size(path, max_bytes)
    try:
        info = sf.info(str(path))
        seconds = info.frames / info.samplerate if info.samplerate > 0 else 0.0
    except (sf.LibsndfileError, RuntimeError):
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seconds = float(librosa.get_duration(path=str(path)))
        except Exception as exc:  # audioread raises many unrelated types
            raise AudioFileError(path, f"not a readable audio file ({exc})") from None
    if not seconds > 0:
        raise AudioFileError(path, "contains no samples")
    if max_seconds is not None and seconds > max_seconds:
        raise AudioFileError(path, f"is {seconds:.1f} s long, over the input limit of "
                             f"{max_seconds:g} s")
    return seconds


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


def read_resampled(path: Path | str, sample_rate: int) -> np.ndarray:
    """A whole audio file at ``sample_rate``, its channels kept: float32 ``(channels, samples)``.

    Raises:
        AudioFileError: as :func:`read_audio`.
    """
    audio, rate = read_audio(path)
    return np.ascontiguousarray(resample(audio, rate, sample_rate), dtype=np.float32)


#: Seconds read beyond the requested duration so the resampler's filter sees the same input
#: near the cut as in a whole-file read (soxr HQ needs well under 10 ms).
RESAMPLE_MARGIN_S = 0.1


def load_audio(
    path: Path | str, sample_rate: int, duration: float | None = None,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Decode an audio file (or its first ``duration`` seconds), mix it to mono and resample it.

    Args:
        path: any format :func:`read_audio` reads.
        sample_rate: target rate in Hz.
        duration: seconds needed from the start; the file is read for ``duration`` +
            :data:`RESAMPLE_MARGIN_S` and the result is cut to ``round(duration * sample_rate)``
            samples (the same samples a whole-file read gives). ``None``: the whole file.
        max_bytes: refuse larger files (``None``: no limit).

    Returns:
        float32 waveform of shape ``(samples,)`` in [-1, 1] at ``sample_rate``.

    Raises:
        AudioFileError: missing, unreadable, empty or oversized file.
    """
    read = None if duration is None else duration + RESAMPLE_MARGIN_S
    path = Path(path)
    try:
        mono, rate = _read_mono(path, read, max_bytes)
    except _NotSndfile:
        audio, rate = read_audio(path, duration=read, max_bytes=max_bytes)
        mono = audio.mean(axis=0, dtype=np.float64).astype(np.float32)
    out = resample(mono, rate, sample_rate)
    if duration is not None:
        out = out[: round(duration * sample_rate)]
    return np.ascontiguousarray(out, dtype=np.float32)


class _NotSndfile(Exception):
    """libsndfile cannot read the file (another decoder may)."""


def _read_mono(path: Path, duration: float | None, max_bytes: int | None
               ) -> tuple[np.ndarray, int]:
    """libsndfile decode mixed to mono block by block: memory is one float32 per frame (the
    channels are never held at once); the samples equal ``read_audio(...)[0].mean(axis=0)``."""
    _check_path(path)
    check_size(path, max_bytes)
    try:
        fh = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise _NotSndfile from exc
    with fh:
        rate = fh.samplerate
        frames = fh.frames if duration is None else min(fh.frames, math.ceil(duration * rate))
        mono = np.empty(frames, dtype=np.float32)
        done = 0
        for block in fh.blocks(blocksize=1 << 16, frames=frames, dtype="float32",
                               always_2d=True):
            mono[done:done + len(block)] = block.mean(axis=1, dtype=np.float64)
            done += len(block)
    mono = mono[:done]
    if done == 0 or rate <= 0:
        raise AudioFileError(path, "contains no samples")
    if not np.all(np.isfinite(mono)):
        raise AudioFileError(path, "contains NaN or infinite samples")
    return mono, int(rate)
