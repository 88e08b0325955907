"""Beat-synchronous mixup (MusicLDM, Chen et al. 2023, arXiv 2308.01546): BAM and BLM.

Two clips of compatible tempo are aligned on their first downbeat and interpolated with a ratio
``λ ~ Beta(5, 5)``, either in audio (**BAM**, :func:`beat_aligned_mixup`,
:class:`BeatSyncMixup`) or in the VAE latent space (**BLM**, :func:`beat_aligned_latent_mixup`).
Beats come from :mod:`.beats`.

Shapes: audio is ``(samples,)`` float (mono); latents are ``(channels, frames, bins)`` or
``(batch, channels, frames, bins)`` torch tensors (frame axis ``-2``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .beats import BeatInfo, BeatTrackingError, group_by_tempo, track_beats

__all__ = [
    "MUSICLDM_BETA",
    "BeatMixResult",
    "BeatSyncMixup",
    "Fill",
    "LatentMixResult",
    "beat_aligned_latent_mixup",
    "beat_aligned_mixup",
    "latent_frames_per_second",
    "sample_mix_ratio",
    "shift_signal",
]

Fill = Literal["zeros", "loop"]

#: Beta distribution parameters of the MusicLDM mix ratio, λ ~ Beta(5, 5) (Chen et al. 2023).
MUSICLDM_BETA: tuple[float, float] = (5.0, 5.0)


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
