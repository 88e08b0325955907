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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamsampler.engine.jobs import JobFailed, JobProgress, JobStarted
from dreamsampler.engine.request import GenerationRequest, GenerationResult

FOLDER = "folder"
DEVICE = "device"


@dataclass(frozen=True)
class LoopSpec:
    """A clip cut to whole bars: ``bpm`` (BPM), ``bars``, ``beats_per_bar``."""

    bpm: float
    bars: int
    beats_per_bar: int = 4


@dataclass(frozen=True)
class Played:
    """The device sink's receipt: job id, mixer clip id, start in stream time and in monotonic
    time (seconds; ``None`` = as soon as possible), and the clip's length in seconds."""

    job_id: int
    clip_id: int
    stream_time: float | None
    clock_time: float | None
    duration: float = 0.0


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
        paths: every take's WAV in the output folder, in take order (one for ``count`` 1).
    """

    job_id: int
    receipts: Mapping[str, Any]
    duration: float
    audio: np.ndarray | None = field(default=None, repr=False, compare=False)
    sample_rate: int = 0
    loop: LoopSpec | None = None
    sink_errors: Mapping[str, str] = field(default_factory=dict)
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
        request: the validated generation request (its ``duration`` covers ``loop``).
        job_id: a client-chosen id, or None for the service's next one.
        name: file-name stem for the folder sink (None: ``<time>_<prompt>_<seed>``).
        loop: cut the clip to exactly these bars (None: keep ``request.duration`` seconds).
        sinks: the sinks that receive the clip, by name (``folder``, ``device``).
        quantum: device start grid in beats (0 = now; None = the sink's default).
        jam: on the device, loop the clip and crossfade from the previous jam clip.
        extra: more fields for the clip's sidecar record (e.g. the preset name).
        reply: who to answer (see :data:`Listener`); None answers nobody but the observers.
    """

    request: GenerationRequest
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


@dataclass(frozen=True)
class GenerationParams:
    """What an edge asks for, by request field name; ``None`` takes the session's value.

    ``bars`` (whole bars at the session tempo, 0 = seconds) wins over ``duration`` (seconds); a
    ``duration`` without ``bars`` means seconds; with neither, the session's ``bars`` decides.
    ``loras`` is a blend of loaded LoRA concepts ``((name, weight), ...)``. ``continuation``
    (continue the input) or ``mask_start``/``mask_end`` (repaint that region of the input) make
    it a region job; their values are in ``unit``: ``seconds`` (default) or ``bars`` at the
    session tempo.
    """

    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    duration: float | None = None
    scheduler: str | None = None
    input_path: str | None = None
    strength: float | None = None
    concept: str | None = None
    lora_scale: float | None = None
    bars: int | None = None
    loras: tuple[tuple[str, float], ...] | None = None
    continuation: float | None = None
    mask_start: float | None = None
    mask_end: float | None = None
    unit: str | None = None
    #: takes (issue 21): one job, ``count`` clips from seeds ``seed … seed + count − 1``
    count: int | None = None
