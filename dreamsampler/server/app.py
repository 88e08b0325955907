"""Assembles the server from a config: engine → service (with its sinks) → edges (OSC, MIDI, jam);
runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

from dreamsampler.config import Config
from dreamsampler.engine.jobs import Engine, LocalEngine
from dreamsampler.server.jam import Jam
from dreamsampler.server.midi_edge import MidiEdge
from dreamsampler.server.osc import OscServer
from dreamsampler.server.oscquery import OscQueryServer, session_values
from dreamsampler.server.ports import osc_port_problem
from dreamsampler.server.service import Service

log = logging.getLogger(__name__)


@dataclass
class App:
    """A running server's parts."""

    config: Config
    service: Service
    osc: OscServer
    midi: MidiEdge
    jam: Jam
    oscquery: OscQueryServer | None = None

    async def close(self, reason: str = "server shutting down") -> None:
        """Shut down without dropping anyone: OSC answers new commands ``/fail … reason``; the
        jam, MIDI and OSCQuery edges stop; the service closes (running and queued jobs and
        pending operations fail with ``reason``, answered to whoever asked); the replies are
        flushed; only then the OSC socket closes."""
        self.osc.shutdown(reason)
        await self.jam.stop()
        await self.midi.close()
        if self.oscquery is not None:
            await self.oscquery.close()
        try:
            await self.service.close(reason)
        finally:
            await self.osc.drain()
            self.osc.close()


def make_engine(config: Config) -> Engine:
    """The configured engine: :class:`LocalEngine`, :class:`SupervisedEngine` (``engine.kind:
    process``) or :class:`RayEngine` (``engine.kind: ray``)."""
    common = {"model_id": config.model.id, "device": config.model.device,
              "dtype": config.model.dtype, "queue_size": config.limits.queue_size,
              "concepts_dir": config.concepts_dir, "stems_model": config.stems.model,
              "stems_preload": config.stems.preload}
    e = config.engine
    if e.kind == "process":
        from dreamsampler.engine.supervised import SupervisedEngine

        return SupervisedEngine(**common, watchdog_s=e.watchdog_s)
    if e.kind == "ray":
        from dreamsampler.engine.ray_engine import RayEngine, RaySettings

        return RayEngine(**common, settings=RaySettings(
            address=e.ray_address, min_replicas=e.replicas, max_replicas=e.max_replicas,
            gpus_per_replica=e.gpus_per_replica, cpus_per_replica=e.cpus_per_replica,
            concepts_per_replica=e.concepts_per_replica,
        ))
    return LocalEngine(**common, max_batch=e.max_batch, compile=e.compile)


async def start_app(config: Config, engine: Engine | None = None) -> App:
    """Load the model, bind the OSC port (and the OSCQuery HTTP port) and start serving.

    A MIDI port or audio device that is missing is logged and retried; the server serves on.

    Raises:
        ModelLoadError: the model cannot be loaded.
        SinkError: the output folder is not writable.
        OSError: the OSC or OSCQuery port cannot be bound.
        ConfigError: invalid MIDI map, unknown MIDI backend, or Link without ``aalink``.
    """
    service = Service(config, engine or make_engine(config))
    midi = MidiEdge(service, config.live)
    jam = Jam(service)
    await service.start()
    o = config.osc
    osc = OscServer(service, o.host, o.port, midi=midi, jam=jam, allow=o.allow,
                    max_clients=o.max_clients, client_ttl=o.client_ttl)
    try:
        await midi.start()
        try:
            await osc.start()
        except OSError as exc:
            raise OSError(osc_port_problem(config.osc.host, config.osc.port, exc)) from None
    except BaseException:
        await midi.close()
        await service.close()
        raise
    app = App(config, service, osc, midi, jam)
    if config.oscquery.enabled:
        q = config.oscquery
        app.oscquery = OscQueryServer(
            lambda: {**session_values(service.session), "/tempo": service.clock.bpm,
                     "/jam": "on" if jam.running else "off"},
            osc.host, osc.port, host=config.osc.host,
            port=q.port, name=q.name, zeroconf=q.zeroconf,
            maxima={"steps": config.limits.max_steps, "duration": config.limits.max_duration},
        )
        try:
            await app.oscquery.start()
        except OSError as exc:
            app.oscquery = None
            await app.close()
            raise OSError(f"OSCQuery port {q.port}: {exc.strerror or exc}") from exc
        osc.oscquery_port = app.oscquery.port
    return app


async def serve(config: Config) -> None:
    """Run until SIGINT, SIGTERM or SIGHUP (the terminal closed, SSH dropped): each is a
    graceful stop (:meth:`App.close`: every pending request is answered). SIGHUP is left alone
    when it was ignored at start (``nohup dreamsampler serve``, a service manager that ignores
    it): the server then runs on after its terminal goes away. See docs/hardening.md."""
    from dreamsampler.engine.audio_io import warm_up_decoders

    # the fallback decoder's imports, while the model loads (not on the loop at the first input)
    warm = asyncio.ensure_future(asyncio.to_thread(warm_up_decoders))
    warm.add_done_callback(_warm_done)  # never awaited: it must not hold up the signal handlers
    app = await start_app(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in stop_signals():
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig)
    status = app.service.status().engine
    log.info(
        "dreamsampler ready: model %s (%s, %d Hz, %s), OSC %s:%d, OSCQuery %s, clips → %s",
        status.model_id, status.family, status.sample_rate, status.device,
        app.osc.host, app.osc.port,
        f"http://{app.osc.host}:{app.oscquery.port}/" if app.oscquery else "off",
        config.output.dir,
    )
    log.info(
        "live: %.6g BPM (%s), %d presets, MIDI in %s, audio out %s",
        app.service.clock.bpm, app.service.clock.source, len(app.service.presets),
        ", ".join(config.live.midi_in) or "none", config.live.audio_out or "none",
    )
    try:
        await stop.wait()
    finally:
        log.info("shutting down (%s)", ", ".join(received) or "stopped")
        await app.close()


def _warm_done(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # an optional decoder that cannot load: the inputs that need it report it later
        log.warning("audio decoders not preloaded: %s", task.exception())


def stop_signals() -> list[signal.Signals]:
    """The signals that stop the server gracefully: SIGINT, SIGTERM and, unless it is ignored
    already (``nohup``), SIGHUP."""
    signals = [signal.SIGINT, signal.SIGTERM]
    hup = getattr(signal, "SIGHUP", None)
    if hup is not None and signal.getsignal(hup) is not signal.SIG_IGN:
        signals.append(hup)
    return signals
