"""The service: takes typed jobs (:class:`~dreamsampler.server.delivery.Delivery`) from every edge
(OSC, MIDI, presets, jam, CLI), runs them on the engine, hands each finished clip to
:mod:`~dreamsampler.server.fanout` (bars, every named sink at once, each sink's failure policy) and
answers the job's reply target — one delivery path.

It knows the engine only through the async job interface
(:class:`~dreamsampler.engine.jobs.Engine`), the sinks only through the
:class:`~dreamsampler.server.sinks.Sink` and :class:`~dreamsampler.server.sinks.Player`
interfaces (the standard ones come from :mod:`~dreamsampler.server.standard_sinks`), and the edges
not at all: they call it. Its other
concerns are parts of their own, built here and reached by the edges only through the few
methods below (``set_param``, ``set_tempo``, ``play``, ``save_preset``…), never by reaching
through an attribute: the session defaults (:class:`~dreamsampler.server.session.SessionParams`),
the tempo (:class:`~dreamsampler.server.transport.Transport`), the presets
(:class:`~dreamsampler.server.preset_book.PresetBook`) and device control
(:class:`~dreamsampler.server.playback.Playback`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamsampler.config import Config
from dreamsampler.engine.concepts import ConceptError, ConceptInfo
from dreamsampler.engine.jobs import Engine, EngineStatus, Job, JobFailed, JobFinished
from dreamsampler.engine.request import RequestError
from dreamsampler.server import fanout
from dreamsampler.server.clock import TempoClock
from dreamsampler.server.delivery import (
    DEVICE,
    FOLDER,
    Delivered,
    Delivery,
    GenerationParams,
    Listener,
    Submitted,
    Update,
)
from dreamsampler.server.playback import Playback
from dreamsampler.server.preset_book import PresetBook
from dreamsampler.server.session import SessionParams
from dreamsampler.server.sinks import Player, Sink, SinkError
from dreamsampler.server.standard_sinks import standard_sinks
from dreamsampler.server.transport import Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceStatus:
    """The service's state for ``/status``: the engine's, the job counts, the sinks'."""

    engine: EngineStatus
    jobs_done: int
    jobs_failed: int
    uptime: float
    output_dir: str
    output_writable: bool
    tempo: float
    tempo_source: str
    underruns: int


@dataclass
class _Active:
    job: Delivery
    task: asyncio.Task[None] | None = None


class JobError(RuntimeError):
    """A job awaited with :meth:`Service.run` failed; ``update`` is its :class:`JobFailed`."""

    def __init__(self, update: JobFailed) -> None:
        super().__init__(f"job {update.job_id}: {update.message}")
        self.update = update


class Service:
    """Validates and runs jobs, delivers their clips to the sinks; owns the parts.

    Args:
        config: validated configuration (limits, input folders, defaults, live settings).
        engine: any :class:`Engine` (local or remote).
        sinks: the sinks by name; default: :func:`standard_sinks` (the output folder and the
            configured audio device).
        presets: the preset book; default: the presets folder of ``config.live``.
    """

    def __init__(self, config: Config, engine: Engine, sinks: dict[str, Sink] | None = None,
                 presets: PresetBook | None = None) -> None:
        self.config = config
        self.engine = engine
        self.transport = Transport(config.live)
        self.params = SessionParams(config, lambda: self.clock, self._loaded)
        self.presets = presets if presets is not None else PresetBook(Path(config.live.presets_dir))
        self.playback = Playback(lambda: self.device)
        self.sinks: dict[str, Sink] = dict(
            standard_sinks(config, self.clock) if sinks is None else sinks)
        self.observers: list[Listener] = []
        self.jobs_done = 0
        self.jobs_failed = 0
        self.started_at = time.monotonic()
        self._active: dict[int, _Active] = {}
        self._ids = itertools.count(1)
        self._closing: str | None = None

    @property
    def clock(self) -> TempoClock:
        """Session tempo and beat grid (the transport's)."""
        return self.transport.clock

    @clock.setter
    def clock(self, clock: TempoClock) -> None:
        self.transport.clock = clock

    @property
    def session(self) -> Any:
        """The session defaults (see :class:`~dreamsampler.server.session.SessionParams`)."""
        return self.params.session

    @property
    def device(self) -> Player | None:
        """The sink that sounds (``device``), or None."""
        sink = self.sinks.get(DEVICE)
        return sink if sink is not None and hasattr(sink, "replay") else None  # type: ignore[return-value]

    async def start(self) -> None:
        """Start the required sinks (the output folder: checked, a crash's leftovers removed),
        start the engine (loads the model), autoload concepts, then start the optional sinks
        (the audio device, when one is configured: a failure there is logged).

        Raises:
            SinkError: a required sink cannot work (the output folder is not writable).
            ConfigError: Link asked for but ``aalink`` is not installed.
            ConceptError: a concept named in ``concepts_autoload`` cannot be loaded.
        """
        for sink in self.sinks.values():
            if sink.required:
                await sink.start()
        self.transport.start()
        await self.engine.start()
        await self.autoload_concepts()
        for sink in self.sinks.values():
            if not sink.required:
                try:
                    await sink.start()
                except SinkError as exc:
                    log.error("%s; clips still go to the other sinks", exc)

    async def close(self, reason: str = "server shutting down", timeout: float = 30.0) -> None:
        """Close the engine: queued jobs, pending operations and the running job fail with
        ``reason`` (each job's reply target hears it), wait (at most ``timeout`` s) for the
        deliveries under way, then close the sinks."""
        self._closing = reason
        await self.engine.close(reason)
        tasks = [a.task for a in self._active.values() if a.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:  # its finally answers the job with ``reason``
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=5)
        for sink in self.sinks.values():
            await sink.close()
        self.transport.close()

    # -- concepts ------------------------------------------------------------------------------

    async def autoload_concepts(self) -> list[ConceptInfo]:
        """Load ``config.concepts_autoload``: named ones must load; ``"*"`` skips bad ones.

        Raises:
            ConceptError: a named concept cannot be loaded.
        """
        wanted = self.config.concepts_autoload
        loaded: list[ConceptInfo] = []
        if wanted == "*":
            for info in await self.engine.available_concepts():
                try:
                    loaded.append(await self.engine.load_concept(info.name))
                except ConceptError as exc:
                    log.warning("concept not autoloaded: %s", exc)
        else:
            for name in wanted:
                loaded.append(await self.engine.load_concept(name))
        if loaded:
            log.info("concepts loaded: %s", ", ".join(c.name for c in loaded))
        return loaded

    async def load_concept(self, name: str) -> ConceptInfo:
        """Load a concept, in arrival order with jobs (idempotent). Raises ``ConceptError``."""
        return await self.engine.load_concept(name)

    async def unload_concept(self, name: str) -> None:
        """Unload a concept, in arrival order with jobs. Raises ``ConceptNotLoadedError``."""
        await self.engine.unload_concept(name)

    def loaded_concepts(self) -> list[ConceptInfo]:
        """The loaded concepts, in load order."""
        return self.engine.list_concepts()

    def _loaded(self) -> list[str]:
        return [c.name for c in self.engine.list_concepts()]

    async def available_concepts(self) -> list[ConceptInfo]:
        """The concepts on disk, with their loaded flag (see ``Engine.available_concepts``)."""
        return await self.engine.available_concepts()

    # -- the edges' narrow API: state, session, tempo, presets, device --------------------------

    def status(self) -> ServiceStatus:
        """The state reported by ``/status``."""
        sinks: dict[str, Any] = {}
        for sink in self.sinks.values():
            sinks.update(sink.status())
        return ServiceStatus(
            engine=self.engine.status(), jobs_done=self.jobs_done, jobs_failed=self.jobs_failed,
            uptime=round(time.monotonic() - self.started_at, 3),
            output_dir=str(sinks.get("output_dir", "")),
            output_writable=bool(sinks.get("output_writable", False)),
            tempo=round(self.clock.bpm, 3), tempo_source=self.clock.source,
            underruns=int(sinks.get("underruns", 0)),
        )

    def set_param(self, name: str, value: Any) -> None:
        """Set one session default by request field name. Raises ``RequestError``."""
        self.params.set(name, value)

    def set_tempo(self, bpm: float) -> float:
        """Set the session tempo (BPM); returns it. Raises ``RequestError``."""
        return self.transport.set_tempo(bpm)

    def now(self) -> float:
        """Seconds on the session clock's time base (the base of ``Played.clock_time``)."""
        return self.transport.now()

    def follow_midi_clock(self, msg: Any) -> bool:
        """Feed one MIDI message to the tempo clock; True when it was a clock message."""
        return self.transport.follow_midi_clock(msg)

    def preset_names(self) -> list[str]:
        """The loaded presets' names, bank by bank."""
        return self.presets.names()

    def save_preset(self, name: str) -> Path:
        """Save the session as preset ``name``. Raises ``PresetRequestError``."""
        return self.presets.save_session(name, self.session)

    def select_bank(self, name: str | None, index: int) -> None:
        """Choose the preset bank (MIDI program change)."""
        self.presets.select_bank(name, index)

    def bank_presets(self, names: tuple[str, ...] = ()) -> list[str]:
        """``names`` (each checked to be loaded), else the chosen bank's presets.
        Raises ``PresetRequestError``."""
        for name in names:
            self.presets.get(name)
        return list(names) or self.presets.bank_presets()

    def set_volume(self, gain: float) -> None:
        """Linear gain of clips sent to the audio device (>= 0)."""
        self.playback.set_volume(gain)

    def play(self, job_id: int, quantum: float | None = None) -> float:
        """Play kept clip ``job_id`` on the device; the delay until it starts, seconds.
        Raises ``SinkError``."""
        return self.playback.play(job_id, quantum)

    def require_device(self) -> None:
        """Open the audio device if needed (jam mode). Raises ``SinkError``."""
        self.playback.require()

    def stop_jam(self, fade_s: float = 0.05) -> None:
        """Fade out the looping jam clip on the device."""
        self.playback.stop_jam(fade_s)

    async def audio_devices(self) -> list[str]:
        """The audio output devices' names (``/audio/devices``)."""
        return await self.playback.output_devices()

    async def stop(self) -> None:
        """Stop what sounds on every sink (``/stop``)."""
        for sink in self.sinks.values():
            await sink.stop()

    # -- building jobs -------------------------------------------------------------------------

    def job(self, params: GenerationParams, *, transfer: bool = False, job_id: int | None = None,
            name: str | None = None, sinks: tuple[str, ...] = (FOLDER,),
            quantum: float | None = None, jam: bool = False,
            extra: dict[str, Any] | None = None, reply: Listener | None = None) -> Delivery:
        """Build a typed job: ``params`` over the session defaults, validated, bars resolved at
        the session tempo (once, here).

        Raises:
            RequestError: a value out of range, beyond the limits, a missing input, an unloaded
                concept, an unknown sink.
        """
        for sink in sinks:
            if sink not in self.sinks:
                raise RequestError(f"unknown sink {sink!r} (known: {', '.join(self.sinks)})")
        request, loop = self.params.build(params, transfer)
        return Delivery(request, job_id=job_id, name=name, loop=loop, sinks=sinks,
                        quantum=quantum, jam=jam, extra=dict(extra or {}), reply=reply)

    def session_job(self, *, seed_offset: int = 0, sinks: tuple[str, ...] = (FOLDER,),
                    jam: bool = False, reply: Listener | None = None) -> Delivery:
        """A job from the session parameters (``/trigger``, jam without presets): a locked
        seed advanced by ``seed_offset``, else a fresh one; a set input makes it a transfer.
        Raises ``RequestError`` (see :meth:`job`)."""
        params, transfer = self.params.trigger_params(seed_offset)
        return self.job(params, transfer=transfer, sinks=sinks, jam=jam, reply=reply)

    def preset_job(self, name: str, overrides: GenerationParams | None = None, *,
                   jam: bool = False, reply: Listener | None = None) -> Delivery:
        """A job from preset ``name`` (its seed policy, file name and sinks); ``overrides``
        (MIDI velocity, say) win. The preset's seed policy advances once the job is built.

        Raises:
            PresetRequestError: unknown preset. RequestError: see :meth:`job`.
        """
        spec = self.presets.job(name, overrides)
        sinks = (FOLDER, DEVICE) if jam else spec.sinks
        job = self.job(spec.params, transfer=spec.transfer, name=spec.name, sinks=sinks,
                       jam=jam, extra=spec.extra, reply=reply)
        self.presets.accepted(spec)
        return job

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

    def submit(self, job: Delivery) -> Submitted:
        """Queue a typed job; its updates go to ``job.reply`` and the observers.

        Raises:
            RequestError: the job id is in use.
            SinkError: a named sink refuses up front (the output folder is not writable).
            QueueFull: the engine's queue is full.
        """
        for name in job.sinks:
            self.sinks[name].check(job)
        job_id = self._new_id(job.job_id)
        engine_job, position = self.engine.submit(job.request, job_id)
        active = _Active(job)
        self._active[job_id] = active
        active.task = asyncio.create_task(self._pump(engine_job, active))
        return Submitted(job_id, position)

    async def run(self, job: Delivery) -> Delivered:
        """Submit ``job`` and wait for its delivery (jam mode); cancelling cancels the job.

        Raises:
            JobError: the job failed or was cancelled. And as :meth:`submit`.
        """
        done: asyncio.Future[Delivered] = asyncio.get_running_loop().create_future()
        inner = job.reply

        def on_update(update: Update) -> None:
            if inner is not None:
                inner(update)
            if done.done():
                return
            if isinstance(update, Delivered):
                done.set_result(update)
            elif isinstance(update, JobFailed):
                done.set_exception(JobError(update))

        submitted = self.submit(dataclasses.replace(job, reply=on_update))
        try:
            return await done
        except asyncio.CancelledError:
            self.cancel(submitted.job_id)
            raise

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued or running job; False when there is no such job."""
        return job_id in self._active and self.engine.cancel(job_id)

    async def sync(self) -> None:
        """Wait until every job and concept operation accepted so far has ended and every clip
        of those jobs is delivered.

        Raises:
            EngineClosed: the engine closed first.
        """
        tasks = [a.task for a in self._active.values() if a.task is not None]
        await self.engine.barrier()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- delivering ----------------------------------------------------------------------------

    def _publish(self, job: Delivery, update: Update) -> None:
        for target in [job.reply, *self.observers]:
            if target is None:
                continue
            try:
                target(update)
            except Exception:
                log.exception("listener failed on %r", update)

    async def _pump(self, engine_job: Job, active: _Active) -> None:
        """Forward one job's events to its reply target and the observers; the job always ends
        with exactly one :class:`Delivered` or :class:`JobFailed` (an unexpected error in a sink
        or the engine's event stream, or a shutdown, becomes :class:`JobFailed`)."""
        ended = False

        def end(update: Update) -> None:
            nonlocal ended
            ended = True
            if isinstance(update, JobFailed):
                self.jobs_failed += 1
            else:
                self.jobs_done += 1
            self._publish(active.job, update)

        try:
            async for event in engine_job.events():
                if isinstance(event, JobFinished):
                    try:
                        end(await fanout.deliver(self.sinks, event, active.job))
                    except Exception as exc:
                        log.exception("delivering job %d failed", event.job_id)
                        end(JobFailed(event.job_id,
                                      f"internal error: {type(exc).__name__}: {exc}"))
                elif isinstance(event, JobFailed):
                    if self._closing is not None and event.cancelled:
                        event = JobFailed(event.job_id, self._closing, cancelled=True)
                    end(event)
                else:
                    self._publish(active.job, event)
        except Exception as exc:
            log.exception("job %d: the engine's events failed", engine_job.id)
            if not ended:
                end(JobFailed(engine_job.id, f"internal error: {type(exc).__name__}: {exc}"))
        finally:
            if not ended:  # cancelled (shutdown) before its end arrived
                end(JobFailed(engine_job.id, self._closing or "server shutting down",
                              cancelled=True))
            self._active.pop(engine_job.id, None)
