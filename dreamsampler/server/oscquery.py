"""Discovery: OSCQuery over HTTP, generated from the OSC contract, and its mDNS advertisement.

Implements the read-only part of the OSCQuery proposal (https://github.com/Vidvox/OSCQueryProposal):

- ``GET /`` (or any node path) → the JSON tree: ``FULL_PATH``, ``CONTENTS``, ``TYPE`` (type tags of
  the positional arguments), ``RANGE`` (per argument ``MIN``/``MAX``/``VALS``, ``null`` when
  unbounded; ``MAX`` of steps and duration is the server's configured limit), ``DESCRIPTION``,
  ``ACCESS`` (3 = readable ``/param/*``, 2 = write-only command with arguments, 0 = command without
  arguments) and ``VALUE`` (``/param/*``: the session's current values; other commands: a default
  per argument, so that clients that type a node by its ``VALUE``, such as python-oscquery, accept
  it);
- ``GET /path?ATTRIBUTE`` → ``{"ATTRIBUTE": ...}`` (204 when the node lacks it);
- ``GET /?HOST_INFO`` → ``NAME``, ``OSC_IP``, ``OSC_PORT``, ``OSC_TRANSPORT`` (``"UDP"``),
  ``EXTENSIONS``;
- an unknown path → 404, an unknown attribute or a bad request → 400, other methods → 405.

No websocket (``LISTEN`` is false). The HTTP server is a few lines of stdlib asyncio, bounded so
that it cannot hurt OSC: at most :data:`MAX_CONNECTIONS` at once and :data:`MAX_PER_ADDRESS`
from one address (more get 503 and are closed), a
request must arrive within :data:`REQUEST_TIMEOUT` seconds, and no error in a connection escapes.
If the configured HTTP port is taken, a free one is used (clients discover it; ``/status`` reports
it). zeroconf advertises ``_oscjson._tcp`` (the HTTP port) and ``_osc._udp`` (the OSC port), both
of which clients such as Vezér look for, but not when OSC is bound to a loopback address (another
machine could not reach it: serve with ``--host 0.0.0.0`` to be discoverable). ``HOST_INFO``'s
``OSC_IP`` is the host's address when OSC is bound to all interfaces.
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

from dreamsampler.config import SCHEDULERS
from dreamsampler.server.contract import COMMANDS, PARAMS, Arg, Message

log = logging.getLogger(__name__)

ACCESS_NONE, ACCESS_READ, ACCESS_WRITE, ACCESS_READ_WRITE = 0, 1, 2, 3
ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "RANGE", "DESCRIPTION", "ACCESS", "VALUE")
EXTENSIONS = {"ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "TYPE": True,
              "TAGS": False, "UNIT": False, "CLIPMODE": False, "CRITICAL": False,
              "OVERLOADS": False, "EXTENDED_TYPE": False, "LISTEN": False,
              "PATH_CHANGED": False, "PATH_RENAMED": False, "PATH_ADDED": False,
              "PATH_REMOVED": False, "HTML": False}
MAX_REQUEST = 16384
#: HTTP connections served at once; more are answered 503 and closed at once (no file piles up)
MAX_CONNECTIONS = 32
#: connections served at once from one address; more from it get 503 at once, so one host
#: holding slow connections cannot starve the others (MAX_CONNECTIONS is shared by all)
MAX_PER_ADDRESS = 8
#: seconds a client has to send its request line and headers
REQUEST_TIMEOUT = 5.0

Values = Callable[[], dict[str, Any]]

#: the values a string argument accepts (OSCQuery ``VALS``), by argument name or (address, name)
CHOICES: dict[str | tuple[str, str], tuple[str, ...]] = {
    "scheduler": SCHEDULERS,
    ("/jam", "state"): ("on", "off"),
}


def _choices(address: str, arg: Arg) -> tuple[str, ...] | None:
    return CHOICES.get((address, arg.name), CHOICES.get(arg.name))


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
    """``value`` as the JSON type ``arg``'s tag names (python-oscquery types a node by VALUE)."""
    if arg.type == "f":
        return float(value)
    if arg.type == "i":
        return int(value)
    return "" if value is None else str(value)


def _default(address: str, arg: Arg) -> Any:
    """A write-only argument's ``VALUE``: its first choice, else zero (or "") within its range."""
    choices = _choices(address, arg)
    if choices:
        return choices[0]
    if arg.type == "s":
        return ""
    zero = 0 if arg.minimum is None else max(0, arg.minimum)
    if arg.maximum is not None:
        zero = min(zero, arg.maximum)
    return _typed(arg, zero)


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
        if readable:
            arg = message.args[0]
            node["VALUE"] = [_default(message.address, arg) if value is None and arg.type != "s"
                             else _typed(arg, value)]
        else:
            node["VALUE"] = [_default(message.address, a) for a in message.args]
    return node


def namespace(commands: dict[str, Message], values: dict[str, Any],
              maxima: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The OSCQuery tree for ``commands``.

    Args:
        commands: address → contract entry.
        values: readable addresses → their current value.
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


class OscQueryServer:
    """Serves OSCQuery for one OSC endpoint and optionally advertises it with zeroconf.

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
        self.connections = 0
        self._per_host: dict[str, int] = {}
        self._osc_ip: str | None = None
        self._server: asyncio.Server | None = None
        self._zeroconf: Any = None
        self._services: list[Any] = []
        self._register_task: asyncio.Task[None] | None = None

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
        if attribute not in ATTRIBUTES:
            return 400, {"error": f"unknown attribute {attribute}"}
        if attribute not in node:
            return 204, None
        return 200, {attribute: node[attribute]}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection; nothing raised here reaches the event loop."""
        self.connections += 1
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if peer else ""
        self._per_host[host] = self._per_host.get(host, 0) + 1
        try:
            if self.connections > MAX_CONNECTIONS or self._per_host[host] > MAX_PER_ADDRESS:
                status, body, head = 503, {"error": "too many connections"}, False
            else:
                try:
                    status, body, head = await asyncio.wait_for(self._read(reader),
                                                                timeout=REQUEST_TIMEOUT)
                except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                        OSError, UnicodeDecodeError, ValueError):
                    status, body, head = 400, {"error": "bad request"}, False
            writer.write(_response(status, body, head))
            await asyncio.wait_for(writer.drain(), timeout=REQUEST_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a client gone, a full buffer, a bug: never the server's end
            log.debug("OSCQuery connection: %s", exc)
        finally:
            self.connections -= 1
            self._per_host[host] -= 1
            if not self._per_host[host]:
                del self._per_host[host]
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, Any] | None,
                                                                  bool]:
        request = await reader.readuntil(b"\r\n\r\n")
        if len(request) > MAX_REQUEST:
            raise ValueError("request too large")
        method, target, _version = request.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        if method not in ("GET", "HEAD"):
            return 405, {"error": f"method {method} not allowed"}, False
        status, body = self.answer(target)
        return status, body, method == "HEAD"

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the HTTP port and start advertising (in the background).

        Raises:
            OSError: the port cannot be bound.
        """
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                      limit=MAX_REQUEST)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or self.port == 0:
                raise
            self._server = await asyncio.start_server(self._handle, self.host, 0,
                                                      limit=MAX_REQUEST)
            self.fallback_from = self.port
        self.port = self._server.sockets[0].getsockname()[1]
        if self.fallback_from is not None:
            log.warning("OSCQuery port %d is in use: serving OSCQuery on port %d instead "
                        "(clients find it over mDNS; /status reports it; --oscquery-port N "
                        "picks another)", self.fallback_from, self.port)
        log.info("OSCQuery on http://%s:%d/", self.host, self.port)
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
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


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


def _response(status: int, body: dict[str, Any] | None, head_only: bool = False) -> bytes:
    data = b"" if body is None else json.dumps(body).encode("utf-8")
    headers = [f"HTTP/1.1 {status} {_REASONS[status]}", "Connection: close",
               f"Content-Length: {len(data)}"]
    if body is not None:
        headers.append("Content-Type: application/json")
    if status == 405:
        headers.append("Allow: GET, HEAD")
    return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + (b"" if head_only else data)
