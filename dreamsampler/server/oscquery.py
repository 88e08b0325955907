"""Discovery: OSCQuery over HTTP, generated from the OSC contract, and its mDNS advertisement.

Implements the read-only part of the OSCQuery proposal (https://github.com/Vidvox/OSCQueryProposal):

- ``GET /`` (or any node path) → the JSON tree: ``FULL_PATH``, ``CONTENTS``, ``TYPE`` (type tags of
  the positional arguments), ``RANGE`` (``MIN``/``MAX`` per argument), ``DESCRIPTION``, ``ACCESS``
  (2 = write-only command, 3 = readable ``/param/*``) and ``VALUE`` (the session's current values);
- ``GET /path?ATTRIBUTE`` → ``{"ATTRIBUTE": ...}`` (204 when the node lacks it);
- ``GET /?HOST_INFO`` → ``NAME``, ``OSC_IP``, ``OSC_PORT``, ``OSC_TRANSPORT`` (``"UDP"``),
  ``EXTENSIONS``;
- an unknown path → 404, an unknown attribute or a bad request → 400, other methods → 405.

No websocket (``LISTEN`` is false). The HTTP server is a few lines of stdlib asyncio; zeroconf
advertises ``_oscjson._tcp`` (the HTTP port) and ``_osc._udp`` (the OSC port), both of which
clients such as Vezér look for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

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

Values = Callable[[], dict[str, Any]]


def _range(arg: Arg) -> dict[str, float]:
    out: dict[str, float] = {}
    if arg.minimum is not None:
        out["MIN"] = arg.minimum
    if arg.maximum is not None:
        out["MAX"] = arg.maximum
    return out


def _method(message: Message, value: Any = None, readable: bool = False) -> dict[str, Any]:
    description = message.description
    if message.options:
        keys = ", ".join(o.name for o in message.options)
        description += f" (signature {message.signature}; option keys: {keys})"
    node: dict[str, Any] = {
        "FULL_PATH": message.address,
        "ACCESS": ACCESS_READ_WRITE if readable else ACCESS_WRITE,
        "DESCRIPTION": description,
    }
    if message.args:
        node["TYPE"] = "".join(a.type for a in message.args)
        node["RANGE"] = [_range(a) for a in message.args]
    if readable:
        node["VALUE"] = [value]
    return node


def namespace(commands: dict[str, Message], values: dict[str, Any]) -> dict[str, Any]:
    """The OSCQuery tree for ``commands``; ``values`` maps readable addresses to their value."""
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
        node["CONTENTS"][parts[-1]] = _method(message, values.get(address),
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
        zeroconf: advertise ``_oscjson._tcp`` and ``_osc._udp``.
        commands: the namespace (default: the contract's :data:`COMMANDS`).
    """

    def __init__(self, values: Values, osc_host: str, osc_port: int, host: str = "127.0.0.1",
                 port: int = 9002, name: str = "dreamsampler", zeroconf: bool = True,
                 commands: dict[str, Message] | None = None) -> None:
        self.values = values
        self.osc_host = osc_host
        self.osc_port = osc_port
        self.host = host
        self.port = port
        self.name = name
        self.zeroconf_enabled = zeroconf
        self.commands = COMMANDS if commands is None else commands
        self.advertised = False
        self._server: asyncio.Server | None = None
        self._zeroconf: Any = None
        self._services: list[Any] = []
        self._register_task: asyncio.Task[None] | None = None

    # -- answering ------------------------------------------------------------------------------

    def host_info(self) -> dict[str, Any]:
        return {"NAME": self.name, "OSC_IP": self.osc_host, "OSC_PORT": self.osc_port,
                "OSC_TRANSPORT": "UDP", "EXTENSIONS": dict(EXTENSIONS)}

    def answer(self, target: str) -> tuple[int, dict[str, Any] | None]:
        """HTTP status and JSON body for a request target such as ``/param/seed?VALUE``."""
        parts = urlsplit(target)
        path, query = unquote(parts.path) or "/", parts.query
        if query == "HOST_INFO":
            return 200, self.host_info()
        node = find(namespace(self.commands, self.values()), path)
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
        try:
            status, body, head = await asyncio.wait_for(self._read(reader), timeout=10)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError, UnicodeDecodeError, ValueError):
            status, body, head = 400, {"error": "bad request"}, False
        try:
            writer.write(_response(status, body, head))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

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
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  limit=MAX_REQUEST)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("OSCQuery on http://%s:%d/", self.host, self.port)
        if self.zeroconf_enabled:
            self._register_task = asyncio.create_task(self._advertise())

    async def _advertise(self) -> None:
        try:
            from zeroconf import ServiceInfo
            from zeroconf.asyncio import AsyncZeroconf

            address = _advertised_address(self.host)
            interfaces = [address] if address.startswith("127.") else None
            self._zeroconf = (AsyncZeroconf(interfaces=interfaces) if interfaces
                              else AsyncZeroconf())
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


def _advertised_address(host: str) -> str:
    if host not in ("", "0.0.0.0", "::"):
        return socket.gethostbyname(host)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing interface
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed"}


def _response(status: int, body: dict[str, Any] | None, head_only: bool = False) -> bytes:
    data = b"" if body is None else json.dumps(body).encode("utf-8")
    headers = [f"HTTP/1.1 {status} {_REASONS[status]}", "Connection: close",
               f"Content-Length: {len(data)}"]
    if body is not None:
        headers.append("Content-Type: application/json")
    if status == 405:
        headers.append("Allow: GET, HEAD")
    return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + (b"" if head_only else data)
