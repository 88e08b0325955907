"""The stems stage: source separation with Demucs (drums, bass, other, vocals …).

Hybrid Transformer Demucs (Rouard, Massa & Défossez, "Hybrid Transformers for Music Source
Separation", ICASSP 2023, arXiv 2211.08553; the ``demucs`` package, MIT) splits a mix into one
waveform per source. This module keeps Demucs' own code path: models load through
:func:`demucs.pretrained.get_model` (by name — ``htdemucs``, ``htdemucs_ft``, ``htdemucs_6s`` —
from the hub cache, or from a local folder of ``.th``/``.yaml`` files, Demucs' "repo"), and run
through :func:`demucs.apply.apply_model`, which splits long inputs into the model's segments with
overlap (``split=True``) so memory stays bounded by one segment, and averages ``shifts`` random time
shifts. Around it we do what :class:`demucs.api.Separator` does (normalise the mix by its mean and
standard deviation, undo it after) plus our audio policy: resampling with soxr, the output exactly
as long as the input at the input's rate, non-finite output refused and overs normalised with ONE
gain for all stems (so they still sum to the mix; :mod:`dreamsampler.engine.level`).

``tiny`` builds a random-weight :class:`demucs.htdemucs.HTDemucs` (the real class, a few thousand
weights) in code, for tests; :func:`full_size_htdemucs` builds the full-size architecture with
random weights, for benchmarks.

The stage is one object per engine (:class:`StemsStage`): models load once, lazily on first use
(or at start with ``preload``), on the engine's device, and run in the engine's job queue.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamsampler.engine.audio_io import resample
from dreamsampler.engine.level import check_finite, normalize_overs
from dreamsampler.engine.request import RequestError

#: the four sources of htdemucs / htdemucs_ft (htdemucs_6s adds guitar and piano)
SOURCES = ("drums", "bass", "other", "vocals")
#: Demucs' own default model
DEFAULT_MODEL = "htdemucs"
#: names that build a random-weight model in code
TINY_NAMES = ("tiny",)

ProgressFn = Callable[[float], None]
"""Receives the share of the separation done, in [0, 1]."""


class StemsError(RuntimeError):
    """The stems model cannot be loaded or ``demucs`` is not installed; the message says why."""


class StemsCancelled(Exception):
    """The separation was cancelled between two segments."""


@dataclass(frozen=True)
class SeparationRequest:
    """``/separate``: split one audio file into its sources.

    Attributes:
        input_path: the audio file (any format :func:`~dreamsampler.engine.audio_io.read_audio`
            reads), already checked against the input folders and ``limits.max_input_mb``.
        model: the Demucs model (name, local folder or ``tiny``); ``None``: the engine's.
        seed: seeds Demucs' random time shifts, so equal requests give equal stems.
    """

    input_path: Path
    model: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.seed < 0 or self.seed >= 2**63:
            raise RequestError(f"seed must be in [0, 2^63), got {self.seed}")
        if self.model is not None and not str(self.model).strip():
            raise RequestError("model must not be empty")

    def to_record(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        return {"input_path": str(self.input_path), "stems_model": self.model, "seed": self.seed}


@dataclass(frozen=True)
class StemsInfo:
    """What a loaded separation model is: its id, class, version, sources and rate (Hz)."""

    model_id: str
    kind: str
    version: str
    sources: tuple[str, ...]
    sample_rate: int
    audio_channels: int
    device: str

    def to_record(self) -> dict[str, Any]:
        return {"model": self.model_id, "class": self.kind, "demucs_version": self.version,
                "sources": list(self.sources), "model_sample_rate": self.sample_rate}


def _demucs() -> Any:
    try:
        import demucs
        import demucs.apply
        import demucs.htdemucs
        import demucs.pretrained
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise StemsError("stems need the demucs package: pip install 'dreamsampler[stems]' "
                         f"({exc})") from None
    return demucs


def tiny_htdemucs(seed: int = 0, sources: tuple[str, ...] = SOURCES, segment: float = 0.5
                  ) -> Any:
    """A random-weight :class:`demucs.htdemucs.HTDemucs` of a few thousand weights (tests).

    The real class at the real rate (44.1 kHz, stereo) with 4 channels, depth 3, one
    cross-transformer layer, a 512-point STFT and ``segment`` seconds per segment. Seeded: two
    builds are identical.
    """
    from demucs.htdemucs import HTDemucs

    _demucs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HTDemucs(list(sources), channels=4, depth=3, t_layers=1, t_heads=1, nfft=512,
                         segment=segment, dconv_comp=2, norm_starts=99)
    return model.eval()


def full_size_htdemucs(seed: int = 0, sources: tuple[str, ...] = SOURCES) -> Any:
    """The htdemucs architecture (42.0 M parameters: 48 channels, depth 4, 5 cross-transformer
    layers over 512 bottom channels, 7.8 s segments) with random weights (benchmarks)."""
    from demucs.htdemucs import HTDemucs

    _demucs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HTDemucs(list(sources), dconv_mode=3, bottom_channels=512,
                         segment=Fraction(39, 5))
    return model.eval()


def _local_name(folder: Path) -> str:
    """The model a local Demucs repo folder holds: its only ``.yaml`` bag, else its only ``.th``
    signature (``sig-checksum.th`` → ``sig``)."""
    bags = sorted(p.stem for p in folder.glob("*.yaml"))
    if len(bags) == 1:
        return bags[0]
    sigs = sorted(p.stem.rsplit("-", 1)[0] if "-" in p.stem else p.stem
                  for p in folder.glob("*.th"))
    if not bags and len(sigs) == 1:
        return sigs[0]
    raise StemsError(f"stems model folder {folder}: expected one .yaml bag or one .th model, "
                     f"found {len(bags)} and {len(sigs)}")


def _looks_like_path(model_id: str) -> bool:
    """An absolute or ``./``/``~`` path (``user/name`` is a hub repo for Demucs)."""
    return Path(model_id).is_absolute() or model_id.startswith((".", "~"))


def _offline() -> bool:
    """Whether the Hugging Face hub is switched off (``HF_HUB_OFFLINE``)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover
        return False
    return bool(constants.HF_HUB_OFFLINE)


def load_separator(model_id: str, device: str | torch.device = "cpu") -> tuple[Any, StemsInfo]:
    """Load a Demucs model: ``tiny`` (random weights, built in code), a pretrained name
    (``htdemucs``, ``htdemucs_ft``, ``htdemucs_6s`` … through :func:`demucs.pretrained.get_model`:
    the hub cache, then Demucs' remote repo), ``NAME@FOLDER`` or a local folder (a Demucs repo of
    ``.th`` files and ``.yaml`` bags: ``get_model(name, repo=FOLDER)``).

    Returns:
        ``(model, info)``: the model (``HTDemucs`` or ``BagOfModels``) in eval mode on ``device``.

    Raises:
        StemsError: demucs missing, or the model cannot be loaded (offline, unknown name, bad
            folder); the message names the model.
    """
    demucs = _demucs()
    from demucs.apply import BagOfModels

    torch_device = torch.device(device)
    if model_id in TINY_NAMES:
        model = tiny_htdemucs()
    else:
        name, _, folder = model_id.partition("@")
        path = Path(folder or model_id).expanduser()
        try:
            if folder or path.is_dir() or _looks_like_path(model_id):
                if not path.is_dir():
                    raise StemsError(f"stems model folder {path}: not a folder")
                model = demucs.pretrained.get_model(name if folder else _local_name(path),
                                                    repo=path)
            elif _offline():
                # get_model would fall back to Demucs' legacy download URL: the hub cache only
                from demucs.hf import get_hf_model

                model = get_hf_model(model_id).eval()
            else:
                model = demucs.pretrained.get_model(model_id)
        except StemsError:
            raise
        except SystemExit as exc:  # demucs.utils.fatal exits on a bad repo
            raise StemsError(f"stems model {model_id!r}: {exc}") from None
        except Exception as exc:  # network, unknown name, checksum…
            raise StemsError(f"stems model {model_id!r} cannot be loaded: "
                             f"{type(exc).__name__}: {exc}") from None
    model.to(torch_device).eval()
    inner = model.models[0] if isinstance(model, BagOfModels) else model
    info = StemsInfo(
        model_id=model_id,
        kind=("BagOfModels[" + type(inner).__name__ + f"×{len(model.models)}]"
              if isinstance(model, BagOfModels) else type(model).__name__),
        version=str(getattr(demucs, "__version__", "")),
        sources=tuple(model.sources),
        sample_rate=int(model.samplerate),
        audio_channels=int(model.audio_channels),
        device=str(torch_device),
    )
    return model, info


def segment_count(model: Any, samples: int, shifts: int, overlap: float) -> int:
    """How many segments :func:`demucs.apply.apply_model` runs for ``samples`` at the model's
    rate (models of a bag × shifts × segments; with shifts the input grows by up to 0.5 s)."""
    from demucs.apply import BagOfModels

    models = list(model.models) if isinstance(model, BagOfModels) else [model]
    total = 0
    for sub in models:
        length = samples + (int(0.5 * sub.samplerate) if shifts else 0)
        segment = float(sub.segment)
        stride = max(1, int((1 - overlap) * int(sub.samplerate * segment)))
        total += max(1, shifts) * math.ceil(length / stride)
    return max(1, total)


_SHIFT_LOCK = threading.Lock()
"""apply_model draws its time shifts from the ``random`` module: one separation seeds it at a
time (the previous state is restored after)."""


def separate(model: Any, audio: np.ndarray, sample_rate: int, *, shifts: int = 1,
             overlap: float = 0.25, seed: int = 0, device: str | torch.device | None = None,
             on_progress: ProgressFn | None = None,
             should_cancel: Callable[[], bool] | None = None) -> dict[str, np.ndarray]:
    """Split ``audio`` into the model's sources.

    As :meth:`demucs.api.Separator.separate_tensor`: the mix (channels matched to the model's:
    mono repeated, extra channels dropped; resampled with soxr to the model's rate) is
    normalised by the mean and standard deviation of its channel mean, separated by
    :func:`demucs.apply.apply_model` (``split=True``: the model's segments with ``overlap``;
    ``shifts`` random shifts of up to 0.5 s, seeded by ``seed``), and the normalisation undone.
    Each source is resampled back to ``sample_rate`` and cut or padded to the input's length.

    Args:
        model: a Demucs model (:func:`load_separator`).
        audio: float ``(channels, samples)`` or ``(samples,)`` at ``sample_rate`` Hz, finite.
        shifts: random time shifts averaged (0: none).
        overlap: share of a segment overlapping the next, in [0, 1).
        on_progress: called with the share done (0..1) after each segment.
        should_cancel: polled before each segment; True stops with :class:`StemsCancelled`.

    Returns:
        source name → float32 ``(model channels, samples)`` at ``sample_rate``, same length as
        ``audio``, finite, one shared gain applied when a peak passed 0 dBFS.

    Raises:
        NonFiniteAudioError: the input or the model's output holds NaN or inf.
        StemsCancelled: ``should_cancel`` said so.
        ValueError: ``overlap`` outside [0, 1) or ``shifts`` < 0.
    """
    from demucs.apply import apply_model

    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if shifts < 0:
        raise ValueError(f"shifts must be >= 0, got {shifts}")
    mix = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    check_finite(mix, "the input")
    length = mix.shape[-1]
    channels = int(model.audio_channels)
    if mix.shape[0] != channels:
        mix = np.repeat(mix[:1], channels, axis=0) if mix.shape[0] == 1 else mix[:channels]
    rate = int(model.samplerate)
    wav = torch.from_numpy(np.ascontiguousarray(resample(mix, sample_rate, rate)))
    ref = wav.mean(0)
    mean, std = ref.mean(), ref.std() + 1e-8
    total = segment_count(model, wav.shape[-1], shifts, overlap)
    done = 0

    def callback(state: dict[str, Any]) -> None:
        nonlocal done
        if state.get("state") == "start":
            if should_cancel is not None and should_cancel():
                raise StemsCancelled("cancelled")
        elif state.get("state") == "end":
            done += 1
            if on_progress is not None:
                on_progress(min(done / total, 0.999))

    param = next(iter(model.parameters()))
    with _SHIFT_LOCK:
        saved = random.getstate()
        random.seed(seed)
        try:
            out = apply_model(model, ((wav - mean) / std)[None], shifts=shifts, split=True,
                              overlap=overlap, device=device or param.device,
                              callback=callback)
        finally:
            random.setstate(saved)
    out = (out * std + mean)[0].detach().cpu().numpy()
    stems: dict[str, np.ndarray] = {}
    for name, source in zip(model.sources, out, strict=True):
        back = resample(np.ascontiguousarray(source, dtype=np.float32), rate, sample_rate)
        if back.shape[-1] < length:
            back = np.pad(back, ((0, 0), (0, length - back.shape[-1])))
        stems[name] = np.ascontiguousarray(back[:, :length], dtype=np.float32)
    stacked = np.stack(list(stems.values()))
    check_finite(stacked, "the stems model's output")
    stacked, _ = normalize_overs(stacked)
    if on_progress is not None:
        on_progress(1.0)
    return dict(zip(stems, stacked, strict=True))


class StemsStage:
    """The engine's separation stage: Demucs models loaded once per name, on one device.

    Args:
        model_id: the default model (``htdemucs``, a folder, ``tiny`` …; see
            :func:`load_separator`); a request may name another, which is then loaded and kept.
        device: ``auto``, ``cpu``, ``cuda`` … (the engine's device).
        shifts, overlap: as for :func:`separate`.

    Thread-safe: loading happens under a lock (jobs run one at a time anyway).
    """

    def __init__(self, model_id: str = DEFAULT_MODEL, device: str = "auto", shifts: int = 1,
                 overlap: float = 0.25) -> None:
        from dreamsampler.engine.families import resolve_device

        self.model_id = model_id
        self.device = resolve_device(device)
        self.shifts = shifts
        self.overlap = overlap
        self._models: dict[str, tuple[Any, StemsInfo]] = {}
        self._lock = threading.Lock()

    def load(self, model_id: str | None = None) -> tuple[Any, StemsInfo]:
        """The model ``model_id`` (default: the stage's), loading it on first use.

        Raises:
            StemsError: see :func:`load_separator`.
        """
        key = model_id or self.model_id
        with self._lock:
            if key not in self._models:
                self._models[key] = load_separator(key, self.device)
            return self._models[key]

    def settings(self) -> dict[str, Any]:
        """The separation settings, for records: ``shifts`` and ``overlap``."""
        return {"shifts": self.shifts, "overlap": self.overlap, "split": True}

    def loaded(self) -> list[StemsInfo]:
        """The models loaded so far."""
        return [info for _, info in self._models.values()]

    def separate(self, audio: np.ndarray, sample_rate: int, *, model_id: str | None = None,
                 seed: int = 0, on_progress: ProgressFn | None = None,
                 should_cancel: Callable[[], bool] | None = None
                 ) -> tuple[dict[str, np.ndarray], StemsInfo]:
        """Separate ``audio`` with model ``model_id`` (see :func:`separate`); returns the stems
        and the model's :class:`StemsInfo`."""
        model, info = self.load(model_id)
        stems = separate(model, audio, sample_rate, shifts=self.shifts, overlap=self.overlap,
                         seed=seed, device=self.device, on_progress=on_progress,
                         should_cancel=should_cancel)
        return stems, info

    def units(self, seconds: float, model_id: str | None = None) -> int:
        """Progress units (segments) a separation of ``seconds`` takes, for a job's total."""
        model, _ = self.load(model_id)
        return segment_count(model, max(1, round(seconds * int(model.samplerate))),
                             self.shifts, self.overlap)
