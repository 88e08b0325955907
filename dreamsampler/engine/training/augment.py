"""Training-data augmentation for concept learning: the public API of three modules.

* :mod:`.mix` — DreamSound MIX (Plitsis et al. 2023, arXiv 2309.11140): the concept clip mixed
  with another sound at a target SNR (used by the trainer's ``--mix-dir``).
* :mod:`.beats` — beat, downbeat and tempo estimation with librosa; tempo groups.
* :mod:`.beatmix` — MusicLDM's beat-synchronous mixup (Chen et al. 2023, arXiv 2308.01546):
  BAM in audio, BLM in the VAE latent space, ``λ ~ Beta(5, 5)`` (the trainer's ``--mixup``).

Shapes: audio is ``(samples,)`` float (mono); latents are ``(channels, frames, bins)`` or
``(batch, channels, frames, bins)`` torch tensors (frame axis ``-2``).
"""

from __future__ import annotations

from .beatmix import (
    MUSICLDM_BETA,
    BeatMixResult,
    BeatSyncMixup,
    Fill,
    LatentMixResult,
    beat_aligned_latent_mixup,
    beat_aligned_mixup,
    latent_frames_per_second,
    sample_mix_ratio,
    shift_signal,
)
from .beats import BeatInfo, BeatTrackingError, group_by_tempo, track_beats
from .mix import MixAugmenter, fit_length, measure_snr_db, mix_at_snr, snr_gain

__all__ = [
    "MUSICLDM_BETA",
    "BeatInfo",
    "BeatMixResult",
    "BeatSyncMixup",
    "BeatTrackingError",
    "Fill",
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
