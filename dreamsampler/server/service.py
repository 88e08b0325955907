"""The service: turns requests from any edge (OSC, MIDI, presets, CLI) into engine jobs and
delivers their results to the sinks and back to whoever asked.

It knows the engine only through the async job interface (:class:`~dreamsampler.engine.jobs.Engine`)
and the edges only through listener callbacks, so it is transport-agnostic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamsampler.config import Config
from dreamsampler.engine.audio_io import AudioFileError, probe_audio
from dreamsampler.engine.bars import fit_to_bars
from dreamsampler.engine.concepts import ConceptError, ConceptInfo, scan_concepts
from dreamsampler.engine.jobs import (
    Engine,
    JobEvent,
    JobFailed,
    JobFinished,
    JobProgress,
    JobStarted,
)
from dreamsampler.engine.request import GenerationRequest, GenerationResult, RequestError
from dreamsampler.server.clock import TempoClock, TempoError, bars_to_seconds
from dreamsampler.server.folder_sink import FolderSink, LoopSpec, SinkError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivered:
    """A job's clip is in place at ``path`` (the terminal update of a successful job).

    ``duration`` is in seconds; ``audio`` ``(channels, samples)`` at ``sample_rate`` Hz is the
    delivered clip at the model's rate (bar-fitted when ``loop`` is set), kept for ``/play``.
    """

    job_id: int
    path: Path
    duration: float
    audio: np.ndarray | None = field(default=None, repr=False, compare=False)
    sample_rate: int = 0
    loop: LoopSpec | None = None


Update = JobStarted | JobProgress | JobFailed | Delivered
Listener = Callable[[Update], None]


@dataclass
class Session:
    """The session defaults used by ``/trigger`` and by requests that omit a value."""

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    strength: float = 0.5
    num_inference_steps: int = 25
    guidance_scale: float = 2.5
    duration: float = 10.0
    scheduler: str = "ddim"
    input_path: str = ""
    concept: str = ""
    bars: int = 0
    lora_scale: float = 1.0

    @classmethod
    def from_config(cls, config: Config) -> Session:
        d = config.defaults
        return cls(
            prompt=d.prompt,
            negative_prompt=d.negative_prompt,
            seed=d.seed,
            strength=d.strength,
            num_inference_steps=d.num_inference_steps,
            guidance_scale=d.guidance_scale,
            duration=d.duration,
            scheduler=d.scheduler,
        )


@dataclass(frozen=True)
class Submitted:
    job_id: int
    position: int


@dataclass
class _Active:
    request: GenerationRequest
    task: asyncio.Task[None] | None = None
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    loop: LoopSpec | None = None


class Service:
    """Owns the session, validates requests, runs jobs and delivers their clips.

    Args:
        config: validated configuration (limits, input folders, defaults).
        engine: any :class:`Engine` (local or remote).
        sink: the DAW-folder sink.
    """

    def __init__(self, config: Config, engine: Engine, sink: FolderSink) -> None:
        self.config = config
        self.engine = engine
        self.sink = sink
        self.session = Session.from_config(config)
        self.clock = TempoClock(config.live.tempo, config.live.beats_per_bar)
        """Session tempo and beat grid (BPM; :func:`time.monotonic` seconds)."""
        self.recent: OrderedDict[int, Delivered] = OrderedDict()
        """The last ``live.keep_results`` delivered clips by job id (for ``/play``)."""
        self.observers: list[Listener] = []
        self.jobs_done = 0
        self.jobs_failed = 0
        self.started_at = time.monotonic()
        self._active: dict[int, _Active] = {}
        self._ids = itertools.count(1)

    async def start(self) -> None:
        """Check the output folder, start the engine (loads the model), autoload concepts.

        Raises:
            ConceptError: a concept named in ``concepts_autoload`` cannot be loaded.
        """
        self.sink.check_writable()
        await self.engine.start()
        await self.autoload_concepts()

    async def autoload_concepts(self) -> list[ConceptInfo]:
        """Load ``config.concepts_autoload``: named ones must load; ``"*"`` skips bad ones.

        Raises:
            ConceptError: a named concept cannot be loaded.
        """
        wanted = self.config.concepts_autoload
        loaded: list[ConceptInfo] = []
        if wanted == "*":
            metas, errors = scan_concepts(self.config.concepts_dir)
            for err in errors:
                log.warning("concept not autoloaded: %s", err)
            for meta in metas:
                try:
                    loaded.append(await self.engine.load_concept(meta.name))
                except ConceptError as exc:
                    log.warning("concept not autoloaded: %s", exc)
        else:
            for name in wanted:
                loaded.append(await self.engine.load_concept(name))
        if loaded:
            log.info("concepts loaded: %s", ", ".join(c.name for c in loaded))
        return loaded

    async def load_concept(self, name: str) -> ConceptInfo:
        """Load a concept in the engine (between jobs). Raises ``ConceptError``."""
        return await self.engine.load_concept(name)

    async def unload_concept(self, name: str) -> None:
        """Unload a concept (between jobs). Raises ``ConceptNotLoadedError``."""
        await self.engine.unload_concept(name)

    def check_concept(self, name: str) -> None:
        """Refuse a concept that is not loaded.

        Raises:
            RequestError: names the concept and the loaded ones.
        """
        loaded = [c.name for c in self.engine.list_concepts()]
        if name not in loaded:
            shown = ", ".join(loaded) or "none"
            raise RequestError(f"concept {name!r} is not loaded (loaded: {shown}); "
                               f"send /concept/load {name}")

    async def close(self) -> None:
        await self.engine.close()
        tasks = [a.task for a in self._active.values() if a.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- building requests ---------------------------------------------------------------------

    def resolve_input(self, raw: str | Path) -> Path:
        """Find an input clip inside the configured input folders and check it is audio.

        A relative path is looked up in each input folder in turn.

        Raises:
            RequestError: outside the input folders, missing, not audio, or larger than
                ``limits.max_input_mb``.
        """
        path = Path(raw).expanduser()
        roots = [Path(d).resolve() for d in self.config.input_dirs]
        candidates = [path] if path.is_absolute() else [root / path for root in roots]
        for candidate in candidates:
            resolved = candidate.resolve()
            if not any(resolved.is_relative_to(root) for root in roots):
                continue
            try:
                probe_audio(resolved, max_bytes=int(self.config.limits.max_input_mb * 2**20))
            except AudioFileError as exc:
                raise RequestError(f"input {exc}") from None
            return resolved
        folders = ", ".join(str(r) for r in roots) or "(none configured)"
        if path.is_absolute():
            raise RequestError(f"input {path}: outside the input folders ({folders})")
        raise RequestError(f"input {path}: no such file in the input folders ({folders})")

    def build_request(self, values: dict[str, Any], transfer: bool) -> GenerationRequest:
        """A request from parsed values, falling back to the session defaults.

        Raises:
            RequestError: a value out of range or beyond the configured limits.
        """
        s = self.session
        limits = self.config.limits
        loop = self.loop_spec(values)
        if loop is not None:
            seconds = bars_to_seconds(loop.bars, loop.bpm, loop.beats_per_bar)
            # generate whole milliseconds at least as long as the bars; fit_to_bars cuts
            duration = math.ceil(seconds * 1000.0) / 1000.0
            if duration > limits.max_duration:
                raise RequestError(
                    f"{loop.bars} bars at {loop.bpm:g} BPM last {seconds:.2f} s: more than the "
                    f"limit of {limits.max_duration:g} s"
                )
        else:
            duration = float(values.get("duration", s.duration))
        if duration > limits.max_duration:
            raise RequestError(
                f"duration {duration:g} s exceeds the limit of {limits.max_duration:g} s"
            )
        steps = int(values.get("num_inference_steps", s.num_inference_steps))
        if steps > limits.max_steps:
            raise RequestError(f"steps {steps} exceeds the limit of {limits.max_steps}")
        prompt = values.get("prompt", s.prompt)
        if not prompt or not str(prompt).strip():
            raise RequestError("missing prompt")
        input_path = self.resolve_input(values["input_path"]) if transfer else None
        concept = str(values.get("concept", s.concept) or "") or None
        if concept is not None:
            self.check_concept(concept)
        return GenerationRequest(
            prompt=str(prompt),
            negative_prompt=str(values.get("negative_prompt", s.negative_prompt)),
            seed=int(values.get("seed", s.seed)),
            num_inference_steps=steps,
            guidance_scale=float(values.get("guidance_scale", s.guidance_scale)),
            duration=duration,
            scheduler=str(values.get("scheduler", s.scheduler)),
            input_path=input_path,
            strength=float(values.get("strength", s.strength)) if transfer else 1.0,
            concept=concept,
            lora_scale=float(values.get("lora_scale", s.lora_scale)),
        )

    def loop_spec(self, values: dict[str, Any]) -> LoopSpec | None:
        """The bar length requested by ``values`` at the session tempo, or None for seconds.

        An explicit ``bars`` wins; an explicit ``duration`` without ``bars`` means seconds;
        otherwise the session's ``bars`` (0 = seconds). The tempo is rounded to 0.01 BPM.

        Raises:
            RequestError: negative bars.
        """
        if "bars" in values:
            bars = int(values["bars"])
        elif "duration" in values:
            bars = 0
        else:
            bars = self.session.bars
        if bars < 0:
            raise RequestError(f"bars must be >= 0, got {bars}")
        if bars == 0:
            return None
        return LoopSpec(round(self.clock.bpm, 2), bars, self.clock.beats_per_bar)

    def set_param(self, name: str, value: Any) -> None:
        """Set one session default by its request field name.

        Raises:
            RequestError: unknown parameter or invalid value (the session is left unchanged).
        """
        if name not in {f.name for f in dataclasses.fields(Session)}:
            raise RequestError(f"unknown parameter {name!r}")
        if name == "input_path" and value:
            value = str(self.resolve_input(value))
        if name == "concept" and value:
            self.check_concept(str(value))
        if name == "bars" and (isinstance(value, bool) or int(value) != value or value < 0):
            raise RequestError(f"bars must be a whole number >= 0, got {value!r}")
        candidate = dataclasses.replace(self.session, **{name: value})
        if candidate.prompt:
            self.build_request(dataclasses.asdict(candidate), transfer=False)
        self.session = candidate

    def trigger_values(self) -> tuple[dict[str, Any], bool]:
        """The session as request values, and whether it is a transfer (an input is set)."""
        values = dataclasses.asdict(self.session)
        return values, bool(self.session.input_path)

    # -- jobs ----------------------------------------------------------------------------------

    def _new_id(self, requested: int | None) -> int:
        if requested is not None:
            if requested in self._active:
                raise RequestError(f"job id {requested} is in use")
            return requested
        job_id = next(self._ids)
        while job_id in self._active:
            job_id = next(self._ids)
        return job_id

    def submit(
        self,
        values: dict[str, Any],
        *,
        transfer: bool = False,
        listener: Listener | None = None,
    ) -> Submitted:
        """Validate and queue a generation.

        Args:
            values: parsed request values (request field names; also ``job_id``, ``name``).
            transfer: style transfer of ``values["input_path"]``.
            listener: receives this job's updates; the last is :class:`Delivered` or
                :class:`JobFailed`.

        Raises:
            RequestError: invalid values.
            SinkError: the output folder is not writable.
            QueueFull: the engine's queue is full.
        """
        request = self.build_request(values, transfer)
        self.sink.check_writable()
        job_id = self._new_id(values.get("job_id"))
        loop = self.loop_spec(values)
        job, position = self.engine.submit(request, job_id)
        active = _Active(request, name=values.get("name"), extra=values.get("extra", {}),
                         loop=loop)
        self._active[job_id] = active
        active.task = asyncio.create_task(self._pump(job, active, listener))
        return Submitted(job_id, position)

    def cancel(self, job_id: int) -> bool:
        return job_id in self._active and self.engine.cancel(job_id)

    async def sync(self) -> None:
        """Wait until every job accepted so far has ended."""
        tasks = [a.task for a in self._active.values() if a.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _publish(self, listener: Listener | None, update: Update) -> None:
        for target in [listener, *self.observers]:
            if target is None:
                continue
            try:
                target(update)
            except Exception:
                log.exception("listener failed on %r", update)

    @staticmethod
    def _fit(result: GenerationResult, loop: LoopSpec | None) -> GenerationResult:
        """Cut the clip to exactly ``loop.bars`` bars (downbeat at sample 0) and record the
        tempo (BPM) and bars; unchanged without a loop."""
        if loop is None:
            return result
        audio = fit_to_bars(result.audio, result.sample_rate, loop.bars, loop.bpm,
                            beats_per_bar=loop.beats_per_bar)
        record = {**result.record, "bpm": loop.bpm, "bars": loop.bars,
                  "beats_per_bar": loop.beats_per_bar}
        return dataclasses.replace(result, audio=audio, record=record)

    async def _pump(self, job: Any, active: _Active, listener: Listener | None) -> None:
        try:
            async for event in job.events():
                await self._handle(event, active, listener)
        finally:
            self._active.pop(job.id, None)

    async def _handle(self, event: JobEvent, active: _Active, listener: Listener | None) -> None:
        if isinstance(event, JobFinished):
            extra = {"job_id": event.job_id, **active.extra}
            try:
                result = await asyncio.to_thread(self._fit, event.result, active.loop)
                path = await asyncio.to_thread(self.sink.write, result, active.name, extra,
                                               active.loop)
            except (SinkError, ValueError, TempoError) as exc:
                self.jobs_failed += 1
                self._publish(listener, JobFailed(event.job_id, str(exc)))
                return
            self.jobs_done += 1
            delivered = Delivered(event.job_id, path, result.duration, result.audio,
                                  result.sample_rate, active.loop)
            self.recent[event.job_id] = delivered
            while len(self.recent) > self.config.live.keep_results:
                self.recent.popitem(last=False)
            self._publish(listener, delivered)
        elif isinstance(event, JobFailed):
            self.jobs_failed += 1
            self._publish(listener, event)
        else:
            self._publish(listener, event)
