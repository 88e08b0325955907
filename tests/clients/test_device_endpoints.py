"""Two device copies against a real server over real UDP: each registers its own reply port
(as the embedded script does: ``/notify 1 <port>``, see test_live_clip.py) from its own
``[udpsend]`` socket, and each hears only the replies to what it sent itself."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from tests.conftest import RunningServer, make_config, run_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    yield from run_server(make_config(tmp_path))


class Copy:
    """One device copy: a [udpsend] socket and a [udpreceive] socket on a free port."""

    def __init__(self, server_port: int) -> None:
        self.server = ("127.0.0.1", server_port)
        self.send_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.receive_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.receive_sock.bind(("127.0.0.1", 0))
        self.receive_sock.settimeout(10)
        self.port = self.receive_sock.getsockname()[1]

    def send(self, address: str, *args: int | float | str) -> None:
        builder = OscMessageBuilder(address)
        for arg in args:
            builder.add_arg(arg)
        self.send_sock.sendto(builder.build().dgram, self.server)

    def receive(self) -> tuple[str, list[object]]:
        message = OscMessage(self.receive_sock.recv(65536))
        return message.address, list(message.params)

    def pending(self) -> bool:
        self.receive_sock.settimeout(0.2)
        try:
            self.receive_sock.recv(65536)
            return True
        except TimeoutError:
            return False
        finally:
            self.receive_sock.settimeout(10)

    def close(self) -> None:
        self.send_sock.close()
        self.receive_sock.close()


def test_replies_go_to_the_copy_that_asked(server: RunningServer) -> None:
    copies = [Copy(server.port), Copy(server.port)]
    try:
        for copy in copies:
            copy.send("/notify", 1, copy.port)
            assert copy.receive() == ("/done", ["/notify", 1, copy.port])
        copies[0].send("/param/seed", 11)
        copies[1].send("/param/seed", 22)
        assert copies[0].receive() == ("/done", ["/param/seed", 11])
        assert copies[1].receive() == ("/done", ["/param/seed", 22])
        copies[1].send("/status")
        assert copies[1].receive()[0] == "/status.reply"
        assert not copies[0].pending(), "a reply to one copy never reaches the other"
    finally:
        for copy in copies:
            copy.close()
