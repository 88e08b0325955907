"""Loading a concept's training clips from a folder.

Personalisation methods for text-to-audio diffusion (DreamSound, Plitsis et al. 2023,
arXiv 2309.11140) learn a concept from a handful (about 5) of short recordings. Every
clip is brought to the front end of the model it will be fed to: mono, the model's sample rate
(16000 Hz for AudioLDM/MusicLDM) and the model's clip length (10.24 s = 163840 samples at
16 kHz). This module does that conversion and refuses, with a specific :class:`ClipError`,
the inputs that would silently ruin a training run (missing folder, too few clips, unreadable
or silent files, clips far shorter than the model length).

Shapes: every waveform returned here is 1-D, ``(samples,)``, ``float32``, full scale ±1.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from dreamsampler.engine.audio_io import AudioFileError, load_audio
from dreamsampler.engine.level import peak_dbfs

__all__ = [
    "AUDIO_EXTENSIONS",
    "ClipError",
    "ClipFolderMissingError",
    "ClipTooShortError",
    "SilentClipError",
    "TooFewClipsError",
    "TrainingClip",
    "UnreadableClipError",
    "crop_or_pad",
    "extract_crops",
    "list_audio_files",
    "load_clip",
    "load_concept_clips",
    "read_clip_audio",
]

logger = logging.getLogger(__name__)

#: File name suffixes (lower case) treated as audio when scanning a concept folder. MP3 is read
#: by libsndfile >= 1.1 (soundfile 0.12+); anything soundfile cannot open falls back to
#: ``librosa.load`` (audioread/ffmpeg where installed).
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".w64",
        ".rf64",
        ".caf",
        ".au",
        ".snd",
    }
)

CropMode = Literal["start", "center", "random"]


class ClipError(ValueError):
    """A training clip (or the folder holding them) was refused.

    Attributes:
        path: the offending file or folder.
        reason: a short human-readable reason, also part of ``str(error)``.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ClipFolderMissingError(ClipError):
    """The concept folder does not exist or is not a directory."""


class TooFewClipsError(ClipError):
    """The folder holds fewer usable clips than ``min_clips``."""


class UnreadableClipError(ClipError):
    """The file cannot be decoded as audio (corrupt, empty or not an audio file)."""


class SilentClipError(ClipError):
    """The file (or the segment selected from it) peaks below the silence threshold."""


class ClipTooShortError(ClipError):
    """The file is much shorter than the model's clip length (below ``min_length_ratio``)."""


class CaptionError(ClipError):
    """A clip's caption file is missing, unreadable, empty or has no ``{}`` for the concept."""


@dataclass(frozen=True, slots=True)
class TrainingClip:
    """One training clip, ready for the model's front end.

    Attributes:
        path: the source file.
        waveform: ``(samples,)`` float32 mono audio at ``sample_rate``, exactly the model's clip
            length in samples.
        sample_rate: sample rate of ``waveform`` in Hz.
        original_duration: duration of the source file in seconds, before any crop/pad/loop.
        caption: the clip's own training prompt template (``{}`` stands for the concept, as in
            the method's templates), read from ``<clip>.txt`` by ``captions=True``; ``None``:
            the method's templates.
    """

    path: Path
    waveform: np.ndarray
    sample_rate: int
    original_duration: float
    caption: str | None = None

    @property
    def num_samples(self) -> int:
        """Length of :attr:`waveform` in samples."""
        return int(self.waveform.shape[0])


def list_audio_files(
    folder: str | Path, extensions: Collection[str] = AUDIO_EXTENSIONS
) -> list[Path]:
    """List the audio files of a folder (not recursive), sorted by name.

    Hidden files (leading ``.``) are skipped; so are files whose suffix is not in
    ``extensions`` (a logged debug message says so).

    Args:
        folder: the concept folder.
        extensions: accepted suffixes, lower case with the dot (``".wav"``).

    Returns:
        Sorted paths.

    Raises:
        ClipFolderMissingError: ``folder`` does not exist or is not a directory.
    """
    root = Path(folder)
    if not root.exists():
        raise ClipFolderMissingError(root, "concept folder does not exist")
    if not root.is_dir():
        raise ClipFolderMissingError(root, "concept folder is not a directory")
    exts = {e.lower() for e in extensions}
    files: list[Path] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        if entry.suffix.lower() not in exts:
            logger.debug("skipping non-audio file %s", entry)
            continue
        files.append(entry)
    return files


def read_clip_audio(path: str | Path, sample_rate: int) -> tuple[np.ndarray, float]:
    """A clip file through the one decoder (:func:`dreamsampler.engine.audio_io.load_audio`:
    mixed to mono, resampled with soxr), with its duration.

    Returns:
        ``(waveform, duration)``: ``(samples,)`` float32 mono audio at ``sample_rate`` and the
        duration in seconds.

    Raises:
        UnreadableClipError: the file cannot be decoded, has no samples or contains NaN/inf.
        ValueError: ``sample_rate`` is not positive.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    p = Path(path)
    try:
        audio = load_audio(p, sample_rate)
    except AudioFileError as exc:
        raise UnreadableClipError(p, exc.reason) from None
    return audio, audio.shape[0] / sample_rate


def crop_or_pad(
    waveform: np.ndarray,
    num_samples: int,
    *,
    crop: CropMode = "start",
    loop_short: bool = False,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Bring a waveform to exactly ``num_samples`` samples.

    Longer input is cropped (``"start"``: first samples, ``"center"``: middle, ``"random"``:
    uniform offset drawn from ``rng``). Shorter input is zero-padded at the end, or tiled
    (looped) from its start when ``loop_short`` is true.

    Args:
        waveform: ``(samples,)`` audio.
        num_samples: target length in samples.
        crop: crop position for long input.
        loop_short: loop rather than zero-pad short input.
        rng: numpy Generator, required for ``crop="random"``.

    Returns:
        ``(num_samples,)`` array of the input's dtype (a copy).

    Raises:
        ValueError: empty input, non-positive ``num_samples``, unknown ``crop``, or
            ``crop="random"`` without ``rng``.
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if waveform.ndim != 1 or waveform.shape[0] == 0:
        raise ValueError(f"expected a non-empty (samples,) array, got shape {waveform.shape}")
    n = waveform.shape[0]
    if n == num_samples:
        return waveform.copy()
    if n > num_samples:
        excess = n - num_samples
        if crop == "start":
            offset = 0
        elif crop == "center":
            offset = excess // 2
        elif crop == "random":
            if rng is None:
                raise ValueError('crop="random" needs an rng (numpy Generator)')
            offset = int(rng.integers(0, excess + 1))
        else:
            raise ValueError(f"unknown crop mode {crop!r}")
        return waveform[offset : offset + num_samples].copy()
    if loop_short:
        return np.resize(waveform, num_samples)  # tiles from the start
    out = np.zeros(num_samples, dtype=waveform.dtype)
    out[:n] = waveform
    return out


def extract_crops(
    waveform: np.ndarray,
    num_samples: int,
    num_crops: int,
    *,
    seed: int | np.random.Generator | None = None,
    mode: Literal["random", "even"] = "random",
) -> list[np.ndarray]:
    """Cut several model-length crops from one long recording.

    ``mode="random"`` draws ``num_crops`` offsets uniformly in ``[0, samples - num_samples]``
    from a numpy Generator (``seed`` an int, a Generator, or ``None`` for fresh entropy).
    ``mode="even"`` is deterministic: offsets evenly spaced from the start to the end of the
    recording (first crop at 0, last ending at the last sample). Input no longer than
    ``num_samples`` yields ``num_crops`` copies of the padded input.

    Args:
        waveform: ``(samples,)`` audio.
        num_samples: crop length in samples.
        num_crops: number of crops (>= 1).
        seed: seed or Generator for ``mode="random"``; ignored for ``"even"``.
        mode: ``"random"`` or ``"even"``.

    Returns:
        ``num_crops`` arrays of shape ``(num_samples,)``.

    Raises:
        ValueError: ``num_crops < 1``, bad lengths or unknown ``mode``.
    """
    if num_crops < 1:
        raise ValueError(f"num_crops must be >= 1, got {num_crops}")
    if waveform.ndim != 1 or waveform.shape[0] == 0:
        raise ValueError(f"expected a non-empty (samples,) array, got shape {waveform.shape}")
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    excess = waveform.shape[0] - num_samples
    if excess <= 0:
        padded = crop_or_pad(waveform, num_samples)
        return [padded.copy() for _ in range(num_crops)]
    if mode == "random":
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        offsets = [int(o) for o in rng.integers(0, excess + 1, size=num_crops)]
    elif mode == "even":
        if num_crops == 1:
            offsets = [excess // 2]
        else:
            offsets = [round(i * excess / (num_crops - 1)) for i in range(num_crops)]
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return [waveform[o : o + num_samples].copy() for o in offsets]


def load_clip(
    path: str | Path,
    sample_rate: int,
    clip_samples: int,
    *,
    min_length_ratio: float = 0.5,
    loop_short: bool = False,
    silence_threshold_db: float = -60.0,
    crop: CropMode = "start",
    rng: np.random.Generator | None = None,
) -> TrainingClip:
    """Load one training clip: mono, resampled, cropped/padded to the model length.

    Args:
        path: audio file.
        sample_rate: model sample rate in Hz (16000 for AudioLDM/MusicLDM).
        clip_samples: model clip length in samples (163840 = 10.24 s at 16 kHz).
        min_length_ratio: refuse files shorter than ``min_length_ratio * clip_samples``
            (after resampling); shorter-but-acceptable files are padded or looped.
        loop_short: loop short files instead of zero-padding them.
        silence_threshold_db: refuse files whose peak is below this level in dBFS.
        crop: where to crop files longer than the model length (see :func:`crop_or_pad`).
        rng: numpy Generator for ``crop="random"``.

    Returns:
        A :class:`TrainingClip` with a ``(clip_samples,)`` float32 waveform.

    Raises:
        UnreadableClipError: not decodable as audio.
        SilentClipError: the file, or the cropped segment, peaks below ``silence_threshold_db``.
        ClipTooShortError: shorter than ``min_length_ratio`` of the model length.
        ValueError: invalid ``sample_rate``/``clip_samples``/``min_length_ratio``.
    """
    if clip_samples <= 0:
        raise ValueError(f"clip_samples must be positive, got {clip_samples}")
    if not 0.0 <= min_length_ratio <= 1.0:
        raise ValueError(f"min_length_ratio must be in [0, 1], got {min_length_ratio}")
    p = Path(path)
    audio, duration = read_clip_audio(p, sample_rate)
    level = peak_dbfs(audio)
    if level < silence_threshold_db:
        raise SilentClipError(
            p,
            f"silent: peak {level:.1f} dBFS is below the {silence_threshold_db:.1f} dBFS threshold",
        )
    ratio = audio.shape[0] / clip_samples
    if ratio < min_length_ratio:
        raise ClipTooShortError(
            p,
            f"too short: {duration:.2f} s is {ratio:.2f}x the model length "
            f"{clip_samples / sample_rate:.2f} s (minimum {min_length_ratio:.2f}x)",
        )
    wave = crop_or_pad(audio, clip_samples, crop=crop, loop_short=loop_short, rng=rng)
    seg_level = peak_dbfs(wave)
    if seg_level < silence_threshold_db:
        raise SilentClipError(
            p,
            f"the selected {clip_samples / sample_rate:.2f} s segment is silent "
            f"(peak {seg_level:.1f} dBFS)",
        )
    return TrainingClip(path=p, waveform=wave, sample_rate=sample_rate, original_duration=duration)


def read_caption(audio_path: Path) -> str:
    """The prompt template of one training clip: the first non-empty line of the ``.txt`` file
    next to it, with ``{}`` where the concept goes (``{} playing C4``).

    Raises:
        CaptionError: no such file, unreadable, empty, or without exactly one ``{}``.
    """
    path = Path(audio_path).with_suffix(".txt")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptionError(path, f"no readable caption for {Path(audio_path).name}: "
                           f"{exc.strerror if isinstance(exc, OSError) else exc}") from exc
    text = next((line for line in lines if line), "")
    if text.count("{}") != 1:
        raise CaptionError(path, "a caption needs exactly one {} where the concept goes "
                           f"(e.g. '{{}} playing C4'), got {text!r}")
    return text


def load_concept_clips(
    folder: str | Path,
    sample_rate: int,
    clip_samples: int,
    *,
    min_clips: int = 1,
    extensions: Collection[str] = AUDIO_EXTENSIONS,
    min_length_ratio: float = 0.5,
    loop_short: bool = False,
    silence_threshold_db: float = -60.0,
    crop: CropMode = "start",
    seed: int | None = None,
    skip_invalid: bool = False,
    captions: bool = False,
) -> list[TrainingClip]:
    """Load all training clips of a concept folder (not recursive, sorted by file name).

    Each file goes through :func:`load_clip`. By default the first bad file aborts the load
    with its specific :class:`ClipError`; with ``skip_invalid=True`` bad files are logged and
    skipped, and only the ``min_clips`` check can fail.

    Args:
        folder: concept folder holding the clips.
        sample_rate: model sample rate in Hz.
        clip_samples: model clip length in samples.
        min_clips: minimum number of usable clips (DreamSound uses about 5).
        extensions: file suffixes treated as audio; other files are ignored.
        min_length_ratio: see :func:`load_clip` (default 0.5 of the model length).
        loop_short: see :func:`load_clip`.
        silence_threshold_db: see :func:`load_clip` (default -60 dBFS).
        crop: see :func:`load_clip`; ``"random"`` uses a Generator seeded with ``seed``.
        seed: seed for random crops.
        skip_invalid: log and skip bad files instead of raising.
        captions: read each clip's prompt template from the text file of the same name
            (``bell1.wav`` → ``bell1.txt``, e.g. ``{} playing C4``; see :func:`read_caption`).

    Returns:
        The clips, in file name order.

    Raises:
        ClipFolderMissingError: ``folder`` does not exist or is not a directory.
        TooFewClipsError: fewer than ``min_clips`` usable clips.
        UnreadableClipError, SilentClipError, ClipTooShortError, CaptionError: a bad file,
            unless ``skip_invalid``.
    """
    files = list_audio_files(folder, extensions)
    rng = np.random.default_rng(seed)
    clips: list[TrainingClip] = []
    for f in files:
        try:
            clip = load_clip(
                f,
                sample_rate,
                clip_samples,
                min_length_ratio=min_length_ratio,
                loop_short=loop_short,
                silence_threshold_db=silence_threshold_db,
                crop=crop,
                rng=rng,
            )
            if captions:
                clip = replace(clip, caption=read_caption(f))
            clips.append(clip)
        except ClipError as err:
            if not skip_invalid:
                raise
            logger.warning("skipping training clip: %s", err)
    if len(clips) < min_clips:
        skipped = len(files) - len(clips)
        detail = f" ({skipped} refused)" if skipped else ""
        raise TooFewClipsError(
            folder,
            f"found {len(clips)} usable audio clip(s){detail}, need at least {min_clips}",
        )
    return clips
