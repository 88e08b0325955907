"""The OSC/UDP edge: datagrams in, contract-parsed commands to the service, scsynth-style replies.

Every command that does work answers ``/done`` or ``/fail`` to the sender (or its registered reply
port); nothing is silent. Malformed datagrams are logged and dropped; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_packet import OscPacket, ParseError

from dreamsampler import __version__
from dreamsampler.engine.concepts import ConceptError
from dreamsampler.engine.jobs import JobFailed, JobProgress, JobStarted, QueueFull
from dreamsampler.engine.request import RequestError
from dreamsampler.server.contract import COMMANDS, PARAMS, ContractError
from dreamsampler.server.folder_sink import SinkError
from dreamsampler.server.notify import Address, Clients
from dreamsampler.server.osc_live import LiveHandlers
from dreamsampler.server.service import Delivered, Listener, Service, Update

if TYPE_CHECKING:
    from dreamsampler.server.live import Live

log = logging.getLogger(__name__)

Handler = Callable[[Address, str, dict[str, Any]], None]


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
        live: the live-performance controller; None makes the live commands ``/fail``.
    """

    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 9000,
                 live: Live | None = None) -> None:
        self.service = service
        self.live = live
        self.host = host
        self.port = port
        self.clients = Clients()
        self.malformed = 0
        #: reported in /status.reply; set by the app when OSCQuery runs
        self.oscquery_port = 0
        self.transport: asyncio.DatagramTransport | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.dispatcher = Dispatcher(strict_timing=False)
        self._handlers: dict[str, Handler] = {
            "/gen": self._gen,
            "/transfer": self._transfer,
            "/trigger": self._trigger,
            "/cancel": self._cancel,
            "/notify": self._notify,
            "/status": self._status,
            "/sync": self._sync,
            "/version": self._version,
            "/concept/load": self._concept_load,
            "/concept/unload": self._concept_unload,
            "/concept/list": self._concept_list,
        }
        for name in PARAMS:
            self._handlers[f"/param/{name}"] = self._param
        self._handlers.update(LiveHandlers(self, live).handlers())
        missing = set(COMMANDS) - set(self._handlers)
        if missing:
            raise RuntimeError(f"contract addresses without a handler: {sorted(missing)}")
        for address in COMMANDS:
            self.dispatcher.map(address, self._dispatch, needs_reply_address=True)
        self.dispatcher.set_default_handler(self._unknown, needs_reply_address=True)
        service.observers.append(self._notify_clients)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self.port)
        )
        self.port = self.transport.get_extra_info("sockname")[1]
        log.info("OSC listening on %s:%d", self.host, self.port)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- sending -------------------------------------------------------------------------------

    def send(self, target: Address, address: str, *args: Any) -> None:
        """Send one message; a vanished client never raises."""
        if self.transport is None or self.transport.is_closing():
            return
        try:
            self.transport.sendto(build_msg(address, list(args)).dgram, target)
        except OSError as exc:
            log.debug("cannot send %s to %s: %s", address, target, exc)

    def reply(self, sender: Address, address: str, *args: Any) -> None:
        self.send(self.clients.reply_address(sender), address, *args)

    def fail(self, sender: Address, command: str, message: str, *extra: Any) -> None:
        log.info("/fail %s %s", command, message)
        self.reply(sender, "/fail", command, message, *extra)

    def broadcast(self, address: str, *args: Any) -> None:
        for target in self.clients.notified():
            self.send(target, address, *args)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a background task of the server (kept referenced until done)."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- receiving -----------------------------------------------------------------------------

    def datagram_received(self, data: bytes, sender: Address) -> None:
        try:
            OscPacket(data)
        except ParseError as exc:
            self.malformed += 1
            log.warning("malformed OSC datagram (%d bytes) from %s:%d: %s",
                        len(data), sender[0], sender[1], exc)
            return
        self.dispatcher.call_handlers_for_packet(data, sender)

    def _unknown(self, sender: Address, address: str, *args: Any) -> None:
        self.fail(sender, address, f"unknown command {address}")

    def _dispatch(self, sender: Address, address: str, *args: Any) -> None:
        command = COMMANDS[address]
        try:
            values = command.parse(args)
            self._handlers[address](sender, address, values)
        except (ContractError, RequestError, SinkError) as exc:
            self.fail(sender, address, str(exc), *self._job_id_of(args, command.address))
        except QueueFull as exc:
            self.fail(sender, address, "queue full", str(exc))
        except Exception as exc:
            log.exception("handler for %s failed", address)
            self.fail(sender, address, f"internal error: {type(exc).__name__}: {exc}")

    @staticmethod
    def _job_id_of(args: tuple[Any, ...], address: str) -> tuple[Any, ...]:
        if address in ("/cancel", "/play") and args and isinstance(args[0], int | float):
            return (int(args[0]),)
        return ()

    # -- generation ----------------------------------------------------------------------------

    def job_listener(self, sender: Address, address: str) -> Listener:
        """A job listener answering ``/done address job_id path`` or ``/fail address ...``."""
        def on_update(update: Update) -> None:
            if isinstance(update, Delivered):
                self.reply(sender, "/done", address, update.job_id, str(update.path))
            elif isinstance(update, JobFailed):
                self.fail(sender, address, update.message, update.job_id)

        return on_update

    def _submit(self, sender: Address, address: str, values: dict[str, Any],
                transfer: bool) -> None:
        submitted = self.service.submit(values, transfer=transfer,
                                        listener=self.job_listener(sender, address))
        self.reply(sender, "/queued", submitted.job_id, submitted.position)

    def _gen(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        self._submit(sender, address, values, transfer=False)

    def _transfer(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        self._submit(sender, address, values, transfer=True)

    def _trigger(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        session_values, transfer = self.service.trigger_values()
        self._submit(sender, address, session_values, transfer=transfer)

    def _param(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        arg = PARAMS[address.removeprefix("/param/")]
        value = values.get(arg.target, "")
        self.service.set_param(arg.target, value)
        self.reply(sender, "/done", address, value)

    def _cancel(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        job_id = values["job_id"]
        if self.service.cancel(job_id):
            self.reply(sender, "/done", "/cancel", job_id)
        else:
            self.fail(sender, "/cancel", f"no queued or running job {job_id}", job_id)

    # -- session and introspection -------------------------------------------------------------

    def _notify(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        if values["on"]:
            target = self.clients.register(sender, values.get("reply_port"))
            self.send(target, "/done", "/notify", 1, target[1])
        else:
            target = self.clients.reply_address(sender)
            self.clients.unregister(sender)
            self.send(target, "/done", "/notify", 0, target[1])

    def _status(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        status = self.service.engine.status()
        self.reply(
            sender,
            "/status.reply",
            status.queued,
            -1 if status.running is None else status.running,
            self.service.jobs_done,
            self.service.jobs_failed,
            len(self.clients),
            status.model_id,
            status.sample_rate,
            round(time.monotonic() - self.service.started_at, 3),
            status.device,
            str(self.service.sink.directory),
            int(self._output_writable()),
            self.oscquery_port,
            *self._live_status(),
            status.restarts,
        )

    def _output_writable(self) -> bool:
        try:
            self.service.sink.check_writable()
        except SinkError:
            return False
        return True

    def _live_status(self) -> tuple[float, str, int, int, int]:
        from dreamsampler.server.live import status_without_live

        if self.live is None:
            return status_without_live(self.service)
        return self.live.status_fields()

    def _sync(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        sync_id = values["id"]

        async def wait() -> None:
            await self.service.sync()
            self.reply(sender, "/synced", sync_id)

        self.spawn(wait())

    # -- concepts ------------------------------------------------------------------------------

    def _concept_op(self, sender: Address, address: str, name: str,
                    op: Callable[[], Coroutine[Any, Any, tuple[Any, ...]]]) -> None:
        """Run a concept operation on the engine (between jobs); answer /done or /fail."""

        async def run() -> None:
            try:
                done = await op()
            except ConceptError as exc:
                self.fail(sender, address, str(exc), name)
            except Exception as exc:
                log.exception("%s %s failed", address, name)
                self.fail(sender, address, f"internal error: {type(exc).__name__}: {exc}", name)
            else:
                self.reply(sender, "/done", address, *done)

        self.spawn(run())

    def _concept_load(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        name = values["name"]

        async def load() -> tuple[Any, ...]:
            info = await self.service.load_concept(name)
            return info.name, info.method

        self._concept_op(sender, address, name, load)

    def _concept_unload(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        name = values["name"]

        async def unload() -> tuple[Any, ...]:
            await self.service.unload_concept(name)
            return (name,)

        self._concept_op(sender, address, name, unload)

    def _concept_list(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        self.reply(sender, "/concept.list", *(c.name for c in self.service.engine.list_concepts()))

    def _version(self, sender: Address, address: str, values: dict[str, Any]) -> None:
        status = self.service.engine.status()
        self.reply(sender, "/version.reply", "dreamsampler", __version__, status.model_id,
                   status.family)

    # -- notifications -------------------------------------------------------------------------

    def _notify_clients(self, update: Update) -> None:
        if isinstance(update, JobStarted):
            self.broadcast("/job.started", update.job_id)
        elif isinstance(update, JobProgress):
            self.broadcast("/progress", update.job_id, float(update.fraction))
        elif isinstance(update, Delivered):
            self.broadcast("/job.ended", update.job_id, "done", str(update.path))
        elif isinstance(update, JobFailed):
            state = "cancelled" if update.cancelled else "failed"
            self.broadcast("/job.ended", update.job_id, state, update.message)
