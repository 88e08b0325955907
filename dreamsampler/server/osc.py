"""The OSC/UDP edge: datagrams in, typed requests (:mod:`~dreamsampler.server.messages`) to the
service, scsynth-style replies.

Every well-formed message gets an answer (``/done``, ``/fail`` or its reply) that fits in one
datagram (echoed addresses and texts are truncated), sent to the sender or its registered reply
port; nothing is silent. Addresses are looked up exactly (an OSC pattern address gets ``/fail``).
Malformed datagrams (bad OSC, invalid UTF-8, bundles nested too deep) are counted, logged at a
limited rate and dropped; the server keeps serving. Work is bounded: at most
``max_per_datagram`` messages of one datagram are answered (the rest get one ``/fail``), at most
``max_pending`` background requests *of each kind* (:data:`WORK_KINDS`: ``/sync``; the concept
operations; ``/concept/available`` and ``/audio/devices``) wait at once (more of that kind get
``/fail … busy``), and datagrams from outside ``allow`` are dropped. Control messages (``/stop``,
``/jam``, ``/cancel``, ``/status``, ``/notify``, ``/param``, ``/tempo``, ``/play``…) never wait
behind work and never count against its limits: most answer at once on the loop; ``/stop`` runs
once for every ``/stop`` that arrives while it runs (all are answered), and ``/jam`` has its own
bound. See docs/hardening.md.

The edge talks to the :class:`~dreamsampler.server.service.Service` only (never to the engine or a
sink); the live commands that steer another edge — ``/jam`` the jam edge, ``/midi/learn`` and
``/midi/ports`` the MIDI edge — go to that edge.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_packet import OscPacket, ParseError

from dreamsampler import __version__
from dreamsampler.engine.concepts import ConceptError
from dreamsampler.engine.jobs import EngineClosed, JobFailed, JobProgress, JobStarted, QueueFull
from dreamsampler.engine.request import RequestError
from dreamsampler.server import messages as m
from dreamsampler.server.contract import (
    COMMANDS,
    INT32_MAX,
    INT32_MIN,
    ContractError,
    StatusReply,
)
from dreamsampler.server.delivery import Delivered, Delivery, Listener, Update
from dreamsampler.server.jam import Jam
from dreamsampler.server.loglimit import LogLimiter
from dreamsampler.server.midi_edge import MidiEdge
from dreamsampler.server.midi_map import Learned
from dreamsampler.server.notify import CLIENT_TTL, MAX_CLIENTS, Address, Clients, client_ip
from dreamsampler.server.service import Service
from dreamsampler.server.session import request_origin
from dreamsampler.server.sinks import SinkError

log = logging.getLogger(__name__)

Handler = Callable[[Address, Any], None]

MAX_DATAGRAM = 65507
"""Largest UDP payload over IPv4, bytes; a reply never exceeds it."""
MAX_ECHO = 256
"""Characters of a received address echoed in ``/fail`` (longer ones are cut, ``…`` appended)."""
MAX_TEXT = 1024
"""Characters of a failure message sent in ``/fail``."""
MAX_PER_DATAGRAM = 64
"""Messages of one datagram (a bundle) that are answered; the rest get one ``/fail``."""
MAX_PENDING = 64
"""Background requests (``/sync``, concept operations…) waiting at once."""
MAX_BUNDLES = 16
"""Bundles (nested or not) in one datagram; a datagram with more is malformed."""
BUNDLE_ADDRESS = "#bundle"
WORK_KINDS = ("sync", "concept", "query", "preset")
"""Kinds of background work, each bounded by ``max_pending`` on its own: ``sync`` (``/sync``),
``concept`` (``/concept/load``, ``/concept/unload``), ``query`` (``/concept/available``,
``/audio/devices``), ``preset`` (``/preset/save``). ``control`` (``/jam``) has its own bound;
``/stop`` is coalesced."""
PROGRESS_UPDATES = 20
"""``/progress`` messages per job to each registrant, at most."""
MAX_TRACKED_JOBS = 4096
"""Jobs whose progress level is remembered (queue bound is far lower)."""
MAX_STOP_WAITERS = 4096
"""Distinct senders answered by one coalesced ``/stop`` run (more get ``/fail … busy``)."""


class LiveDisabledError(RequestError):
    """A live command reached a server without that edge."""


class BusyError(RequestError):
    """Too many background requests are pending; the message says how many."""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def open_to_network(bound: str, allow: tuple[Any, ...] | list[str]) -> bool:
    """True when a server bound to ``bound`` serves everyone off this machine (no
    allow-list and not a loopback address: ``0.0.0.0``, a LAN address): it should have one."""
    try:
        return not allow and not ipaddress.ip_address(bound).is_loopback
    except ValueError:
        return not allow


def _networks(allow: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in allow)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: OscServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.server.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # On loopback a reply to a closed port comes back as ECONNREFUSED here: harmless.
        log.debug("UDP error (a client went away?): %s", exc)


class OscServer:
    """Serves the OSC contract over UDP for one :class:`Service`.

    Args:
        service: the service commands go to.
        host: interface to bind (default loopback).
        port: UDP port; 0 picks a free one (see :attr:`port` after :meth:`start`).
        midi: the MIDI edge (``/midi/learn``, ``/midi/ports``); None: ``/midi/learn`` fails.
        jam: the jam edge (``/jam``); None: ``/jam`` fails.
        allow: networks (CIDR strings) whose datagrams are served; empty: all.
        max_clients, client_ttl: ``/notify`` bounds (see :class:`Clients`).
        progress_updates: ``/progress`` messages per job to each registrant, at most (sent
            when the fraction done crosses the next multiple of ``1 / progress_updates``).
        cookie_loopback: loopback senders must confirm ``/notify`` with the cookie too.
        max_pending: background requests waiting at once.
        max_per_datagram: messages of one datagram that are answered.
    """

    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 9000,
                 midi: MidiEdge | None = None, jam: Jam | None = None,
                 allow: list[str] | None = None, max_clients: int = MAX_CLIENTS,
                 client_ttl: float = CLIENT_TTL, max_pending: int = MAX_PENDING,
                 max_per_datagram: int = MAX_PER_DATAGRAM,
                 progress_updates: int = PROGRESS_UPDATES,
                 cookie_loopback: bool = False) -> None:
        self.service = service
        self.midi = midi
        self.jam = jam
        self.host = host
        self.port = port
        self.clients = Clients(max_clients, client_ttl, cookie_loopback=cookie_loopback)
        self.allow = _networks(allow or [])
        self.max_pending = max_pending
        self.max_per_datagram = max_per_datagram
        self.logs = LogLimiter(log)
        #: datagrams that were not OSC (or nested too deep, or not UTF-8)
        self.malformed = 0
        #: datagrams dropped because the sender is outside ``allow``
        self.refused = 0
        #: set by :meth:`shutdown`: every command is answered ``/fail … server shutting down``
        self.closing: str | None = None
        #: reported in /status.reply; set by the app when OSCQuery runs
        self.oscquery_port = 0
        self.transport: asyncio.DatagramTransport | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._pending: dict[str, set[asyncio.Task[None]]] = {}
        self._stop_task: asyncio.Task[None] | None = None
        self._stop_waiters: dict[Address, None] = {}
        self.progress_updates = progress_updates
        self._progress_sent: dict[int, int] = {}  # job id → last progress level broadcast
        self._handlers: dict[type[m.Request], Handler] = {
            m.Gen: self._gen,
            m.Transfer: self._gen,
            m.Continue: self._gen,
            m.Inpaint: self._gen,
            m.Conform: self._conform,
            m.Trigger: self._trigger,
            m.Param: self._param,
            m.Cancel: self._cancel,
            m.Notify: self._notify,
            m.Status: self._status,
            m.Sync: self._sync,
            m.Version: self._version,
            m.ConceptLoad: self._concept_load,
            m.ConceptUnload: self._concept_unload,
            m.ConceptList: self._concept_list,
            m.ConceptAvailable: self._concept_available,
            m.PresetTrigger: self._preset_trigger,
            m.PresetList: self._preset_list,
            m.PresetSave: self._preset_save,
            m.MidiLearn: self._midi_learn,
            m.MidiPorts: self._midi_ports,
            m.AudioDevices: self._audio_devices,
            m.Tempo: self._tempo,
            m.Play: self._play,
            m.Stop: self._stop,
            m.Jam: self._jam,
            m.Separate: self._separate,  # issue 19
        }
        missing = {t.__name__ for t in m.TYPES.values()} - {t.__name__ for t in self._handlers}
        if missing:
            raise RuntimeError(f"contract commands without a handler: {sorted(missing)}")
        service.observers.append(self._notify_clients)
        if midi is not None:
            midi.on_learned.append(self._broadcast_learned)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self.port)
        )
        self.port = self.transport.get_extra_info("sockname")[1]
        log.info("OSC listening on %s:%d", self.host, self.port)
        if open_to_network(self.transport.get_extra_info("sockname")[0], self.allow):
            log.warning("OSC on %s accepts commands from anyone who can reach port %d: set "
                        "osc.allow to your network (see docs/hardening.md)", self.host, self.port)

    def shutdown(self, reason: str = "server shutting down") -> None:
        """From now on answer every command ``/fail <address> <reason>`` (replies still go)."""
        self.closing = reason

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` s) for background requests to answer and for queued
        replies to leave the socket."""
        deadline = time.monotonic() + timeout
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)
        while (self.transport is not None and not self.transport.is_closing()
               and self.transport.get_write_buffer_size() and time.monotonic() < deadline):
            await asyncio.sleep(0.01)

    def close(self) -> None:
        self.logs.flush()
        for task in self._background:
            task.cancel()
        if self.transport is not None:
            self.transport.close()

    # -- sending -------------------------------------------------------------------------------

    def send(self, target: Address, address: str, *args: Any) -> None:
        """Send one message; a vanished client never raises. A reply that cannot be encoded or
        would not fit in one datagram becomes ``/fail <address> <why>``."""
        if self.transport is None or self.transport.is_closing():
            return
        try:
            dgram = build_msg(address, list(args)).dgram
            if len(dgram) > MAX_DATAGRAM:
                raise ValueError(f"reply of {len(dgram)} bytes exceeds one datagram")
        except Exception as exc:
            self.logs.log("reply", logging.WARNING, "cannot encode %s: %s", _cut(address, 64),
                          _cut(str(exc), 200))
            dgram = build_msg("/fail", [_cut(address, MAX_ECHO),
                                        _cut(f"reply not sent: {exc}", MAX_TEXT)]).dgram
        try:
            self.transport.sendto(dgram, target)
        except OSError as exc:
            log.debug("cannot send %s to %s: %s", _cut(address, 64), target, exc)

    def reply(self, sender: Address, address: str, *args: Any) -> None:
        self.send(self.clients.reply_address(sender), address, *args)

    def fail(self, sender: Address, command: str, message: str, *extra: Any) -> None:
        command, message = _cut(command, MAX_ECHO), _cut(message, MAX_TEXT)
        self.logs.log("fail", logging.INFO, "/fail %s %s", _cut(command, 64), _cut(message, 200))
        self.reply(sender, "/fail", command, message, *extra)

    def broadcast(self, address: str, *args: Any) -> None:
        for target in self.clients.notified():
            self.send(target, address, *args)

    def spawn(self, coro: Coroutine[Any, Any, None], kind: str = "query") -> None:
        """Run ``coro`` as a background task of the server (kept referenced until done).

        Args:
            kind: its bound (one of :data:`WORK_KINDS`, or ``control``): at most
                ``max_pending`` of each kind wait at once, so one kind never locks out another.

        Raises:
            BusyError: ``max_pending`` background requests of ``kind`` are waiting already
                (``coro`` is closed unstarted).
        """
        pending = self._pending.setdefault(kind, set())
        if len(pending) >= self.max_pending:
            coro.close()
            raise BusyError(f"busy: {len(pending)} requests pending, try again")
        task = asyncio.create_task(coro)
        self._background.add(task)
        pending.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(pending.discard)

    def _background_reply(self, sender: Address, address: str,
                          work: Callable[[], Awaitable[tuple[Any, ...]]],
                          kind: str = "query") -> None:
        """Run ``work`` on the loop; ``/done address *result`` or ``/fail address message``."""
        async def run() -> None:
            try:
                result = await work()
            except (RequestError, SinkError) as exc:
                self.fail(sender, address, str(exc))
                return
            except Exception as exc:
                self.logs.log("internal", logging.ERROR, "%s failed", address, exc_info=True)
                self.fail(sender, address, f"internal error: {type(exc).__name__}: {exc}")
                return
            self.reply(sender, "/done", address, *result)

        self.spawn(run(), kind)

    # -- receiving -----------------------------------------------------------------------------

    def datagram_received(self, data: bytes, sender: Address) -> None:
        if self.allow and not _allowed(sender[0], self.allow):
            self.refused += 1
            self.logs.log("refused", logging.WARNING, "datagram from %s dropped: not in "
                          "osc.allow", sender[0])
            return
        try:
            if data.count(b"#bundle\0") > MAX_BUNDLES:  # python-osc recurses per nested bundle
                raise ParseError(f"more than {MAX_BUNDLES} bundles in one datagram")
            packet = OscPacket(data)
            messages = [(t.message.address, tuple(t.message.params)) for t in packet.messages]
        except Exception as exc:  # ParseError; invalid UTF-8; RecursionError (deep bundles)…
            self.malformed += 1
            self.logs.log("malformed", logging.WARNING,
                          "malformed OSC datagram (%d bytes) from %s:%d: %s: %s", len(data),
                          sender[0], sender[1], type(exc).__name__, _cut(str(exc), 120))
            return
        self.clients.touch(sender)
        for address, atoms in messages[: self.max_per_datagram]:  # a bundle runs now, in order
            self.dispatch(sender, address, atoms)
        if len(messages) > self.max_per_datagram:
            self.fail(sender, BUNDLE_ADDRESS, f"{len(messages)} messages in one datagram: only "
                      f"the first {self.max_per_datagram} were run")

    def dispatch(self, sender: Address, address: str, atoms: tuple[Any, ...]) -> None:
        """Decode one message by exact address and run its handler; errors become ``/fail``."""
        if self.closing is not None:
            self.fail(sender, address, self.closing)
            return
        if m.is_pattern(address):
            self.fail(sender, address, "pattern addresses are not supported")
            return
        if address not in COMMANDS:
            self.fail(sender, address, f"unknown command {address}")
            return
        try:
            request = m.decode(address, atoms)
            with request_origin(sender[0]):  # the input policy depends on who asks
                self._handlers[type(request)](sender, request)
        except (ContractError, RequestError, SinkError) as exc:
            self.fail(sender, address, str(exc), *_job_id_of(address, atoms))
        except QueueFull as exc:
            self.fail(sender, address, "queue full", str(exc))
        except Exception as exc:
            self.logs.log("internal", logging.ERROR, "handler for %s failed", address,
                          exc_info=True)
            self.fail(sender, address, f"internal error: {type(exc).__name__}: {exc}")

    # -- generation ----------------------------------------------------------------------------

    def job_reply(self, sender: Address, address: str) -> Listener:
        """A job's reply target: ``/done address job_id path... [stems] [sink error]...`` (one
        path per take, the stems folder when the job asked for stems, then one pair per
        optional sink that could not take the clip) or ``/fail address ...``."""
        def on_update(update: Update) -> None:
            if isinstance(update, Delivered):
                paths = [str(p) for p in update.paths] or [str(update.path or "")]
                stems = (str(update.stems_dir),) if update.stems_dir is not None else ()
                errors = [atom for pair in update.sink_errors.items() for atom in pair]
                self.reply(sender, "/done", address, update.job_id, *paths, *stems, *errors)
            elif isinstance(update, JobFailed):
                self.fail(sender, address, update.message, update.job_id)

        return on_update

    def _submit(self, sender: Address, job: Delivery) -> None:
        submitted = self.service.submit(job)
        self.reply(sender, "/queued", submitted.job_id, submitted.position)

    def _gen(self, sender: Address, msg: m.Generate) -> None:
        job = self.service.job(msg.params(), transfer=isinstance(msg, m.Transfer),
                               job_id=msg.job_id, name=msg.name,
                               reply=self.job_reply(sender, msg.address))
        self._submit(sender, job)

    def _conform(self, sender: Address, msg: m.Conform) -> None:
        job = self.service.conform_job(msg.params(), job_id=msg.job_id, name=msg.name,
                                       reply=self.job_reply(sender, msg.address))
        self._submit(sender, job)

    def _separate(self, sender: Address, msg: m.Separate) -> None:
        job = self.service.separate_job(msg.input_path, model=msg.stems_model, job_id=msg.job_id,
                                        name=msg.name,
                                        reply=self.job_reply(sender, msg.address))
        self._submit(sender, job)

    def _trigger(self, sender: Address, msg: m.Trigger) -> None:
        self._submit(sender, self.service.session_job(reply=self.job_reply(sender, msg.address)))

    def _preset_trigger(self, sender: Address, msg: m.PresetTrigger) -> None:
        self._submit(sender, self.service.preset_job(
            msg.name, reply=self.job_reply(sender, msg.address)))

    def _param(self, sender: Address, msg: m.Param) -> None:
        self.service.set_param(msg.field, msg.value)
        self.reply(sender, "/done", f"/param/{msg.name}", msg.value)

    def _cancel(self, sender: Address, msg: m.Cancel) -> None:
        if self.service.cancel(msg.job_id):
            self.reply(sender, "/done", msg.address, msg.job_id)
        else:
            self.fail(sender, msg.address, f"no queued or running job {msg.job_id}", msg.job_id)

    # -- session and introspection -------------------------------------------------------------

    def _notify(self, sender: Address, msg: m.Notify) -> None:
        if msg.on:
            target, confirmed = self.clients.register(sender, msg.reply_port, msg.cookie)
            if not confirmed:  # the stream starts once the cookie comes back (notify.py)
                self.send(target, "/notify.cookie", self.clients.cookie(target))
            self.send(target, "/done", msg.address, 1, target[1])
        else:
            target = self.clients.reply_address(sender)
            self.clients.unregister(sender)
            self.send(target, "/done", msg.address, 0, target[1])

    def _status(self, sender: Address, msg: m.Status) -> None:
        s = self.service.status()
        e = s.engine
        reply = StatusReply(
            queued=e.queued, running=-1 if e.running is None else e.running,
            jobs_done=s.jobs_done, jobs_failed=s.jobs_failed, clients=len(self.clients),
            model=e.model_id, sample_rate=e.sample_rate, uptime=s.uptime, device=e.device,
            output_dir=s.output_dir, output_writable=int(s.output_writable),
            oscquery_port=self.oscquery_port, tempo=s.tempo, tempo_source=s.tempo_source,
            underruns=s.underruns,
            unmapped_notes=self.midi.unmapped_notes if self.midi is not None else 0,
            jam=int(self.jam is not None and self.jam.running), engine_restarts=e.restarts,
            engine_state=e.state,
        )
        self.reply(sender, reply.address, *reply.atoms())

    def _sync(self, sender: Address, msg: m.Sync) -> None:
        async def wait() -> None:
            try:
                await self.service.sync()
            except EngineClosed as exc:
                self.fail(sender, msg.address, str(exc), msg.id)
                return
            self.reply(sender, "/synced", msg.id)

        self.spawn(wait(), "sync")

    def _version(self, sender: Address, msg: m.Version) -> None:
        engine = self.service.status().engine
        self.reply(sender, "/version.reply", "dreamsampler", __version__, engine.model_id,
                   engine.family)

    # -- concepts ------------------------------------------------------------------------------

    def _concept_op(self, sender: Address, address: str, name: str,
                    op: Callable[[], Awaitable[tuple[Any, ...]]]) -> None:
        """Run a concept operation (in arrival order with jobs); answer /done or /fail."""
        async def run() -> None:
            try:
                done = await op()
            except (ConceptError, EngineClosed) as exc:
                self.fail(sender, address, str(exc), name)
            except Exception as exc:
                self.logs.log("internal", logging.ERROR, "%s %s failed", address, name,
                              exc_info=True)
                self.fail(sender, address, f"internal error: {type(exc).__name__}: {exc}", name)
            else:
                self.reply(sender, "/done", address, *done)

        self.spawn(run(), "concept")

    def _concept_load(self, sender: Address, msg: m.ConceptLoad) -> None:
        async def load() -> tuple[Any, ...]:
            info = await self.service.load_concept(msg.name)
            return info.name, info.method, "already loaded" if info.already_loaded else "loaded"

        self._concept_op(sender, msg.address, msg.name, load)

    def _concept_unload(self, sender: Address, msg: m.ConceptUnload) -> None:
        async def unload() -> tuple[Any, ...]:
            await self.service.unload_concept(msg.name)
            return (msg.name,)

        self._concept_op(sender, msg.address, msg.name, unload)

    def _concept_list(self, sender: Address, msg: m.ConceptList) -> None:
        self.reply(sender, "/concept.list", *(c.name for c in self.service.loaded_concepts()))

    def _concept_available(self, sender: Address, msg: m.ConceptAvailable) -> None:
        async def run() -> None:
            atoms: list[Any] = []
            for c in await self.service.available_concepts():
                atoms += [c.name, c.method, c.family, int(c.loaded)]
            self.reply(sender, "/concept.available", *atoms)

        self.spawn(run(), "query")

    # -- presets, tempo, device ----------------------------------------------------------------

    def _preset_list(self, sender: Address, msg: m.PresetList) -> None:
        if msg.page is not None:
            names, pages = self.service.preset_page(msg.page)
            self.reply(sender, "/preset.page", msg.page, pages, *names)
            return
        names, size = [], len(b"/preset.list\0\0\0\0,\0\0\0")
        for name in self.service.preset_names():  # what fits in one datagram; the rest: pages
            size += 4 + len(name.encode()) + 4  # its type tag and padded string, at most
            if size > MAX_DATAGRAM - 64:
                break
            names.append(name)
        self.reply(sender, "/preset.list", *names)

    def _preset_save(self, sender: Address, msg: m.PresetSave) -> None:
        # the session as it is now, checked here (bad names and values: /fail at once); the
        # file is written off the event loop
        saving = self.service.save_preset(msg.name)

        async def work() -> tuple[Any, ...]:
            return (str(await saving),)

        self._background_reply(sender, msg.address, work, "preset")

    def _tempo(self, sender: Address, msg: m.Tempo) -> None:
        bpm = self.service.set_tempo(msg.bpm)
        self.reply(sender, "/done", msg.address, float(bpm))

    def _play(self, sender: Address, msg: m.Play) -> None:
        delay = self.service.play(msg.job_id, msg.quantum)
        self.reply(sender, "/done", msg.address, msg.job_id, round(delay, 6))

    def _stop(self, sender: Address, msg: m.Stop) -> None:
        """The panic button: never busy behind work. Every ``/stop`` that arrives while a stop
        runs is answered after one more run (so sound that started meanwhile stops too)."""
        if sender not in self._stop_waiters and len(self._stop_waiters) >= MAX_STOP_WAITERS:
            raise BusyError(f"busy: {len(self._stop_waiters)} /stop requests pending")
        self._stop_waiters[sender] = None
        if self._stop_task is None:
            self._stop_task = asyncio.create_task(self._run_stops(msg.address))
            self._background.add(self._stop_task)
            self._stop_task.add_done_callback(self._background.discard)

    async def _run_stops(self, address: str) -> None:
        try:
            while self._stop_waiters:
                waiters, self._stop_waiters = list(self._stop_waiters), {}
                error: str | None = None
                try:
                    if self.jam is not None:
                        await self.jam.stop()
                    await self.service.stop()
                except (RequestError, SinkError) as exc:
                    error = str(exc)
                except Exception as exc:
                    self.logs.log("internal", logging.ERROR, "/stop failed", exc_info=True)
                    error = f"internal error: {type(exc).__name__}: {exc}"
                for sender in waiters:
                    if error is None:
                        self.reply(sender, "/done", address)
                    else:
                        self.fail(sender, address, error)
        finally:
            self._stop_task = None

    def _audio_devices(self, sender: Address, msg: m.AudioDevices) -> None:
        async def work() -> None:
            self.reply(sender, "/audio.devices", *await self.service.audio_devices())

        self.spawn(work(), "query")

    # -- the other edges -----------------------------------------------------------------------

    def _jam(self, sender: Address, msg: m.Jam) -> None:
        jam = self.jam
        if jam is None:
            raise LiveDisabledError("jam mode is not enabled on this server")

        async def work() -> tuple[Any, ...]:
            if msg.on:
                await jam.start(msg.presets)
            else:
                await jam.stop()
            return ("on" if msg.on else "off",)

        self._background_reply(sender, msg.address, work, "control")

    def _midi_learn(self, sender: Address, msg: m.MidiLearn) -> None:
        if self.midi is None:
            raise LiveDisabledError("MIDI is not enabled on this server")

        def bound(learned: Learned | None, reason: str) -> None:
            if learned is None:
                self.fail(sender, msg.address, reason)
            else:
                self.reply(sender, "/done", msg.address, learned.param, learned.cc,
                           learned.channel)

        self.midi.learn(msg.param, bound)

    def _broadcast_learned(self, learned: Learned) -> None:
        self.broadcast("/midi.learned", learned.param, learned.cc, learned.channel)

    def _midi_ports(self, sender: Address, msg: m.MidiPorts) -> None:
        ports = self.midi.port_states() if self.midi is not None else []
        self.reply(sender, "/midi.ports", *ports)

    # -- notifications -------------------------------------------------------------------------

    def _notify_clients(self, update: Update) -> None:
        if isinstance(update, JobStarted):
            self._progress_sent[update.job_id] = -1
            self.broadcast("/job.started", update.job_id)
        elif isinstance(update, JobProgress):
            # coalesced: at most progress_updates /progress per job (issue 22: one 48-byte
            # /gen x steps 200 sent 200 datagrams to every registrant, plus the rest)
            last = self._progress_sent.get(update.job_id, -1)
            level = math.floor(float(update.fraction) * self.progress_updates + 1e-9)
            if level > last and len(self._progress_sent) <= MAX_TRACKED_JOBS:
                self._progress_sent[update.job_id] = level
                self.broadcast("/progress", update.job_id, float(update.fraction))
        elif isinstance(update, Delivered):
            self._progress_sent.pop(update.job_id, None)
            self.broadcast("/job.ended", update.job_id, "done", str(update.path or ""))
        elif isinstance(update, JobFailed):
            self._progress_sent.pop(update.job_id, None)
            state = "cancelled" if update.cancelled else "failed"
            self.broadcast("/job.ended", update.job_id, state, update.message)


def _job_id_of(address: str, atoms: tuple[Any, ...]) -> tuple[Any, ...]:
    """The job id a failed ``/cancel`` or ``/play`` names, to echo in its ``/fail`` (only a
    whole int32: ``/cancel nan`` echoes none)."""
    if address in ("/cancel", "/play") and atoms and isinstance(atoms[0], int | float) \
            and not isinstance(atoms[0], bool):
        value = atoms[0]
        if math.isfinite(value) and value == int(value) and \
                INT32_MIN <= int(value) <= INT32_MAX:
            return (int(value),)
    return ()


@functools.lru_cache(maxsize=1024)
def _allowed_cached(host: str, allow: tuple[Any, ...]) -> bool:
    ip = client_ip(host)
    return ip is not None and any(ip in net for net in allow)


def _allowed(host: str, allow: tuple[Any, ...]) -> bool:
    """Whether a datagram from ``host`` is served under the allow-list ``allow``."""
    return _allowed_cached(host, allow)
