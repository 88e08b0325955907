"""DreamSound MIX (Plitsis et al. 2023, arXiv 2309.11140): a concept clip mixed with an other sound.

The concept clip ``w1`` is mixed with an unrelated recording ``w2`` at a signal-to-noise ratio
``snr`` (dB), ``mix = w1 + sqrt(10^(-snr/10) * P1 / P2) * w2`` with ``P`` the mean power, so the
learned embedding keeps the concept and not the recording's background.

Shapes: audio is ``(samples,)`` float (mono).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from dreamsampler.engine.level import peak_dbfs

from .clips import (
    AUDIO_EXTENSIONS,
    SilentClipError,
    TooFewClipsError,
    list_audio_files,
    read_clip_audio,
)

__all__ = ["MixAugmenter", "fit_length", "measure_snr_db", "mix_at_snr", "snr_gain"]


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def measure_snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """Signal-to-noise ratio ``10 log10(P_signal / P_noise)`` in dB, ``P`` the mean power.

    Args:
        signal: ``(samples,)`` (any shape) signal component.
        noise: ``(samples,)`` (any shape) noise/interference component.

    Returns:
        SNR in dB (``inf`` for silent noise, ``-inf`` for silent signal).
    """
    ps, pn = _power(signal), _power(noise)
    if pn == 0.0:
        return math.inf
    if ps == 0.0:
        return -math.inf
    return 10.0 * math.log10(ps / pn)


def fit_length(
    x: np.ndarray, num_samples: int, *, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Loop (tile from the start) or crop a ``(samples,)`` signal to ``num_samples``.

    Longer input is cropped at a uniform random offset drawn from ``rng``, or from the start
    when ``rng`` is ``None``.

    Returns:
        ``(num_samples,)`` array of the input's dtype (a copy).

    Raises:
        ValueError: empty or non-1-D input, non-positive ``num_samples``.
    """
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"expected a non-empty (samples,) array, got shape {x.shape}")
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    n = x.shape[0]
    if n < num_samples:
        return np.resize(x, num_samples)
    offset = 0 if rng is None or n == num_samples else int(rng.integers(0, n - num_samples + 1))
    return x[offset : offset + num_samples].copy()


def snr_gain(concept: np.ndarray, other: np.ndarray, snr_db: float) -> float:
    """Gain applied to ``other`` so that ``concept`` is ``snr_db`` dB above it.

    ``g = sqrt(10^(-snr/10) * P1 / P2)``, ``P1``/``P2`` the mean powers of ``concept`` and
    ``other`` (DreamSound MIX, Plitsis et al. 2023).

    Args:
        concept: ``(samples,)`` concept waveform.
        other: ``(samples,)`` other sound, already the same length as ``concept``.
        snr_db: target SNR in dB.

    Raises:
        ValueError: either signal is silent (zero power) or not finite.
    """
    p1, p2 = _power(concept), _power(other)
    if not (math.isfinite(p1) and math.isfinite(p2)):
        raise ValueError("signals must be finite")
    if p1 == 0.0:
        raise ValueError("concept waveform is silent: the SNR is undefined")
    if p2 == 0.0:
        raise ValueError("other waveform is silent: it cannot be scaled to a target SNR")
    return math.sqrt(10.0 ** (-snr_db / 10.0) * p1 / p2)


def mix_at_snr(
    concept: np.ndarray,
    other: np.ndarray,
    snr_db: float = 20.0,
    *,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """DreamSound MIX: add ``other`` to ``concept`` at a target SNR.

    ``mix = w1 + sqrt(10^(-snr/10) * P1/P2) * w2`` (Plitsis et al. 2023, arXiv 2309.11140),
    ``P`` the mean power. ``other`` is first looped (shorter) or cropped (longer; at a random
    offset from ``rng``, else from the start) to the length of ``concept``. ``P2`` is the
    power of that fitted segment, so the components' SNR is exactly ``snr_db``.

    Peak normalisation: if the sum would clip (``max |mix| > 1.0``) the whole mix is scaled
    down to a peak of exactly 1.0; the scale is common to both components, so the SNR is
    unchanged. Otherwise the mix is returned unscaled.

    Args:
        concept: ``(samples,)`` concept waveform, full scale ±1.
        other: ``(samples',)`` other sound, any length.
        snr_db: target SNR in dB (DreamSound default 20 dB).
        rng: numpy Generator for the crop offset of a longer ``other``.

    Returns:
        ``(samples,)`` float32 mix.

    Raises:
        ValueError: non-1-D/empty input, or a silent ``concept`` or ``other`` segment.
    """
    if concept.ndim != 1 or concept.shape[0] == 0:
        raise ValueError(f"concept must be a non-empty (samples,) array, got {concept.shape}")
    w1 = concept.astype(np.float64)
    w2 = fit_length(np.asarray(other), w1.shape[0], rng=rng).astype(np.float64)
    mix = w1 + snr_gain(w1, w2, snr_db) * w2
    peak = float(np.max(np.abs(mix)))
    if peak > 1.0:
        mix /= peak
    return mix.astype(np.float32)


class MixAugmenter:
    """DreamSound MIX augmentation with a pool of "other sounds".

    Each call picks one other sound uniformly at random (seeded numpy Generator), loops/crops
    it to the clip and mixes it in at ``snr_db`` with :func:`mix_at_snr`.

    Args:
        others: the other sounds, each ``(samples,)`` at the training sample rate.
        snr_db: target SNR in dB (default 20 dB, DreamSound).
        seed: seed of the internal Generator (used when no ``rng`` is passed to a call).

    Raises:
        ValueError: empty pool, or a pool entry that is not a non-empty, non-silent 1-D array.
    """

    def __init__(
        self, others: Sequence[np.ndarray], *, snr_db: float = 20.0, seed: int | None = None
    ) -> None:
        if len(others) == 0:
            raise ValueError("MixAugmenter needs at least one other sound")
        pool: list[np.ndarray] = []
        for i, o in enumerate(others):
            arr = np.asarray(o, dtype=np.float32)
            if arr.ndim != 1 or arr.shape[0] == 0 or _power(arr) == 0.0:
                raise ValueError(f"other sound #{i} must be a non-empty, non-silent (samples,)")
            pool.append(arr)
        self.others: list[np.ndarray] = pool
        self.snr_db = float(snr_db)
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        sample_rate: int,
        *,
        snr_db: float = 20.0,
        seed: int | None = None,
        extensions: Collection[str] = AUDIO_EXTENSIONS,
        silence_threshold_db: float = -60.0,
    ) -> MixAugmenter:
        """Load every audio file of ``folder`` (full length, mono, ``sample_rate`` Hz).

        Raises:
            ClipFolderMissingError: the folder does not exist.
            TooFewClipsError: no audio file in the folder.
            UnreadableClipError: a file cannot be decoded.
            SilentClipError: a file peaks below ``silence_threshold_db`` dBFS.
        """
        files = list_audio_files(folder, extensions)
        if not files:
            raise TooFewClipsError(folder, "no audio files for MIX augmentation")
        others: list[np.ndarray] = []
        for f in files:
            audio, _ = read_clip_audio(f, sample_rate)
            level = peak_dbfs(audio)
            if level < silence_threshold_db:
                raise SilentClipError(f, f"silent: peak {level:.1f} dBFS")
            others.append(audio)
        return cls(others, snr_db=snr_db, seed=seed)

    def __len__(self) -> int:
        return len(self.others)

    def __call__(self, waveform: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Mix a random other sound into ``waveform`` (``(samples,)``) at ``snr_db``.

        Args:
            waveform: ``(samples,)`` concept clip.
            rng: Generator for the choice and crop; defaults to the internal seeded one.

        Returns:
            ``(samples,)`` float32 mix (see :func:`mix_at_snr`).
        """
        g = self.rng if rng is None else rng
        other = self.others[int(g.integers(len(self.others)))]
        return mix_at_snr(waveform, other, self.snr_db, rng=g)
