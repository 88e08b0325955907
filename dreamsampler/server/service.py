"""The service: takes typed jobs (:class:`~dreamsampler.server.delivery.Delivery`) from every edge
(OSC, MIDI, presets, jam, CLI), runs them on the engine, fits each clip to its bars, gives it to
every sink the job names and answers the job's reply target — one delivery path.

It knows the engine only through the async job interface
(:class:`~dreamsampler.engine.jobs.Engine`), the sinks only through
:class:`~dreamsampler.server.sinks.Sink`, and the edges not at all: they call it. It also owns
the session (defaults for requests, the tempo clock) and the presets.
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

from dreamsampler.config import Config, ConfigError
from dreamsampler.engine.bars import fit_to_bars
from dreamsampler.engine.concepts import ConceptError, ConceptInfo
from dreamsampler.engine.jobs import Engine, EngineStatus, Job, JobFailed, JobFinished
from dreamsampler.engine.request import GenerationRequest, GenerationResult, RequestError
from dreamsampler.server.clock import LinkUnavailableError, TempoClock, TempoError
from dreamsampler.server.delivery import (
    DEVICE,
    FOLDER,
    Clip,
    Delivered,
    Delivery,
    GenerationParams,
    Listener,
    LoopSpec,
    Submitted,
    Update,
)
from dreamsampler.server.device_sink import DeviceError, DeviceSink
from dreamsampler.server.folder_sink import FolderSink
from dreamsampler.server.preset_book import PresetBook
from dreamsampler.server.session import (
    Session,
    build_request,
    check_concept,
    max_input_bytes,
    resolve_input,
)
from dreamsampler.server.sinks import Sink, SinkError

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
    """Owns the session, validates and runs jobs, delivers their clips to the sinks.

    Args:
        config: validated configuration (limits, input folders, defaults, live settings).
        engine: any :class:`Engine` (local or remote).
        sinks: the sinks by name; default: the output folder and the configured audio device.
        presets: the preset book; default: the presets folder of ``config.live``.
    """

    def __init__(self, config: Config, engine: Engine, sinks: dict[str, Sink] | None = None,
                 presets: PresetBook | None = None) -> None:
        self.config = config
        self.engine = engine
        self.session = Session.from_config(config)
        self.clock = TempoClock(config.live.tempo, config.live.beats_per_bar)
        """Session tempo and beat grid (BPM; :func:`time.monotonic` seconds)."""
        self.presets = presets if presets is not None else PresetBook(Path(config.live.presets_dir))
        if sinks is None:
            live = config.live
            sinks = {
                FOLDER: FolderSink(config.output.dir, config.output.subtype,
                                   config.output.sample_rate),
                DEVICE: DeviceSink(live.audio_out, self.clock, live.play_quantum,
                                   live.keep_results),
            }
        self.sinks = sinks
        self.observers: list[Listener] = []
        self.jobs_done = 0
        self.jobs_failed = 0
        self.started_at = time.monotonic()
        self._active: dict[int, _Active] = {}
        self._ids = itertools.count(1)
        self._closing: str | None = None

    @property
    def folder(self) -> FolderSink:
        sink = self.sinks[FOLDER]
        assert isinstance(sink, FolderSink)
        return sink

    @property
    def device(self) -> DeviceSink | None:
        sink = self.sinks.get(DEVICE)
        return sink if isinstance(sink, DeviceSink) else None

    async def start(self) -> None:
        """Check the output folder, start the engine (loads the model), autoload concepts, and
        open the audio device when one is configured (a failure there is logged).

        Raises:
            SinkError: the output folder is not writable.
            ConfigError: Link asked for but ``aalink`` is not installed.
            ConceptError: a concept named in ``concepts_autoload`` cannot be loaded.
        """
        self.folder.check()
        self.folder.clean_orphans()
        if self.config.live.link:
            try:
                self.clock.enable_link()
            except LinkUnavailableError as exc:
                raise ConfigError(f"live.link: {exc}") from None
        await self.engine.start()
        await self.autoload_concepts()
        device = self.device
        if device is not None and device.configured:
            try:
                device.open()
            except SinkError as exc:
                log.error("%s; clips still go to the output folder", exc)

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
        self.clock.disable_link()

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

    async def available_concepts(self) -> list[ConceptInfo]:
        """The concepts on disk, with their loaded flag (see ``Engine.available_concepts``)."""
        return await self.engine.available_concepts()

    def check_concept(self, name: str) -> None:
        """Refuse a concept that is not loaded. Raises ``RequestError``."""
        check_concept(name, [c.name for c in self.engine.list_concepts()])

    # -- state ---------------------------------------------------------------------------------

    def status(self) -> ServiceStatus:
        """The state reported by ``/status``."""
        try:
            self.folder.check()
            writable = True
        except SinkError:
            writable = False
        device = self.device
        return ServiceStatus(
            engine=self.engine.status(), jobs_done=self.jobs_done, jobs_failed=self.jobs_failed,
            uptime=round(time.monotonic() - self.started_at, 3),
            output_dir=str(self.folder.directory), output_writable=writable,
            tempo=round(self.clock.bpm, 3), tempo_source=self.clock.source,
            underruns=device.underruns if device is not None else 0,
        )

    def set_tempo(self, bpm: float) -> float:
        """Set the session tempo (BPM); returns it.

        Raises:
            RequestError: not > 20 and <= 999 BPM.
        """
        try:
            return self.clock.set_tempo(bpm)
        except TempoError as exc:
            raise RequestError(str(exc)) from None

    def now(self) -> float:
        """Seconds on the session clock's time base (the base of ``Played.clock_time``)."""
        return self.clock.time_fn()

    def follow_midi_clock(self, msg: Any) -> bool:
        """Feed one MIDI message to the tempo clock; True when it was a clock message (start,
        stop, clock ticks) and is used up."""
        return bool(self.clock.handle_midi(msg, msg.time or None))

    def set_volume(self, gain: float) -> None:
        """Linear gain of clips sent to the audio device (>= 0)."""
        if self.device is not None:
            self.device.volume = max(0.0, float(gain))

    def resolve_input(self, raw: str | Path) -> Path:
        """Find an input clip inside the configured input folders (see
        :func:`~dreamsampler.server.session.resolve_input`). Raises ``RequestError``."""
        return resolve_input(raw, self.config.input_dirs, max_input_bytes(self.config))

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
            self._build(candidate.params(), transfer=False, session=candidate)
        self.session = candidate

    # -- building jobs -------------------------------------------------------------------------

    def job(
        self,
        params: GenerationParams,
        *,
        transfer: bool = False,
        job_id: int | None = None,
        name: str | None = None,
        sinks: tuple[str, ...] = (FOLDER,),
        quantum: float | None = None,
        jam: bool = False,
        extra: dict[str, Any] | None = None,
        reply: Listener | None = None,
    ) -> Delivery:
        """Build a typed job: ``params`` over the session defaults, validated, bars resolved at
        the session tempo (once, here).

        Raises:
            RequestError: a value out of range, beyond the limits, a missing input, an unloaded
                concept, an unknown sink.
        """
        for sink in sinks:
            if sink not in self.sinks:
                raise RequestError(f"unknown sink {sink!r} (known: {', '.join(self.sinks)})")
        request, loop = self._build(params, transfer, self.session)
        return Delivery(request, job_id=job_id, name=name, loop=loop, sinks=sinks,
                        quantum=quantum, jam=jam, extra=dict(extra or {}), reply=reply)

    def session_job(self, *, seed_offset: int = 0, sinks: tuple[str, ...] = (FOLDER,),
                    jam: bool = False, reply: Listener | None = None) -> Delivery:
        """A job from the session parameters (``/trigger``, jam without presets); the seed is
        advanced by ``seed_offset``; a set input makes it a transfer.

        Raises:
            RequestError: see :meth:`job`.
        """
        params = self.session.params()
        if seed_offset:
            params = dataclasses.replace(params,
                                         seed=(self.session.seed + seed_offset) % 2**31)
        return self.job(params, transfer=bool(self.session.input_path), sinks=sinks, jam=jam,
                        reply=reply)

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

    def _build(self, params: GenerationParams, transfer: bool, session: Session
               ) -> tuple[GenerationRequest, LoopSpec | None]:
        loaded = [c.name for c in self.engine.list_concepts()]
        return build_request(params, transfer, session, self.config, self.clock, loaded)

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
            self.sinks[name].check()
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

    # -- the device ----------------------------------------------------------------------------

    def play(self, job_id: int, quantum: float | None = None) -> float:
        """Play kept clip ``job_id`` on the device (``/play``); returns the delay until it
        starts, seconds.

        Raises:
            DeviceError: unknown job id or no working device.
        """
        device = self.device
        if device is None:
            raise DeviceError("no audio device sink")
        return device.replay(job_id, quantum)

    def require_device(self) -> None:
        """Open the audio device if needed (jam mode needs it).

        Raises:
            DeviceError: no device configured, or it cannot be opened.
        """
        device = self.device
        if device is None:
            raise DeviceError("no audio device sink")
        device.open()

    async def stop(self) -> None:
        """Stop what sounds on every sink (``/stop``)."""
        for sink in self.sinks.values():
            await sink.stop()

    def stop_jam(self, fade_s: float = 0.05) -> None:
        """Fade out the looping jam clip on the device."""
        if self.device is not None:
            self.device.stop_jam(fade_s)

    # -- delivering ----------------------------------------------------------------------------

    def _publish(self, job: Delivery, update: Update) -> None:
        for target in [job.reply, *self.observers]:
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
                        end(await self._deliver(event, active.job))
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

    async def _deliver(self, event: JobFinished, job: Delivery) -> Delivered | JobFailed:
        """Fit the clip, offer it to every sink, deliver it to the named ones (the folder first:
        its failure fails the job; another sink's failure is logged and reported).

        Takes (``count > 1``): every take goes to the folder (``_take1`` … in the name, ``take``
        in the sidecar); the other sinks get the first take. ``Delivered.paths`` lists them all.
        """
        results = event.results
        try:
            fitted = [await asyncio.to_thread(self._fit, r, job.loop) for r in results]
        except (ValueError, TempoError) as exc:
            return JobFailed(event.job_id, str(exc))
        result = fitted[0]
        clip = Clip(event.job_id, result, job, take=1 if len(fitted) > 1 else 0)
        for sink in self.sinks.values():
            try:
                sink.offer(clip)
            except Exception:
                log.exception("the %s sink failed to take clip %d", sink.name, event.job_id)
        receipts: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name in sorted(job.sinks, key=lambda n: n != FOLDER):
            try:
                receipts[name] = await self.sinks[name].deliver(clip)
            except Exception as exc:
                if isinstance(exc, SinkError | ValueError):
                    message = str(exc)
                else:  # a sink's bug: fail the job, keep the traceback in the log
                    log.exception("the %s sink failed on clip %d", name, event.job_id)
                    message = f"{name} sink: internal error: {type(exc).__name__}: {exc}"
                if name == FOLDER or len(job.sinks) == 1:
                    return JobFailed(event.job_id, message)
                log.warning("clip %d is not on the %s: %s", event.job_id, name, message)
                errors[name] = message
        paths = [receipts[FOLDER]] if FOLDER in receipts else []
        if FOLDER in job.sinks:
            for take, more in enumerate(fitted[1:], start=2):
                try:
                    paths.append(await self.sinks[FOLDER].deliver(
                        Clip(event.job_id, more, job, take=take)))
                except SinkError as exc:
                    return JobFailed(event.job_id, str(exc))
        return Delivered(event.job_id, receipts, result.duration, result.audio,
                         result.sample_rate, job.loop, errors, paths=tuple(paths))
