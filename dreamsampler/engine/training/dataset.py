"""Training examples for concept learning: (waveform, prompt) pairs.

Textual inversion (Gal et al. 2022, arXiv 2208.01618) as adapted to audio by DreamSound
(Plitsis et al. 2023, arXiv 2309.11140) pairs every training clip with a prompt drawn at
random from neutral templates that contain the placeholder token (``TI_TEMPLATES``).
DreamBooth (Ruiz et al. 2022, arXiv 2208.12242) uses one fixed prompt with a rare identifier
and the class word, "a recording of a sks guitar" (``DREAMBOOTH_TEMPLATE``).

Determinism: example ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)`` — its prompt
and augmentations use ``numpy.random.default_rng([seed, e, i])`` — so results do not depend
on DataLoader worker count or order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import BeatSyncMixup, MixAugmenter
from .clips import TrainingClip

__all__ = [
    "DREAMBOOTH_TEMPLATE",
    "TI_TEMPLATES",
    "ConceptDataset",
    "TrainingExample",
    "format_prompt",
]

#: Textual-inversion prompt templates for audio concepts; ``{}`` is the placeholder token.
#: Neutral descriptions of a recording in the spirit of DreamSound's 27 templates, so that the
#: learned token absorbs the concept rather than one phrasing.
TI_TEMPLATES: tuple[str, ...] = (
    "a recording of a {}",
    "the sound of {}",
    "a recording of the {}",
    "a {} sound",
    "music made with {}",
    "the sound of a {}",
    "a recording of {}",
    "an audio recording of a {}",
    "a clean recording of a {}",
    "a high-quality recording of the {}",
    "a close-up recording of a {}",
    "a studio recording of {}",
    "a loud recording of a {}",
    "a quiet recording of the {}",
    "a short recording of a {}",
    "a {} recording",
    "my {} recording",
    "the {} audio",
    "a good {} recording",
    "a clear {} sound",
    "a synthesized {} sound",
    "a rendition of the {}",
    "a sample of {}",
    "an audio clip of a {}",
    "a track featuring {}",
    "a performance on the {}",
    "a recording featuring the {}",
)

#: DreamBooth prompt (DreamSound): identifier then class word, "a recording of a sks guitar".
DREAMBOOTH_TEMPLATE = "a recording of a {} {}"

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def format_prompt(template: str, token: str, class_word: str | None = None) -> str:
    """Fill a template: one ``{}`` takes ``token``; two take ``token`` then ``class_word``.

    Raises:
        ValueError: the template has no or more than two ``{}``, or two without a class word.
    """
    n = template.count("{}")
    if n == 1:
        return template.format(token)
    if n == 2:
        if not class_word:
            raise ValueError(f"template {template!r} needs a class word")
        return template.format(token, class_word)
    raise ValueError(f"template {template!r} must contain one or two '{{}}' placeholders")


class TrainingExample(NamedTuple):
    """One training pair; ``default_collate`` batches it as ``(waveforms, prompts)``.

    Attributes:
        waveform: ``(samples,)`` float32 tensor at the model's sample rate.
        prompt: the text prompt containing the placeholder token.
    """

    waveform: torch.Tensor
    prompt: str


class ConceptDataset(Dataset[TrainingExample]):
    """Map-style dataset of ``(waveform (samples,), prompt)`` pairs for TI or DreamBooth.

    Item ``i`` uses clip ``i % len(clips)``; the dataset is ``repeats`` passes over the clips
    (DreamSound/TI scripts use ``repeats=100``). Per item, in this order and each with its own
    probability: BAM with a tempo-compatible partner (MusicLDM; anchor = this clip), MIX with
    a random other sound at the augmenter's SNR (DreamSound), then a custom ``augment`` hook.

    Args:
        clips: :class:`TrainingClip` objects or ``(samples,)`` arrays, all the same length.
        placeholder_token: the learned token, e.g. ``"<my-guitar>"`` or ``"sks"``.
        prompt_mode: ``"templates"`` (random from ``templates``) or ``"dreambooth"`` (fixed
            ``DREAMBOOTH_TEMPLATE`` with ``class_word``).
        templates: templates with one ``{}`` (token) or two (token, class word).
        class_word: the class noun ("guitar"); needed for ``"dreambooth"`` and 2-slot templates.
        repeats: passes over the clips per epoch (>= 1).
        seed: base seed of the per-item generators.
        mix: MIX augmenter (see :class:`MixAugmenter`), applied with ``mix_probability``.
        mix_probability: probability of MIX per item, in [0, 1].
        beat_mixup: BAM helper built on the *same* clips, in the same order.
        beat_mixup_probability: probability of BAM per item, in [0, 1].
        augment: extra hook ``f(waveform (samples,), rng) -> (samples,)``, always applied.

    Raises:
        ValueError: no clips, unequal clip lengths, bad probabilities/repeats, a template
            without a placeholder, a missing class word, or a ``beat_mixup`` of other length.
    """

    def __init__(
        self,
        clips: Sequence[TrainingClip] | Sequence[np.ndarray],
        placeholder_token: str,
        *,
        prompt_mode: Literal["templates", "dreambooth"] = "templates",
        templates: Sequence[str] = TI_TEMPLATES,
        class_word: str | None = None,
        repeats: int = 1,
        seed: int = 0,
        mix: MixAugmenter | None = None,
        mix_probability: float = 0.5,
        beat_mixup: BeatSyncMixup | None = None,
        beat_mixup_probability: float = 0.5,
        augment: Augment | None = None,
    ) -> None:
        if len(clips) == 0:
            raise ValueError("ConceptDataset needs at least one clip")
        waves = [np.asarray(c.waveform if isinstance(c, TrainingClip) else c) for c in clips]
        if any(w.ndim != 1 for w in waves) or len({w.shape[0] for w in waves}) != 1:
            raise ValueError("all clips must be (samples,) arrays of the same length")
        if not placeholder_token.strip():
            raise ValueError("placeholder_token must not be empty")
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        for name, p in (
            ("mix_probability", mix_probability),
            ("beat_mixup_probability", beat_mixup_probability),
        ):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if beat_mixup is not None and len(beat_mixup) != len(waves):
            raise ValueError("beat_mixup must be built on the same clips as the dataset")
        if prompt_mode == "dreambooth":
            if not class_word:
                raise ValueError('prompt_mode="dreambooth" needs a class_word')
            self.templates: tuple[str, ...] = (DREAMBOOTH_TEMPLATE,)
        elif prompt_mode == "templates":
            if len(templates) == 0:
                raise ValueError("templates must not be empty")
            self.templates = tuple(templates)
        else:
            raise ValueError(f"unknown prompt_mode {prompt_mode!r}")
        for t in self.templates:
            format_prompt(t, placeholder_token, class_word)  # validates every template early
        self.waveforms: list[np.ndarray] = [w.astype(np.float32, copy=False) for w in waves]
        self.placeholder_token = placeholder_token
        self.class_word = class_word
        self.prompt_mode = prompt_mode
        self.repeats = repeats
        self.seed = seed
        self.mix = mix
        self.mix_probability = mix_probability
        self.beat_mixup = beat_mixup
        self.beat_mixup_probability = beat_mixup_probability
        self.augment = augment
        self.epoch = 0

    @property
    def num_clips(self) -> int:
        """Number of distinct clips."""
        return len(self.waveforms)

    def __len__(self) -> int:
        return self.num_clips * self.repeats

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations ``__getitem__`` returns (like
        ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def example(self, index: int, epoch: int = 0) -> TrainingExample:
        """Item ``index`` of epoch ``epoch``, a pure function of ``(seed, epoch, index)``.

        Returns:
            :class:`TrainingExample` with a ``(samples,)`` float32 tensor and its prompt.

        Raises:
            IndexError: ``index`` outside ``[0, len(self))``.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        rng = np.random.default_rng([self.seed, epoch, index])
        clip_index = index % self.num_clips
        template = self.templates[int(rng.integers(len(self.templates)))]
        prompt = format_prompt(template, self.placeholder_token, self.class_word)
        wave = self.waveforms[clip_index]
        if self.beat_mixup is not None and rng.random() < self.beat_mixup_probability:
            bam = self.beat_mixup(clip_index, rng)
            if bam is not None:
                wave = bam.mix
        if self.mix is not None and rng.random() < self.mix_probability:
            wave = self.mix(wave, rng)
        if self.augment is not None:
            wave = self.augment(wave, rng)
        out = torch.from_numpy(np.array(wave, dtype=np.float32, copy=True))
        return TrainingExample(waveform=out, prompt=prompt)

    def __getitem__(self, index: int) -> TrainingExample:
        return self.example(index, self.epoch)

    def stream(self, *, shuffle: bool = True, start_epoch: int = 0) -> Iterator[TrainingExample]:
        """Endless iterator over epochs (``start_epoch``, ``start_epoch + 1``, ...).

        Each epoch visits every item once, in an order permuted by
        ``default_rng([seed, epoch])`` when ``shuffle``; deterministic for a seed. Does not
        change :attr:`epoch`.
        """
        epoch = start_epoch
        while True:
            order = np.arange(len(self))
            if shuffle:
                order = np.random.default_rng([self.seed, epoch]).permutation(order)
            for i in order:
                yield self.example(int(i), epoch)
            epoch += 1
