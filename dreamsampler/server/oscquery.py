"""Discovery: OSCQuery over HTTP and WebSocket, generated from the OSC contract, and its mDNS
advertisement.

Implements the OSCQuery proposal (https://github.com/Vidvox/OSCQueryProposal) on one TCP port,
served by the ``websockets`` library (HTTP requests are answered in its ``process_request`` hook;
upgrade requests become WebSocket connections):

- ``GET /`` (or any node path) → the JSON tree: ``FULL_PATH``, ``CONTENTS``, ``TYPE`` (the type tags
  of the positional arguments; ``N`` for a command without arguments, as the proposal types a
  method that has no value), ``RANGE`` (per argument ``MIN``/``MAX``/``VALS``, ``null`` when
  unbounded; ``MAX`` of steps and duration is the server's configured limit), ``UNIT`` (per
  argument, the contract's unit, ``""`` for none), ``DESCRIPTION``, ``ACCESS`` (3 = readable
  state: ``/param/*``, ``/tempo``, ``/jam``; 2 = write-only command with arguments; 0 = command
  without arguments) and ``VALUE`` (readable nodes only: the server's current state);
- ``GET /path?ATTRIBUTE`` → ``{"ATTRIBUTE": ...}``; HTTP 204 (no content) for an attribute the
  proposal defines that this node or server does not serve (``VALUE`` of a write-only command,
  ``TAGS``, ``CLIPMODE``, ...);
- ``GET /?HOST_INFO`` → ``NAME``, ``OSC_IP``, ``OSC_PORT``, ``OSC_TRANSPORT`` (``"UDP"``),
  ``EXTENSIONS`` (``LISTEN``: true);
- a WebSocket on the same port: the client sends ``{"COMMAND": "LISTEN", "DATA": "/param/seed"}``
  (``IGNORE`` to stop) as text; the server sends each change of that node's ``VALUE`` as a binary
  OSC message (address and arguments typed as in the contract). Changes are found by sampling the
  server's state every :data:`WATCH_INTERVAL` seconds while anyone listens, so a change made by any
  edge (OSC, MIDI, presets, jam, Link) is streamed;
- an unknown path → 404, an attribute the proposal does not define → 400, a method other than
  GET/HEAD → 405.

Bounded so that it cannot hurt OSC: at most :data:`MAX_CONNECTIONS` HTTP/WebSocket connections at
once and :data:`MAX_PER_ADDRESS` from one address (more get 503 and are closed), a request must
arrive within :data:`REQUEST_TIMEOUT` seconds, WebSocket
messages are small (:data:`MAX_MESSAGE`). If the configured port is taken, a free one is used
(clients discover it; ``/status`` reports it). zeroconf advertises ``_oscjson._tcp`` (the HTTP
port) and ``_osc._udp`` (the OSC port), both of which clients such as Vezér look for, but not when
OSC is bound to a loopback address (another machine could not reach it: serve with ``--host
0.0.0.0`` to be discoverable). ``HOST_INFO``'s ``OSC_IP`` is the host's address when OSC is bound
to all interfaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from pythonosc.osc_message_builder import OscMessageBuilder
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from dreamsampler.server.contract import COMMANDS, PARAMS, Arg, Message

log = logging.getLogger(__name__)

ACCESS_NONE, ACCESS_READ, ACCESS_WRITE, ACCESS_READ_WRITE = 0, 1, 2, 3
#: the attributes served (when a node has them)
ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "RANGE", "DESCRIPTION", "ACCESS", "VALUE", "UNIT")
#: attributes the proposal defines that are not served: 204
UNSERVED = ("TAGS", "CLIPMODE", "CRITICAL", "OVERLOADS", "EXTENDED_TYPE", "HTML")
EXTENSIONS = {"ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "TYPE": True,
              "UNIT": True, "TAGS": False, "CLIPMODE": False, "CRITICAL": False,
              "OVERLOADS": False, "EXTENDED_TYPE": False, "LISTEN": True,
              "PATH_CHANGED": False, "PATH_RENAMED": False, "PATH_ADDED": False,
              "PATH_REMOVED": False, "HTML": False}
#: the type tag of a method without arguments (the proposal's example types such a method "N")
NO_ARGUMENTS = "N"
MAX_REQUEST = 16384
#: HTTP and WebSocket connections served at once; more are answered 503
MAX_CONNECTIONS = 32
#: connections served at once from one address; more from it get 503 at once, so one host
#: holding slow connections cannot starve the others (MAX_CONNECTIONS is shared by all)
MAX_PER_ADDRESS = 8
#: seconds a client has to send its request line and headers
REQUEST_TIMEOUT = 5.0
#: bytes a WebSocket message from a client may have (LISTEN/IGNORE commands are tiny)
MAX_MESSAGE = 4096
#: seconds between two samples of the server's state while anyone listens
WATCH_INTERVAL = 0.05

Values = Callable[[], dict[str, Any]]

#: the values a string argument accepts (OSCQuery ``VALS``) where the contract declares none
#: (``Arg.choices``, from the schema: ``scheduler``, ``unit``), by argument name or
#: (address, name)
CHOICES: dict[str | tuple[str, str], tuple[str, ...]] = {
    ("/jam", "state"): ("on", "off"),
}


def _choices(address: str, arg: Arg) -> tuple[str, ...] | None:
    return arg.choices or CHOICES.get((address, arg.name), CHOICES.get(arg.name))


def _range(address: str, arg: Arg, maxima: Mapping[str, float]) -> dict[str, Any] | None:
    """One ``RANGE`` entry: ``MIN``/``MAX`` (the tighter of the contract's and ``maxima``),
    ``VALS`` for a string with fixed choices, or ``None`` (JSON ``null``) when unbounded."""
    out: dict[str, Any] = {}
    if arg.minimum is not None:
        out["MIN"] = arg.minimum
    maximum = arg.maximum
    if arg.name in maxima:
        maximum = maxima[arg.name] if maximum is None else min(maximum, maxima[arg.name])
    if maximum is not None:
        out["MAX"] = maximum
    choices = _choices(address, arg)
    if choices:
        out["VALS"] = list(choices)
    return out or None


def _typed(arg: Arg, value: Any) -> Any:
    """``value`` as the JSON type ``arg``'s tag names."""
    if arg.type == "f":
        return float(value)
    if arg.type == "i":
        return int(value)
    return "" if value is None else str(value)


def _values(message: Message, value: Any) -> list[Any]:
    """A readable node's ``VALUE``: one entry per argument (a tuple or list value gives several;
    missing trailing ones are ``""``/0)."""
    given = list(value) if isinstance(value, list | tuple) else [value]
    out = []
    for i, arg in enumerate(message.args):
        item = given[i] if i < len(given) else None
        out.append(_typed(arg, 0 if item is None and arg.type != "s" else item))
    return out


def _method(message: Message, maxima: Mapping[str, float], value: Any = None,
            readable: bool = False) -> dict[str, Any]:
    description = message.description
    if message.options:
        keys = ", ".join(o.name for o in message.options)
        description += f" (signature {message.signature}; option keys: {keys})"
    access = ACCESS_READ_WRITE if readable else ACCESS_WRITE if message.args else ACCESS_NONE
    node: dict[str, Any] = {"FULL_PATH": message.address, "ACCESS": access,
                            "DESCRIPTION": description}
    if message.args:
        node["TYPE"] = "".join(a.type for a in message.args)
        node["RANGE"] = [_range(message.address, a, maxima) for a in message.args]
        node["UNIT"] = [a.unit for a in message.args]
        if readable:
            node["VALUE"] = _values(message, value)
    else:
        node["TYPE"] = NO_ARGUMENTS
    return node


def namespace(commands: dict[str, Message], values: dict[str, Any],
              maxima: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The OSCQuery tree for ``commands``.

    Args:
        commands: address → contract entry.
        values: readable addresses → their current value (a tuple for several arguments).
        maxima: argument name → the server's configured maximum (e.g. ``{"steps": 200,
            "duration": 30.0}``), reported as ``MAX`` where tighter than the contract's.
    """
    maxima = maxima or {}
    root: dict[str, Any] = {"FULL_PATH": "/", "ACCESS": ACCESS_NONE, "CONTENTS": {},
                            "DESCRIPTION": "dreamsampler: text-to-music over OSC"}
    for address, message in commands.items():
        parts = address.strip("/").split("/")
        node = root
        for depth, part in enumerate(parts[:-1]):
            node = node["CONTENTS"].setdefault(part, {
                "FULL_PATH": "/" + "/".join(parts[:depth + 1]), "ACCESS": ACCESS_NONE,
                "CONTENTS": {},
            })
        node["CONTENTS"][parts[-1]] = _method(message, maxima, values.get(address),
                                              address in values)
    return root


def find(tree: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The node at ``path`` (``/`` is the root), or ``None``."""
    node = tree
    for part in [p for p in path.split("/") if p]:
        node = node.get("CONTENTS", {}).get(part)
        if node is None:
            return None
    return node


def session_values(session: Any) -> dict[str, Any]:
    """``/param/<name>`` → the session's current value (read from the service's Session)."""
    return {f"/param/{name}": getattr(session, arg.target) for name, arg in PARAMS.items()}


def osc_update(message: Message, value: Any) -> bytes:
    """The binary OSC message that streams a new ``VALUE`` of ``message``'s node (arguments typed
    as the contract types them)."""
    builder = OscMessageBuilder(message.address)
    for arg, item in zip(message.args, _values(message, value), strict=True):
        builder.add_arg(item, {"i": "i", "f": "f"}.get(arg.type, "s"))
    return builder.build().dgram


class OscQueryServer:
    """Serves OSCQuery (HTTP and WebSocket on one port) for one OSC endpoint and optionally
    advertises it with zeroconf.

    Args:
        values: returns the current readable values (see :func:`session_values`).
        osc_host, osc_port: where the OSC (UDP) server listens.
        host, port: HTTP interface and port; 0 picks a free port (see :attr:`port`).
        name: service name in ``HOST_INFO`` and mDNS.
        zeroconf: advertise ``_oscjson._tcp`` and ``_osc._udp`` (never for a loopback
            ``osc_host``: see :attr:`advertise_skipped`).
        commands: the namespace (default: the contract's :data:`COMMANDS`).
        maxima: argument name → the server's configured maximum (see :func:`namespace`).
    """

    def __init__(self, values: Values, osc_host: str, osc_port: int, host: str = "127.0.0.1",
                 port: int = 9002, name: str = "dreamsampler", zeroconf: bool = True,
                 commands: dict[str, Message] | None = None,
                 maxima: Mapping[str, float] | None = None) -> None:
        self.values = values
        self.osc_host = osc_host
        self.osc_port = osc_port
        self.host = host
        self.port = port
        self.name = name
        self.zeroconf_enabled = zeroconf
        self.commands = COMMANDS if commands is None else commands
        self.maxima = dict(maxima or {})
        self.advertised = False
        #: why mDNS advertising was skipped (a loopback OSC host), or ``None``
        self.advertise_skipped: str | None = None
        #: the configured HTTP port when it was taken and a free one is used instead
        self.fallback_from: int | None = None
        self._open = 0
        self._per_host: dict[str, int] = {}
        #: WebSocket connection → the paths it listens to
        self.listeners: dict[ServerConnection, set[str]] = {}
        #: set whenever a client starts listening (tests wait on it)
        self.listened = asyncio.Event()
        self._osc_ip: str | None = None
        self._server: Server | None = None
        self._watch: asyncio.Task[None] | None = None
        self._zeroconf: Any = None
        self._services: list[Any] = []
        self._register_task: asyncio.Task[None] | None = None

    @property
    def connections(self) -> int:
        """HTTP and WebSocket connections open now."""
        return self._open

    # -- answering ------------------------------------------------------------------------------

    def host_info(self) -> dict[str, Any]:
        """``HOST_INFO``; ``OSC_IP`` is an address a client can send to (never ``0.0.0.0``)."""
        if self._osc_ip is None:  # found once: the lookup opens a socket
            self._osc_ip = _advertised_address(self.osc_host)
        return {"NAME": self.name, "OSC_IP": self._osc_ip,
                "OSC_PORT": self.osc_port, "OSC_TRANSPORT": "UDP",
                "EXTENSIONS": dict(EXTENSIONS)}

    def answer(self, target: str) -> tuple[int, dict[str, Any] | None]:
        """HTTP status and JSON body for a request target such as ``/param/seed?VALUE``."""
        parts = urlsplit(target)
        path, query = unquote(parts.path) or "/", parts.query
        if query == "HOST_INFO":
            return 200, self.host_info()
        node = find(namespace(self.commands, self.values(), self.maxima), path)
        if node is None:
            return 404, {"error": f"no OSC address {path}"}
        if not query:
            return 200, node
        attribute = query.split("&")[0].split("=")[0].upper()
        if attribute in UNSERVED:
            return 204, None
        if attribute not in ATTRIBUTES:
            return 400, {"error": f"unknown attribute {attribute}"}
        if attribute not in node:
            return 204, None
        return 200, {attribute: node[attribute]}

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        """``process_request``: answer HTTP requests; let WebSocket upgrades through."""
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        if request.method not in ("GET", "HEAD"):
            return _response(405, {"error": f"method {request.method} not allowed"})
        status, body = self.answer(request.path)
        return _response(status, body, head_only=request.method == "HEAD")

    async def _websocket(self, connection: ServerConnection) -> None:
        """One WebSocket client: ``LISTEN``/``IGNORE`` commands in, value updates out."""
        paths: set[str] = set()
        self.listeners[connection] = paths
        try:
            async for message in connection:
                try:
                    command = json.loads(message)
                    verb, path = str(command["COMMAND"]).upper(), str(command["DATA"])
                except (ValueError, TypeError, KeyError):
                    log.debug("OSCQuery WebSocket: ignored %r", message[:80])
                    continue
                if verb == "LISTEN" and path in self.commands:
                    self._start_watching()
                    paths.add(path)
                    self.listened.set()
                elif verb == "IGNORE":
                    paths.discard(path)
        except ConnectionClosed:
            pass
        finally:
            del self.listeners[connection]

    def _start_watching(self) -> None:
        if self._watch is None or self._watch.done():
            # the state now is the baseline: a change from here on is streamed
            self._watch = asyncio.create_task(self._watch_values(dict(self.values())),
                                              name="oscquery-listen")

    async def _watch_values(self, last: dict[str, Any]) -> None:
        """Sample the state while anyone listens; send each changed value to its listeners."""
        while any(self.listeners.values()):
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                now = dict(self.values())
            except Exception as exc:  # the state being rebuilt: try again next time
                log.debug("OSCQuery values: %s", exc)
                continue
            for address, value in now.items():
                if last.get(address, _UNSET) == value or address not in self.commands:
                    continue
                update = osc_update(self.commands[address], value)
                for connection, paths in list(self.listeners.items()):
                    if address in paths:
                        with contextlib.suppress(ConnectionClosed):
                            await connection.send(update)
            last = now

    # -- lifecycle ------------------------------------------------------------------------------

    async def _serve(self, port: int) -> Server:
        owner = self

        class Bounded(ServerConnection):
            """Counts connections; one beyond :data:`MAX_CONNECTIONS` is answered 503 and
            closed at once, so that idle connections cannot use up the file descriptors."""

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                peer = transport.get_extra_info("peername")
                self.peer_host = str(peer[0]) if peer else ""
                owner._open += 1
                owner._per_host[self.peer_host] = owner._per_host.get(self.peer_host, 0) + 1
                super().connection_made(transport)
                busy = (owner._open > MAX_CONNECTIONS
                        or owner._per_host[self.peer_host] > MAX_PER_ADDRESS)
                if busy and isinstance(transport, asyncio.Transport):
                    transport.write(_BUSY)
                    transport.close()

            def connection_lost(self, exc: Exception | None) -> None:
                owner._open -= 1
                owner._per_host[self.peer_host] -= 1
                if not owner._per_host[self.peer_host]:
                    del owner._per_host[self.peer_host]
                super().connection_lost(exc)

        return await serve(self._websocket, self.host, port, process_request=self._http,
                           open_timeout=REQUEST_TIMEOUT, max_size=MAX_MESSAGE,
                           server_header=None, logger=_WS_LOG, create_connection=Bounded)

    async def start(self) -> None:
        """Bind the HTTP port and start advertising (in the background).

        Raises:
            OSError: the port cannot be bound.
        """
        try:
            self._server = await self._serve(self.port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or self.port == 0:
                raise
            self._server = await self._serve(0)
            self.fallback_from = self.port
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        if self.fallback_from is not None:
            log.warning("OSCQuery port %d is in use: serving OSCQuery on port %d instead "
                        "(clients find it over mDNS; /status reports it; --oscquery-port N "
                        "picks another)", self.fallback_from, self.port)
        log.info("OSCQuery on http://%s:%d/ (WebSocket LISTEN on the same port)", self.host,
                 self.port)
        self.host_info()  # resolves OSC_IP now, not under load
        if self.zeroconf_enabled and _is_loopback(self.osc_host):
            self.advertise_skipped = (
                f"OSC is bound to {self.osc_host}, which other machines cannot reach")
            log.info("not advertising over mDNS: %s; serve with --host 0.0.0.0 to be "
                     "discoverable on the network (or --no-zeroconf to silence this)",
                     self.advertise_skipped)
        elif self.zeroconf_enabled:
            self._register_task = asyncio.create_task(self._advertise())

    async def _advertise(self) -> None:
        try:
            from zeroconf import ServiceInfo
            from zeroconf.asyncio import AsyncZeroconf

            address = _advertised_address(self.osc_host)
            all_interfaces = self.osc_host in ("", "0.0.0.0", "::")
            self._zeroconf = (AsyncZeroconf() if all_interfaces
                              else AsyncZeroconf(interfaces=[address]))
            server = f"{socket.gethostname().split('.')[0]}.local."
            for kind, port in (("_oscjson._tcp.local.", self.port),
                               ("_osc._udp.local.", self.osc_port)):
                info = ServiceInfo(kind, f"{self.name}.{kind}", port=port,
                                   parsed_addresses=[address], server=server,
                                   properties={"txtvers": "1"})
                await self._zeroconf.async_register_service(info, allow_name_change=True)
                self._services.append(info)
            self.advertised = True
            log.info("advertised %s over mDNS (_oscjson._tcp:%d, _osc._udp:%d)",
                     self.name, self.port, self.osc_port)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # no multicast here: discovery is optional, serving is not
            log.warning("zeroconf advertisement failed (OSCQuery still served on port %d): %s",
                        self.port, exc)

    async def close(self) -> None:
        if self._register_task is not None:
            self._register_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._register_task
        if self._zeroconf is not None:
            with contextlib.suppress(Exception):
                await self._zeroconf.async_unregister_all_services()
            with contextlib.suppress(Exception):
                await self._zeroconf.async_close()
            self._zeroconf = None
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


_UNSET = object()
#: websockets' own log (failed handshakes of clients that sent garbage or hung up) stays quiet
_WS_LOG = logging.getLogger(__name__ + ".websockets")
_WS_LOG.setLevel(logging.CRITICAL)
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def _advertised_address(host: str) -> str:
    """An address clients can send to: ``host`` itself, or for all interfaces (``0.0.0.0``) the
    address of the interface that routes outwards."""
    if host not in ("", "0.0.0.0", "::"):
        try:
            return socket.gethostbyname(host)
        except OSError:
            return host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing interface
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed", 503: "Service Unavailable"}


def _response(status: int, body: dict[str, Any] | None, head_only: bool = False) -> Response:
    data = b"" if body is None else json.dumps(body).encode("utf-8")
    headers = Headers([("Connection", "close"), ("Content-Length", str(len(data)))])
    if body is not None:
        headers["Content-Type"] = "application/json"
    if status == 405:
        headers["Allow"] = "GET, HEAD"
    return Response(status, _REASONS[status], headers, b"" if head_only else data)
