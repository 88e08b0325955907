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
(:class:`~dreamsampler.server.preset_book.PresetBook`), device control
(:class:`~dreamsampler.server.playback.Playback`) and the job builders
(:class:`~dreamsampler.server.job_builder.JobBuilder`); the queue side of jobs (submit, events,
delivery through :mod:`~dreamsampler.server.fanout`, one end per job) is
:class:`~dreamsampler.server.job_runner.JobRunner`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamsampler.config import Config
from dreamsampler.engine.concepts import ConceptError, ConceptInfo
from dreamsampler.engine.jobs import Engine, EngineStatus
from dreamsampler.server.clock import TempoClock
from dreamsampler.server.delivery import (
    DEVICE,
    Delivered,
    Delivery,
    GenerationParams,
    Submitted,
)
from dreamsampler.server.job_builder import JobBuilder
from dreamsampler.server.job_runner import JobError, JobRunner
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
        self.builder = JobBuilder(self.params, self.presets, lambda: self.sinks,
                                  lambda: self.engine.status().family)
        self.sinks: dict[str, Sink] = dict(
            standard_sinks(config, self.clock) if sinks is None else sinks)
        self.runner = JobRunner(engine, lambda: self.sinks)
        self.observers = self.runner.observers
        self.started_at = time.monotonic()

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
        await self.runner.close(reason, timeout)
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

    # -- building jobs (server/job_builder.py) -------------------------------------------------

    def job(self, params: GenerationParams, **how: Any) -> Delivery:
        """A typed job for ``params`` (see :meth:`JobBuilder.job`). Raises ``RequestError``."""
        return self.builder.job(params, **how)

    def session_job(self, **how: Any) -> Delivery:
        """A job from the session (see :meth:`JobBuilder.session_job`)."""
        return self.builder.session_job(**how)

    def preset_job(self, name: str, overrides: GenerationParams | None = None,
                   **how: Any) -> Delivery:
        """A job from preset ``name`` (see :meth:`JobBuilder.preset_job`)."""
        return self.builder.preset_job(name, overrides, **how)

    def conform_job(self, params: GenerationParams, **how: Any) -> Delivery:
        """A no-model conform job (see :meth:`JobBuilder.conform_job`)."""
        return self.builder.conform_job(params, **how)

    def separate_job(self, input_path: str, **how: Any) -> Delivery:
        """A ``/separate`` job (see :meth:`JobBuilder.separate_job`). Raises ``RequestError``."""
        return self.builder.separate_job(input_path, **how)

    # -- jobs (server/job_runner.py) ----------------------------------------------------------

    @property
    def jobs_done(self) -> int:
        return self.runner.jobs_done

    @property
    def jobs_failed(self) -> int:
        return self.runner.jobs_failed

    def submit(self, job: Delivery) -> Submitted:
        """Queue a typed job (see :meth:`JobRunner.submit`). Raises ``RequestError``,
        ``SinkError``, ``QueueFull``."""
        return self.runner.submit(job)

    async def run(self, job: Delivery) -> Delivered:
        """Submit ``job`` and wait for its delivery (jam mode). Raises :class:`JobError`."""
        return await self.runner.run(job)

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued or running job; False when there is no such job."""
        return self.runner.cancel(job_id)

    async def sync(self) -> None:
        """Wait until everything accepted so far has ended and been delivered."""
        await self.runner.sync()


__all__ = ["JobError", "Service", "ServiceStatus"]
