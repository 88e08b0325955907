"""MIDI input: several ports (by name, substring, or ``virtual:NAME``) forwarded to asyncio.

rtmidi calls back on its own thread; each message is stamped with the arrival time
(``msg.time`` = :func:`time.monotonic` seconds, taken on the rtmidi thread, which is what the
tempo clock needs) and handed to the asyncio loop with ``loop.call_soon_threadsafe``. The handler
therefore always runs on the loop thread.

A port that does not exist (yet) or disappears is logged and retried by a watchdog task every
``retry_interval`` seconds; nothing here raises into the server because a controller was
unplugged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import mido

log = logging.getLogger(__name__)

MidiHandler = Callable[[str, mido.Message], None]
"""Called on the asyncio loop thread with (port spec, message); ``message.time`` is monotonic."""

VIRTUAL_PREFIX = "virtual:"


def get_backend(name: str | None = None) -> Any:
    """The mido backend ``name`` (e.g. ``rtmidi/UNIX_JACK`` or ``mido.backends.rtmidi``).

    ``None`` gives mido's default backend (``MIDO_BACKEND`` environment variable or rtmidi with
    the system's default API).

    Raises:
        ImportError: the backend module cannot be loaded.
    """
    if name is None:
        return mido.backend
    if not name.startswith("mido."):
        name = "mido.backends." + name
    return mido.Backend(name, load=True)


def list_ports(backend: str | None = None) -> dict[str, list[str]]:
    """Input and output port names (``dreamsampler midi ports``): ``{"inputs": [...], ...}``.

    Returns empty lists (and logs) when the MIDI system is not reachable.
    """
    try:
        b = get_backend(backend)
        return {"inputs": list(b.get_input_names()), "outputs": list(b.get_output_names())}
    except Exception as exc:  # rtmidi raises SystemError/RuntimeError without a MIDI system
        log.warning("cannot list MIDI ports: %s", exc)
        return {"inputs": [], "outputs": []}


def resolve_port(spec: str, available: Sequence[str]) -> str | None:
    """The port name matching ``spec``: exact name first, else the first case-insensitive
    substring match, else None."""
    if spec in available:
        return spec
    low = spec.lower()
    return next((name for name in available if low in name.lower()), None)


class MidiInput:
    """Opens MIDI input ports and forwards their messages to ``handler`` on ``loop``.

    Args:
        ports: port specs: exact names, substrings, or ``virtual:NAME`` to create a port
            that other software connects to.
        handler: called as ``handler(spec, msg)`` on the loop thread.
        backend: mido backend name (see :func:`get_backend`); None = system default.
        retry_interval: seconds between watchdog checks for missing/vanished ports.
        client_name: MIDI client name of the virtual ports (rtmidi ``client_name``).
    """

    def __init__(
        self,
        ports: Sequence[str],
        handler: MidiHandler,
        backend: str | None = None,
        retry_interval: float = 2.0,
        client_name: str = "dreamsampler",
    ) -> None:
        self.specs = list(ports)
        self.handler = handler
        self.backend_name = backend
        self.retry_interval = retry_interval
        self.client_name = client_name
        self.received = 0
        self._backend: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open: dict[str, tuple[str, Any]] = {}  # spec -> (resolved name, port)
        self._watchdog: asyncio.Task[None] | None = None
        self._scanner: Any = None

    @property
    def open_ports(self) -> dict[str, str]:
        """spec → name of the port it is connected to, for the ports open now."""
        return {spec: name for spec, (name, _) in self._open.items()}

    @property
    def missing(self) -> list[str]:
        """Specs without an open port (waiting for the watchdog to find them)."""
        return [spec for spec in self.specs if spec not in self._open]

    async def start(self) -> None:
        """Open the ports that exist now and start the watchdog (on the running loop).

        Raises:
            ImportError: the backend cannot be loaded (a configuration error, reported once).
        """
        self._loop = asyncio.get_running_loop()
        self._backend = get_backend(self.backend_name)
        self._check_ports()
        self._watchdog = asyncio.create_task(self._watch(), name="midi-input-watchdog")

    async def stop(self) -> None:
        """Stop the watchdog and close all ports."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        for spec in list(self._open):
            self._close(spec)
        if self._scanner is not None:
            with contextlib.suppress(Exception):
                self._scanner.delete()
            self._scanner = None

    async def __aenter__(self) -> MidiInput:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval)
            try:
                self._check_ports()
            except Exception:  # never let the watchdog die
                log.exception("MIDI watchdog check failed")

    def _input_names(self) -> list[str]:
        # mido's get_input_names() opens (and closes) a MIDI client on every call; on JACK that
        # reorders the graph and stalled MIDI delivery for ~1 s on the dummy backend. The
        # watchdog therefore keeps one rtmidi client open for listing, when the backend is
        # rtmidi.
        if self._scanner is None and self._backend.name == "mido.backends.rtmidi":
            import rtmidi

            api = getattr(rtmidi, f"API_{self._backend.api}", rtmidi.API_UNSPECIFIED)
            self._scanner = rtmidi.MidiIn(api, name=f"{self.client_name}-scan")
        if self._scanner is not None:
            return list(self._scanner.get_ports())
        return list(self._backend.get_input_names())

    def _check_ports(self) -> None:
        try:
            available = self._input_names()
        except Exception as exc:
            log.warning("cannot list MIDI inputs: %s", exc)
            return
        for spec in self.specs:
            if spec.startswith(VIRTUAL_PREFIX):
                if spec not in self._open:
                    self._open_port(spec, spec[len(VIRTUAL_PREFIX):], virtual=True)
                continue
            if spec in self._open:
                name, _ = self._open[spec]
                if name not in available:
                    log.warning("MIDI input %r (%s) disappeared; will retry", spec, name)
                    self._close(spec)
                continue
            name = resolve_port(spec, available)
            if name is None:
                log.info("MIDI input %r not found (available: %s); retrying every %.1f s",
                         spec, available, self.retry_interval)
                continue
            self._open_port(spec, name, virtual=False)

    def _open_port(self, spec: str, name: str, virtual: bool) -> None:
        callback = self._make_callback(spec)
        # mido turns any port opened with a client_name into a virtual port
        extra = {"client_name": self.client_name} if virtual else {}
        try:
            port = self._backend.open_input(name, virtual=virtual, callback=callback, **extra)
        except Exception as exc:
            log.warning("cannot open MIDI input %r (%s): %s", spec, name, exc)
            return
        self._open[spec] = (name, port)
        log.info("MIDI input %r open (%s)", spec, name)

    def _close(self, spec: str) -> None:
        _, port = self._open.pop(spec)
        try:
            port.close()
        except Exception as exc:
            log.warning("closing MIDI input %r failed: %s", spec, exc)

    def _make_callback(self, spec: str) -> Callable[[mido.Message], None]:
        def callback(msg: mido.Message) -> None:  # rtmidi thread
            msg.time = time.monotonic()
            loop = self._loop
            if loop is None or loop.is_closed():
                return
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._dispatch, spec, msg)

        return callback

    def _dispatch(self, spec: str, msg: mido.Message) -> None:  # loop thread
        self.received += 1
        try:
            self.handler(spec, msg)
        except Exception:
            log.exception("MIDI handler failed for %s from %r", msg, spec)
