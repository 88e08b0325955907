"""Training-data augmentation for concept learning: DreamSound MIX and MusicLDM BAM/BLM.

* **MIX** (DreamSound, Plitsis et al. 2023, arXiv 2309.11140, Sec. 3.3): the concept clip
  ``w1`` is mixed with an unrelated recording ``w2`` at a signal-to-noise ratio ``snr`` (dB),
  ``mix = w1 + sqrt(10^(-snr/10) * P1 / P2) * w2`` with ``P`` the mean power, so the learned
  embedding keeps the concept and not the recording's background.
* **Beat-synchronous mixup** (MusicLDM, Chen et al. 2023, arXiv 2308.01546, Sec. 3.2): two
  clips of compatible tempo are aligned on their first downbeat and interpolated with a ratio
  ``λ ~ Beta(5, 5)``, either in audio (**BAM**) or in the VAE latent space (**BLM**). MusicLDM
  tracks beats and downbeats with Beat Transformer; here librosa's dynamic-programming beat
  tracker (Ellis 2007) provides beats, and the downbeat phase is estimated from onset strength
  (see :func:`track_beats`).

Shapes: audio is ``(samples,)`` float (mono); latents are ``(channels, frames, bins)`` or
``(batch, channels, frames, bins)`` torch tensors (frame axis ``-2``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import torch

from .clips import (
    AUDIO_EXTENSIONS,
    SilentClipError,
    TooFewClipsError,
    list_audio_files,
    load_audio,
    peak_dbfs,
)

__all__ = [
    "BeatInfo",
    "BeatMixResult",
    "BeatSyncMixup",
    "BeatTrackingError",
    "LatentMixResult",
    "MixAugmenter",
    "beat_aligned_latent_mixup",
    "beat_aligned_mixup",
    "fit_length",
    "group_by_tempo",
    "latent_frames_per_second",
    "measure_snr_db",
    "mix_at_snr",
    "sample_mix_ratio",
    "shift_signal",
    "snr_gain",
    "track_beats",
]

T = TypeVar("T")
Fill = Literal["zeros", "loop"]

#: Beta distribution parameters of the MusicLDM mix ratio, λ ~ Beta(5, 5) (Chen et al. 2023).
MUSICLDM_BETA: tuple[float, float] = (5.0, 5.0)


# --------------------------------------------------------------------------------------------
# MIX (DreamSound)
# --------------------------------------------------------------------------------------------


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
    ``other`` (DreamSound MIX, Plitsis et al. 2023, Sec. 3.3).

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

    ``mix = w1 + sqrt(10^(-snr/10) * P1/P2) * w2`` (Plitsis et al. 2023, arXiv 2309.11140,
    Sec. 3.3), ``P`` the mean power. ``other`` is first looped (shorter) or cropped (longer; at
    a random offset from ``rng``, else from the start) to the length of ``concept``. ``P2`` is
    the power of that fitted segment, so the components' SNR is exactly ``snr_db``.

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
            audio, _ = load_audio(f, sample_rate)
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


# --------------------------------------------------------------------------------------------
# Beats, downbeats and tempo groups
# --------------------------------------------------------------------------------------------


class BeatTrackingError(ValueError):
    """Too few beats were found to estimate tempo and downbeats."""


@dataclass(frozen=True, slots=True)
class BeatInfo:
    """Beats and downbeats of one clip.

    Attributes:
        tempo_bpm: tempo in BPM from a least-squares fit of the beat times (see
            :func:`track_beats`).
        librosa_tempo_bpm: librosa's global tempo estimate in BPM (quantised to the
            onset-envelope autocorrelation lag: about ±2 BPM at 120 BPM, hop 256 at 16 kHz).
        beat_times: ``(n_beats,)`` beat times in seconds.
        downbeat_times: ``(n_downbeats,)`` downbeat times in seconds (every
            ``beats_per_bar``-th beat from ``downbeat_phase``).
        downbeat_phase: index in ``beat_times`` of the first downbeat (0..beats_per_bar-1).
        beats_per_bar: assumed meter.
    """

    tempo_bpm: float
    librosa_tempo_bpm: float
    beat_times: np.ndarray
    downbeat_times: np.ndarray
    downbeat_phase: int
    beats_per_bar: int

    @property
    def first_downbeat(self) -> float:
        """Time of the first detected downbeat in seconds."""
        return float(self.downbeat_times[0])


def _fit_tempo(beat_times: np.ndarray, outlier_fraction: float = 0.1) -> float:
    """Tempo (BPM) from beat times by a least-squares line through ``(beat number, time)``.

    Beat numbers come from the median inter-beat interval (a skipped beat counts twice); beats
    more than ``outlier_fraction`` of a period off the line (the tracker's unreliable first and
    last beats) are dropped and the line refitted, at most three times.
    """
    iv = np.diff(beat_times)
    med = float(np.median(iv))
    numbers = np.concatenate([[0.0], np.cumsum(np.maximum(1.0, np.round(iv / med)))])
    keep = np.ones(beat_times.shape[0], dtype=bool)
    slope, icpt = np.polyfit(numbers, beat_times, 1)
    for _ in range(3):
        resid = np.abs(beat_times - (slope * numbers + icpt))
        new_keep = resid <= outlier_fraction * slope
        if new_keep.sum() < 2 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
        slope, icpt = np.polyfit(numbers[keep], beat_times[keep], 1)
    return 60.0 / float(slope)


def track_beats(
    waveform: np.ndarray,
    sample_rate: int,
    *,
    hop_length: int = 256,
    beats_per_bar: int = 4,
    start_bpm: float = 120.0,
    accent_window_s: float = 0.03,
) -> BeatInfo:
    """Beat, downbeat and tempo estimation with librosa.

    Method:

    1. Onset strength envelope ``o[t]`` (librosa spectral flux on a log-mel spectrogram,
       ``hop_length`` samples per frame) and ``librosa.beat.beat_track`` (Ellis 2007 dynamic
       programming) on it give the beat frames.
    2. Downbeat phase: the *accent* of a beat is the maximum, within ±``accent_window_s``
       of the beat frame, of a second onset envelope computed on the linear-magnitude mel
       spectrogram (the log-mel flux of step 1 hardly separates a loud from a soft hit that
       follows silence; magnitude flux grows with the hit's level). For each offset ``k`` in
       ``0..beats_per_bar-1`` the accents of beats ``k, k + B, k + 2B, ...``
       (``B = beats_per_bar``) are averaged; the offset with the largest mean is the downbeat
       phase: downbeats are taken to be the most strongly accented beats of the bar. This
       assumes a constant meter and accented downbeats (kick, crash, bass note); it is a
       heuristic, not MusicLDM's Beat Transformer.
    3. Tempo: beat numbers from the median inter-beat interval (tolerates a skipped beat),
       then a least-squares line through ``(number, time)`` with beats more than 10 % of a
       period off the line dropped and refitted; ``60 / slope``. This is finer
       than librosa's lag-quantised tempo, kept as ``librosa_tempo_bpm``.

    Beat times carry the onset envelope's latency (about one frame, ``hop_length /
    sample_rate`` s) — the same for every clip, so alignments between clips are unaffected.

    Args:
        waveform: ``(samples,)`` mono audio.
        sample_rate: sample rate in Hz.
        hop_length: onset-envelope hop in samples (256 = 16 ms at 16 kHz).
        beats_per_bar: meter (4 for 4/4).
        start_bpm: tempo prior of the beat tracker in BPM.
        accent_window_s: half-width in seconds of the accent search window.

    Returns:
        A :class:`BeatInfo`.

    Raises:
        BeatTrackingError: fewer than ``beats_per_bar`` beats found (too short, no pulse).
        ValueError: bad input shape or parameters.
    """
    import librosa  # slow import (numba); only needed here

    if waveform.ndim != 1 or waveform.shape[0] == 0:
        raise ValueError(f"expected a non-empty (samples,) array, got shape {waveform.shape}")
    if beats_per_bar < 1 or hop_length < 1 or sample_rate <= 0:
        raise ValueError("beats_per_bar, hop_length and sample_rate must be positive")
    y = np.asarray(waveform, dtype=np.float32)
    mel = librosa.feature.melspectrogram(y=y, sr=sample_rate, hop_length=hop_length)
    # step 1 envelope: librosa's default onset strength (log-power mel flux)
    env = librosa.onset.onset_strength(
        S=librosa.power_to_db(mel), sr=sample_rate, hop_length=hop_length
    )
    tempo, beats = librosa.beat.beat_track(
        onset_envelope=env,
        sr=sample_rate,
        hop_length=hop_length,
        start_bpm=start_bpm,
        units="frames",
    )
    beats = np.asarray(beats, dtype=np.int64)
    if beats.shape[0] < max(2, beats_per_bar):
        raise BeatTrackingError(
            f"found {beats.shape[0]} beat(s); need at least {max(2, beats_per_bar)} "
            "to estimate tempo and downbeats"
        )
    w = max(1, round(accent_window_s * sample_rate / hop_length))
    accent_env = librosa.onset.onset_strength(S=np.sqrt(mel), sr=sample_rate, hop_length=hop_length)
    n_env = accent_env.shape[0]
    accents = np.array([accent_env[max(0, b - w) : min(n_env, b + w + 1)].max() for b in beats])
    scores = [float(accents[k::beats_per_bar].mean()) for k in range(beats_per_bar)]
    phase = int(np.argmax(scores))
    times = librosa.frames_to_time(beats, sr=sample_rate, hop_length=hop_length)
    return BeatInfo(
        tempo_bpm=_fit_tempo(times),
        librosa_tempo_bpm=float(np.atleast_1d(tempo)[0]),
        beat_times=times,
        downbeat_times=times[phase::beats_per_bar],
        downbeat_phase=phase,
        beats_per_bar=beats_per_bar,
    )


def _default_tempo(item: object) -> float:
    if isinstance(item, int | float):
        return float(item)
    tempo = getattr(item, "tempo_bpm", None)
    if tempo is None:
        raise TypeError(
            f"cannot read a tempo from {type(item).__name__}: pass numbers, objects with "
            "`tempo_bpm`, or tempo_of="
        )
    return float(tempo)


def group_by_tempo(
    items: Sequence[T],
    tolerance_bpm: float = 3.0,
    *,
    tempo_of: Callable[[T], float] | None = None,
) -> list[list[T]]:
    """Group items whose tempi lie within ``tolerance_bpm`` of each other.

    MusicLDM mixes only tempo-compatible songs (Chen et al. 2023, Sec. 3.2). Items are sorted
    by tempo and split greedily: a group starts at its slowest item and takes every next item
    within ``tolerance_bpm`` BPM of that first one, so every pair in a group differs by at
    most ``tolerance_bpm``. Half/double-tempo relations (60 vs 120 BPM) are not merged.

    Args:
        items: numbers (BPM), objects with a ``tempo_bpm`` attribute (e.g. :class:`BeatInfo`),
            or anything with ``tempo_of``.
        tolerance_bpm: maximum tempo difference within a group, in BPM.
        tempo_of: tempo accessor in BPM.

    Returns:
        Groups (lists of the given items, slowest first), ordered by tempo.

    Raises:
        ValueError: negative ``tolerance_bpm`` or a non-finite tempo.
        TypeError: an item has no readable tempo.
    """
    if tolerance_bpm < 0:
        raise ValueError(f"tolerance_bpm must be >= 0, got {tolerance_bpm}")
    get = tempo_of if tempo_of is not None else _default_tempo
    keyed = [(get(it), i, it) for i, it in enumerate(items)]
    if any(not math.isfinite(k) for k, _, _ in keyed):
        raise ValueError("tempi must be finite")
    keyed.sort(key=lambda t: (t[0], t[1]))
    groups: list[list[T]] = []
    start = -math.inf
    for tempo, _, it in keyed:
        if not groups or tempo - start > tolerance_bpm:
            groups.append([])
            start = tempo
        groups[-1].append(it)
    return groups


def sample_mix_ratio(
    rng: np.random.Generator, alpha: float = MUSICLDM_BETA[0], beta: float = MUSICLDM_BETA[1]
) -> float:
    """Draw the mixup ratio ``λ ~ Beta(alpha, beta)`` (MusicLDM: Beta(5, 5), mean 0.5,
    variance ``αβ / ((α+β)²(α+β+1))`` = 0.0227)."""
    return float(rng.beta(alpha, beta))


def shift_signal(x: np.ndarray, shift: int, *, fill: Fill = "zeros") -> np.ndarray:
    """Delay a ``(samples,)`` signal by ``shift`` samples: ``y[n] = x[n - shift]``.

    A positive ``shift`` delays (content moves later), a negative one advances. Samples that
    fall outside ``x`` are zero (``fill="zeros"``) or wrap around (``fill="loop"``, a
    circular shift). Output length equals input length.

    Raises:
        ValueError: non-1-D input or unknown ``fill``.
    """
    if x.ndim != 1:
        raise ValueError(f"expected (samples,), got shape {x.shape}")
    if fill == "loop":
        return np.roll(x, shift)
    if fill != "zeros":
        raise ValueError(f"unknown fill {fill!r}")
    n = x.shape[0]
    y = np.zeros_like(x)
    if shift >= n or -shift >= n:
        return y
    if shift >= 0:
        y[shift:] = x[: n - shift]
    else:
        y[: n + shift] = x[-shift:]
    return y


@dataclass(frozen=True, slots=True)
class BeatMixResult:
    """Output of :func:`beat_aligned_mixup` (BAM).

    Attributes:
        mix: ``(samples,)`` float32, ``lam * a + (1 - lam) * aligned_other``.
        aligned_other: ``(samples,)`` float32, ``b`` shifted so its first downbeat coincides
            with the first downbeat of ``a``.
        lam: mix ratio λ of ``a``.
        shift_samples: delay applied to ``b`` in samples (negative: advanced).
        beats_a: beats of ``a``.
        beats_b: beats of ``b`` (before the shift).
    """

    mix: np.ndarray
    aligned_other: np.ndarray
    lam: float
    shift_samples: int
    beats_a: BeatInfo
    beats_b: BeatInfo


def beat_aligned_mixup(
    a: np.ndarray,
    b: np.ndarray,
    sample_rate: int,
    *,
    beats_a: BeatInfo | None = None,
    beats_b: BeatInfo | None = None,
    lam: float | None = None,
    rng: np.random.Generator | None = None,
    fill: Fill = "zeros",
    max_tempo_diff_bpm: float | None = None,
    hop_length: int = 256,
) -> BeatMixResult:
    """Beat-synchronous audio mixup (BAM, MusicLDM, Chen et al. 2023, arXiv 2308.01546).

    ``b`` is shifted by ``shift = round((d_a - d_b) * sample_rate)`` samples (``d`` = first
    downbeat in seconds) so that its first downbeat coincides with that of ``a``, brought to
    the length of ``a`` (zero-filled or circularly wrapped, see :func:`shift_signal`), and
    mixed: ``mix = λ a + (1 - λ) b_aligned`` with ``λ ~ Beta(5, 5)`` unless given. A convex
    mix of two signals within ±1 stays within ±1, so no normalisation is applied.

    Args:
        a: ``(samples,)`` anchor clip (its timeline is kept).
        b: ``(samples',)`` clip to align and mix in.
        sample_rate: sample rate of both in Hz.
        beats_a: precomputed beats of ``a`` (else :func:`track_beats`).
        beats_b: precomputed beats of ``b``.
        lam: fixed ratio in [0, 1]; drawn from Beta(5, 5) with ``rng`` when ``None``.
        rng: numpy Generator for λ (a fresh unseeded one if ``None``).
        fill: ``"zeros"`` or ``"loop"`` for the samples ``b`` does not cover after the shift.
        max_tempo_diff_bpm: refuse pairs whose tempi differ by more (BPM); ``None``: no check.
        hop_length: onset hop in samples when beats are tracked here.

    Returns:
        A :class:`BeatMixResult`.

    Raises:
        BeatTrackingError: beats cannot be tracked in ``a`` or ``b``.
        ValueError: tempi too different, ``lam`` outside [0, 1], bad shapes.
    """
    if a.ndim != 1 or b.ndim != 1 or a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError("a and b must be non-empty (samples,) arrays")
    ba = beats_a if beats_a is not None else track_beats(a, sample_rate, hop_length=hop_length)
    bb = beats_b if beats_b is not None else track_beats(b, sample_rate, hop_length=hop_length)
    if max_tempo_diff_bpm is not None and abs(ba.tempo_bpm - bb.tempo_bpm) > max_tempo_diff_bpm:
        raise ValueError(
            f"tempi {ba.tempo_bpm:.1f} and {bb.tempo_bpm:.1f} BPM differ by more than "
            f"{max_tempo_diff_bpm} BPM"
        )
    if lam is None:
        lam = sample_mix_ratio(rng if rng is not None else np.random.default_rng())
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    shift = round((ba.first_downbeat - bb.first_downbeat) * sample_rate)
    n = a.shape[0]
    src = np.asarray(b, dtype=np.float32)
    if fill == "loop":
        src = np.resize(src, max(n, src.shape[0]))
    elif src.shape[0] < n:
        src = np.concatenate([src, np.zeros(n - src.shape[0], dtype=np.float32)])
    aligned = shift_signal(src, shift, fill=fill)[:n]
    mix = (lam * a.astype(np.float64) + (1.0 - lam) * aligned).astype(np.float32)
    return BeatMixResult(
        mix=mix,
        aligned_other=aligned.astype(np.float32),
        lam=float(lam),
        shift_samples=int(shift),
        beats_a=ba,
        beats_b=bb,
    )


# --------------------------------------------------------------------------------------------
# BLM: the same alignment in latent space
# --------------------------------------------------------------------------------------------


def latent_frames_per_second(
    sample_rate: int = 16000, mel_hop_length: int = 160, time_downsample: int = 4
) -> float:
    """Latent frame rate of a mel-VAE latent diffusion model, in frames per second.

    ``sample_rate / mel_hop_length / time_downsample``; AudioLDM/MusicLDM: 16000 Hz, hop 160,
    VAE downsampling 4 → 25.0 latent frames/s (256 frames for 10.24 s).
    """
    return sample_rate / mel_hop_length / time_downsample


@dataclass(frozen=True, slots=True)
class LatentMixResult:
    """Output of :func:`beat_aligned_latent_mixup` (BLM).

    Attributes:
        mix: latent of the input shape, ``lam * z_a + (1 - lam) * z_b_aligned``.
        aligned_other: ``z_b`` shifted by ``shift_frames`` along the frame axis.
        lam: mix ratio λ of ``z_a``.
        shift_frames: delay applied to ``z_b`` in latent frames (negative: advanced).
    """

    mix: torch.Tensor
    aligned_other: torch.Tensor
    lam: float
    shift_frames: int


def _shift_frames(z: torch.Tensor, shift: int, fill: Fill) -> torch.Tensor:
    if fill == "loop":
        return torch.roll(z, shifts=shift, dims=-2)
    if fill != "zeros":
        raise ValueError(f"unknown fill {fill!r}")
    n = z.shape[-2]
    out = torch.zeros_like(z)
    if abs(shift) >= n:
        return out
    if shift >= 0:
        out[..., shift:, :] = z[..., : n - shift, :]
    else:
        out[..., : n + shift, :] = z[..., -shift:, :]
    return out


def beat_aligned_latent_mixup(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    frames_per_second: float,
    downbeat_a: float | BeatInfo,
    downbeat_b: float | BeatInfo,
    *,
    lam: float | None = None,
    rng: np.random.Generator | None = None,
    fill: Fill = "zeros",
) -> LatentMixResult:
    """Beat-synchronous latent mixup (BLM, MusicLDM, Chen et al. 2023, arXiv 2308.01546).

    The BAM alignment applied to VAE latents: ``z_b`` is shifted along the frame axis by
    ``round((d_a - d_b) * frames_per_second)`` latent frames (``d`` = first downbeat in
    seconds) and mixed, ``λ z_a + (1 - λ) z_b_aligned``, ``λ ~ Beta(5, 5)`` unless given.
    Independent of the VAE: only the latent frame rate is needed (see
    :func:`latent_frames_per_second`; 25 frames/s for AudioLDM/MusicLDM). Alignment is
    quantised to one latent frame (40 ms at 25 frames/s).

    Args:
        z_a: latent ``(channels, frames, bins)`` or ``(batch, channels, frames, bins)``.
        z_b: latent of the same shape.
        frames_per_second: latent frames per second.
        downbeat_a: first downbeat of ``a`` in seconds, or its :class:`BeatInfo`.
        downbeat_b: first downbeat of ``b`` in seconds, or its :class:`BeatInfo`.
        lam: fixed ratio in [0, 1]; drawn from Beta(5, 5) with ``rng`` when ``None``.
        rng: numpy Generator for λ.
        fill: ``"zeros"`` or ``"loop"`` (circular) for uncovered frames.

    Returns:
        A :class:`LatentMixResult`.

    Raises:
        ValueError: shape mismatch, fewer than 3 dimensions, non-positive frame rate,
            ``lam`` outside [0, 1].
    """
    if z_a.shape != z_b.shape:
        raise ValueError(f"latent shapes differ: {tuple(z_a.shape)} vs {tuple(z_b.shape)}")
    if z_a.dim() < 3:
        raise ValueError(f"expected (channels, frames, bins) latents, got {tuple(z_a.shape)}")
    if frames_per_second <= 0:
        raise ValueError(f"frames_per_second must be positive, got {frames_per_second}")
    da = downbeat_a.first_downbeat if isinstance(downbeat_a, BeatInfo) else float(downbeat_a)
    db = downbeat_b.first_downbeat if isinstance(downbeat_b, BeatInfo) else float(downbeat_b)
    if lam is None:
        lam = sample_mix_ratio(rng if rng is not None else np.random.default_rng())
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    shift = round((da - db) * frames_per_second)
    aligned = _shift_frames(z_b, shift, fill)
    mix = lam * z_a + (1.0 - lam) * aligned
    return LatentMixResult(mix=mix, aligned_other=aligned, lam=float(lam), shift_frames=shift)


# --------------------------------------------------------------------------------------------
# Pairing clips for BAM
# --------------------------------------------------------------------------------------------


class BeatSyncMixup:
    """BAM over a fixed set of clips: beats tracked once, partners from the same tempo group.

    Clips whose beats cannot be tracked (:class:`BeatTrackingError`) have no partner.

    Args:
        waveforms: the clips, each ``(samples,)`` at ``sample_rate``.
        sample_rate: sample rate in Hz.
        tolerance_bpm: tempo tolerance of a group in BPM (see :func:`group_by_tempo`).
        hop_length: onset hop in samples for :func:`track_beats`.
        beats_per_bar: meter for downbeat estimation.
        fill: see :func:`beat_aligned_mixup`.
        seed: seed of the internal Generator (used when no ``rng`` is passed to a call).
    """

    def __init__(
        self,
        waveforms: Sequence[np.ndarray],
        sample_rate: int,
        *,
        tolerance_bpm: float = 3.0,
        hop_length: int = 256,
        beats_per_bar: int = 4,
        fill: Fill = "zeros",
        seed: int | None = None,
    ) -> None:
        self.waveforms = [np.asarray(w, dtype=np.float32) for w in waveforms]
        self.sample_rate = sample_rate
        self.fill: Fill = fill
        self.rng = np.random.default_rng(seed)
        self.beats: list[BeatInfo | None] = []
        for w in self.waveforms:
            try:
                info: BeatInfo | None = track_beats(
                    w, sample_rate, hop_length=hop_length, beats_per_bar=beats_per_bar
                )
            except BeatTrackingError:
                info = None
            self.beats.append(info)
        tempi = {i: b.tempo_bpm for i, b in enumerate(self.beats) if b is not None}
        groups = group_by_tempo(list(tempi), tolerance_bpm, tempo_of=tempi.__getitem__)
        self._partners: dict[int, list[int]] = {i: [] for i in range(len(self.waveforms))}
        for g in groups:
            for i in g:
                self._partners[i] = [j for j in g if j != i]

    def __len__(self) -> int:
        return len(self.waveforms)

    def partners(self, index: int) -> list[int]:
        """Indices of the clips tempo-compatible with clip ``index`` (itself excluded)."""
        return list(self._partners[index])

    def __call__(self, index: int, rng: np.random.Generator | None = None) -> BeatMixResult | None:
        """BAM of clip ``index`` with a random tempo-compatible partner.

        Returns:
            The :class:`BeatMixResult` (clip ``index`` is the anchor ``a``), or ``None`` when
            the clip has no partner.
        """
        g = self.rng if rng is None else rng
        partners = self._partners[index]
        if not partners:
            return None
        j = partners[int(g.integers(len(partners)))]
        return beat_aligned_mixup(
            self.waveforms[index],
            self.waveforms[j],
            self.sample_rate,
            beats_a=self.beats[index],
            beats_b=self.beats[j],
            rng=g,
            fill=self.fill,
        )
