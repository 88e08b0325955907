"""The input policy (docs/hardening.md): a client on this machine may name any readable audio
file; a client on another machine only files in ``input_dirs``.

The loopback side runs over real UDP. The network side needs a datagram from a non-loopback
address, which test traffic here may not carry (only loopback may be a target): the OSC edge's
datagram entry point is called with a non-loopback sender address and its replies to that
sender are recorded, not sent (see that test); the policy function is also called with
non-loopback addresses directly."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from dreamsampler.engine.request import RequestError
from dreamsampler.server.session import may_read_anywhere, request_origin, resolve_input
from tests.conftest import RunningServer, make_config, run_server, write_pluck


def test_policy_by_address(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"):
        assert may_read_anywhere(host), host
    for host in ("192.168.1.20", "10.0.0.5", "::ffff:192.168.1.20", "fe80::1%eth0", None, "",
                 "not-an-address"):
        assert not may_read_anywhere(host), host
    inside = tmp_path / "in"
    inside.mkdir()
    clip = write_pluck(tmp_path / "elsewhere.wav")
    with request_origin("127.0.0.1"):
        assert resolve_input(clip, [inside]) == clip.resolve()
    for origin in ("192.168.1.20", None):
        with request_origin(origin), pytest.raises(RequestError, match="outside the input"):
            resolve_input(clip, [inside])
    with request_origin("127.0.0.1"), pytest.raises(RequestError, match="no such file"):
        resolve_input("../elsewhere.wav", [inside]), "relative names stay in the folders"


def _request(sock: socket.socket, server: tuple[str, int], *args: str) -> list[tuple[str, list]]:
    builder = OscMessageBuilder("/transfer")
    for arg in args:
        builder.add_arg(arg)
    sock.sendto(builder.build().dgram, server)
    replies = []
    while True:
        message = OscMessage(sock.recv(65536))
        replies.append((message.address, list(message.params)))
        if message.address in ("/done", "/fail"):
            return replies


def test_loopback_client_transfers_a_file_outside_the_input_folders(tmp_path: Path) -> None:
    (tmp_path / "splice").mkdir()  # say, a sample library: not an input folder
    clip = write_pluck(tmp_path / "splice" / "loop.wav")
    for server in run_server(make_config(tmp_path)):
        assert not clip.is_relative_to(server.input_dir)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(60)
            replies = _request(sock, ("127.0.0.1", server.port), str(clip), "dub")
        assert replies[0][0] == "/queued" and replies[-1][0] == "/done", replies
        assert Path(replies[-1][1][2]).is_file()


#: the network client: an address from TEST-NET-1 (RFC 5737, documentation only, never routed)
NETWORK_CLIENT = ("192.0.2.7", 50123)


class _Replies:
    """Records what the OSC edge sends to :data:`NETWORK_CLIENT` instead of sending it
    (thread-safe: the server runs on its own loop thread); other targets are sent as usual."""

    def __init__(self, send: Callable[..., None]) -> None:
        self._send = send
        self.got: list[tuple[str, list[Any]]] = []
        self.ended = threading.Event()

    def __call__(self, target: tuple[str, int], address: str, *args: Any) -> None:
        if target[0] != NETWORK_CLIENT[0]:
            self._send(target, address, *args)
            return
        self.got.append((address, list(args)))
        if address in ("/done", "/fail"):
            self.ended.set()

    def request(self, server: RunningServer, *args: str) -> list[tuple[str, list[Any]]]:
        """Hand the OSC edge a ``/transfer`` datagram as if it came from the network client;
        return the replies up to ``/done`` or ``/fail``."""
        builder = OscMessageBuilder("/transfer")
        for arg in args:
            builder.add_arg(arg)
        self.got.clear()
        self.ended.clear()
        server.loop.call_soon_threadsafe(server.app.osc.datagram_received, builder.build().dgram,
                                         NETWORK_CLIENT)
        assert self.ended.wait(60), self.got
        return list(self.got)


def test_network_client_is_refused_a_file_outside_the_input_folders(tmp_path: Path) -> None:
    """The network side goes through the OSC edge's own entry point for a received datagram
    (``OscServer.datagram_received``: allow list, parsing, dispatch, the request origin, the
    handler, the replies) with a non-loopback sender address, but not over a real socket: test
    traffic may only go to and from loopback here (and CI machines may have no other interface),
    so no datagram can come from, or be answered to, a non-loopback address. The replies the
    edge addresses to that sender are recorded instead of sent (``_Replies``); the server itself
    is the real one, bound to 127.0.0.1."""
    (tmp_path / "splice").mkdir()
    clip = write_pluck(tmp_path / "splice" / "loop.wav")
    for server in run_server(make_config(tmp_path)):
        osc = server.app.osc
        replies = _Replies(osc.send)
        osc.send = replies  # type: ignore[method-assign]
        try:
            got = replies.request(server, str(clip), "dub")
            assert got[-1][0] == "/fail" and "outside the input folders" in got[-1][1][1], got
            inside = write_pluck(server.input_dir / "ok.wav")  # input_dirs: allowed
            got = replies.request(server, str(inside), "dub")
            assert got[0][0] == "/queued" and got[-1][0] == "/done", got
            assert Path(got[-1][1][2]).is_file()
            # the same file from loopback over real UDP: allowed (the origin is per request)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(60)
                over_udp = _request(sock, ("127.0.0.1", server.port), str(clip), "dub")
            assert over_udp[-1][0] == "/done", over_udp
        finally:
            osc.send = replies._send  # type: ignore[method-assign]
