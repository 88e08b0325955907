"""The typed job every edge builds, and what comes back: one delivery path.

An edge (OSC, MIDI, presets, jam, CLI) turns what it received into a :class:`Delivery` — the
:class:`~dreamsampler.engine.request.GenerationRequest` plus how to deliver its clip (file name,
bar length, which sinks, device quantization, who to answer) — and hands it to
:meth:`Service.submit <dreamsampler.server.service.Service.submit>`. The service runs the engine,
fits the clip to bars (:class:`LoopSpec`, computed once when the job is built), gives it to every
sink the job names, and answers through ``Delivery.reply`` with :class:`JobStarted`,
:class:`JobProgress`, then exactly one :class:`Delivered` or :class:`JobFailed`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamsampler import schema
from dreamsampler.engine.jobs import JobFailed, JobProgress, JobStarted
from dreamsampler.engine.request import GenerationRequest, GenerationResult
from dreamsampler.engine.stems import SeparationRequest

FOLDER = "folder"
DEVICE = "device"


@dataclass(frozen=True)
class LoopSpec:
    """A clip cut to whole bars: ``bpm`` (BPM), ``bars``, ``beats_per_bar``.

    With ``conform`` the clip is conformed (:func:`dreamsampler.engine.conform.conform`) to
    ``bpm``, ``key`` (a key name, or None to keep the pitch) and ``bars`` (0: the whole bars it
    holds) instead of only cut; ``meter`` is the time signature ``(N, D)``.
    """

    bpm: float
    bars: int
    beats_per_bar: int = 4
    key: str | None = None
    conform: bool = False
    meter: tuple[int, int] = (4, 4)


@dataclass(frozen=True)
class Played:
    """The device sink's receipt: job id, mixer clip id, start in stream time and in monotonic
    time (seconds; ``None`` = as soon as possible), and the clip's length in seconds."""

    job_id: int
    clip_id: int
    stream_time: float | None
    clock_time: float | None
    duration: float = 0.0


def stems_folder(clip: Path) -> Path:
    """The stems folder of a clip: ``<clip stem>.stems`` next to it (issue 19)."""
    return clip.with_name(f"{clip.stem}.stems")


@dataclass(frozen=True)
class Delivered:
    """A job's clip went to its sinks (the terminal update of a successful job).

    Attributes:
        job_id: the job.
        receipts: sink name → what it reports (the folder: the WAV's :class:`~pathlib.Path`;
            the device: a ``Played``).
        duration: clip length, seconds.
        audio: ``(channels, samples)`` float32 at ``sample_rate`` Hz, bar-fitted when ``loop``.
        sample_rate: Hz (the model's rate).
        loop: the bar length, or None for seconds.
        sink_errors: sink name → why a sink other than the folder could not take the clip (the
            clip is delivered to the others).
        stems_dir: the clip's stems folder in the output folder (a ``stems`` job), else None.
        paths: every take's WAV in the output folder, in take order (one for ``count`` 1;
            issue 21).
    """

    job_id: int
    receipts: Mapping[str, Any]
    duration: float
    audio: np.ndarray | None = field(default=None, repr=False, compare=False)
    sample_rate: int = 0
    loop: LoopSpec | None = None
    sink_errors: Mapping[str, str] = field(default_factory=dict)
    stems_dir: Path | None = None
    paths: tuple[Path, ...] = ()

    @property
    def path(self) -> Path | None:
        """The clip's WAV in the output folder (None when the job named no folder sink)."""
        path = self.receipts.get(FOLDER)
        return path if isinstance(path, Path) else None


Update = JobStarted | JobProgress | JobFailed | Delivered
Listener = Callable[[Update], None]
"""Receives one job's updates in order; the last is :class:`Delivered` or :class:`JobFailed`."""


@dataclass(frozen=True)
class Delivery:
    """One typed job: what to generate and how to deliver it.

    Attributes:
        request: the validated generation request (its ``duration`` covers ``loop``), or a
            separation (``/separate``: the folder sink writes the stems folder only).
        job_id: a client-chosen id, or None for the service's next one.
        name: file-name stem for the folder sink (None: ``<time>_<prompt>_<seed>``).
        loop: cut the clip to exactly these bars (None: keep ``request.duration`` seconds).
        sinks: the sinks that receive the clip, by name (``folder``, ``device``).
        quantum: device start grid in beats (0 = now; None = the sink's default).
        jam: on the device, loop the clip and crossfade from the previous jam clip.
        extra: more fields for the clip's sidecar record (e.g. the preset name).
        reply: who to answer (see :data:`Listener`); None answers nobody but the observers.
    """

    request: GenerationRequest | SeparationRequest
    job_id: int | None = None
    name: str | None = None
    loop: LoopSpec | None = None
    sinks: tuple[str, ...] = (FOLDER,)
    quantum: float | None = None
    jam: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    reply: Listener | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Clip:
    """A finished job's clip on its way to the sinks: ``result.audio`` is bar-fitted already;
    ``take`` is its 1-based take of a ``count > 1`` job (0: the job's only clip)."""

    job_id: int
    result: GenerationResult
    job: Delivery
    take: int = 0


@dataclass(frozen=True)
class Submitted:
    """A job the service accepted: its id and queue position (0 = next to run)."""

    job_id: int
    position: int


def params_type(params: Sequence[schema.Param] | None = None) -> type:
    """The ``GenerationParams`` dataclass for ``params`` (default: the schema's): a field per
    generation parameter (:func:`~dreamsampler.schema.generation_fields`) plus the region
    fields, each ``None`` by default."""
    names = [(p.name, Any) for p in schema.generation_fields(params)]
    names += [(n, Any) for n, _ in schema.REGION_FIELDS]
    made = dataclasses.make_dataclass(
        "GenerationParams", [(n, t, field(default=None)) for n, t in names], frozen=True)
    made.__module__ = __name__  # pickles (engine processes) find it here
    return made


GenerationParams = params_type()
GenerationParams.__doc__ = """What an edge asks for, by request field name (made from
:mod:`dreamsampler.schema`); ``None`` takes the session's value.

``bars`` (whole bars at the session tempo, 0 = seconds) wins over ``duration`` (seconds); a
``duration`` without ``bars`` means seconds; with neither, the session's ``bars`` decides.
``loras`` is a blend of loaded LoRA concepts ``((name, weight), ...)``. ``continuation``
(continue the input) or ``mask_start``/``mask_end`` (repaint that region of the input) make
it a region job; their values are in ``unit``: ``seconds`` (default) or ``bars`` at the
session tempo. ``seed`` -1 draws a fresh seed.
"""
