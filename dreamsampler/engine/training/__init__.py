"""Training data for personalised concepts (DreamSound-style textual inversion / DreamBooth).

* :mod:`.clips` — load, validate and size a concept's clips (mono, model rate, model length).
* :mod:`.augment` — the augmentation API: :mod:`.mix` (DreamSound MIX), :mod:`.beats` (beats,
  downbeats, tempo groups), :mod:`.beatmix` (MusicLDM BAM/BLM).
* :mod:`.dataset` — seeded ``(waveform, prompt)`` dataset with TI templates or DreamBooth prompt.
"""

from .augment import (
    BeatInfo,
    BeatMixResult,
    BeatSyncMixup,
    BeatTrackingError,
    LatentMixResult,
    MixAugmenter,
    beat_aligned_latent_mixup,
    beat_aligned_mixup,
    group_by_tempo,
    latent_frames_per_second,
    mix_at_snr,
    track_beats,
)
from .clips import (
    ClipError,
    ClipFolderMissingError,
    ClipTooShortError,
    SilentClipError,
    TooFewClipsError,
    TrainingClip,
    UnreadableClipError,
    extract_crops,
    load_clip,
    load_concept_clips,
    read_clip_audio,
)
from .dataset import DREAMBOOTH_TEMPLATE, TI_TEMPLATES, ConceptDataset, TrainingExample

__all__ = [
    "DREAMBOOTH_TEMPLATE",
    "TI_TEMPLATES",
    "BeatInfo",
    "BeatMixResult",
    "BeatSyncMixup",
    "BeatTrackingError",
    "ClipError",
    "ClipFolderMissingError",
    "ClipTooShortError",
    "ConceptDataset",
    "LatentMixResult",
    "MixAugmenter",
    "SilentClipError",
    "TooFewClipsError",
    "TrainingClip",
    "TrainingExample",
    "UnreadableClipError",
    "beat_aligned_latent_mixup",
    "beat_aligned_mixup",
    "extract_crops",
    "group_by_tempo",
    "latent_frames_per_second",
    "load_clip",
    "load_concept_clips",
    "mix_at_snr",
    "read_clip_audio",
    "track_beats",
]
