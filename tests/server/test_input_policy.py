"""The input policy (docs/hardening.md): a client on this machine may name any readable audio
file; a client on another machine only files in ``input_dirs``.

The loopback side runs over real UDP. The network side needs a datagram from a non-loopback
address: it runs over real UDP from this machine's outward interface when it has one (the
server bound to 0.0.0.0), and the policy function is also called with a non-loopback address
directly (no second machine here)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from dreamsampler.engine.request import RequestError
from dreamsampler.server.session import may_read_anywhere, request_origin, resolve_input
from tests.conftest import make_config, run_server, write_pluck


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


def _outward_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # sends nothing: picks the outgoing interface
            address = str(s.getsockname()[0])
        except OSError:
            return None
    return None if may_read_anywhere(address) else address


def test_network_client_is_refused_a_file_outside_the_input_folders(tmp_path: Path) -> None:
    address = _outward_address()
    if address is None:  # no interface besides loopback: the policy test above covers it
        pytest.skip("no network interface besides loopback")
    (tmp_path / "splice").mkdir()
    clip = write_pluck(tmp_path / "splice" / "loop.wav")
    for server in run_server(make_config(tmp_path, **{"osc.host": "0.0.0.0"})):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((address, 0))
            sock.settimeout(30)
            replies = _request(sock, (address, server.port), str(clip), "dub")
            assert replies[-1][0] == "/fail" and "outside the input folders" in replies[-1][1][1]
            inside = write_pluck(server.input_dir / "ok.wav")  # input_dirs: allowed
            sock.settimeout(60)
            replies = _request(sock, (address, server.port), str(inside), "dub")
            assert replies[-1][0] == "/done", replies

