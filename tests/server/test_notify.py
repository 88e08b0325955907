"""/notify hardened (issue 22, item 3): cookies confirm a registration before any stream, a full
table evicts instead of refusing, a reply port is always honoured, progress is coalesced.

Over real UDP on 127.0.0.1. Loopback senders cannot be forged from the network, so the server
trusts them by default; these tests switch ``cookie_loopback`` on to exercise the handshake, and
stand for a forged source with a registration that names *another* socket's port as its reply
port (the victim's address, which never echoes the cookie).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pythonosc.osc_message import OscMessage

from dreamsampler.server.notify import COOKIE_LIMIT, BadCookieError, Clients
from tests.conftest import make_config, run_server

STREAM = ("/progress", "/job.started", "/job.ended")


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def _drain(sock: socket.socket) -> list[str]:
    """Addresses of every datagram already waiting on ``sock`` (non-blocking)."""
    sock.setblocking(False)
    got = []
    while True:
        try:
            got.append(OscMessage(sock.recv(65536)).address)
        except BlockingIOError:
            return got


def test_cookie_handshake_on_a_simulated_clock() -> None:
    clock = FakeClock()
    clients = Clients(clock=clock, cookie_window=100.0)
    lan = ("192.168.1.20", 50000)
    target, confirmed = clients.register(lan, 7000)
    assert (target, confirmed) == (("192.168.1.20", 7000), False)
    assert clients.notified() == [] and clients.reply_address(lan) == target
    cookie = clients.cookie(target)
    assert 0 <= cookie < COOKIE_LIMIT and float(cookie) == float(float(cookie).__int__())
    assert int(float.fromhex(float(cookie).hex())) == cookie  # exact through Pd's floats
    with pytest.raises(BadCookieError, match="does not match"):
        clients.register(lan, 7000, (cookie + 1) % COOKIE_LIMIT)
    with pytest.raises(BadCookieError):  # bound to the reply address
        clients.register(lan, 7001, cookie)
    clock.now += 150  # the next window still accepts it
    assert clients.register(lan, 7000, cookie) == (target, True)
    assert clients.notified() == [target]
    clock.now += 200  # two windows later it is stale
    with pytest.raises(BadCookieError):
        clients.register(lan, 7000, cookie)
    # loopback senders are trusted unless cookie_loopback is set
    assert clients.register(("127.0.0.1", 4000))[1]
    assert not Clients(cookie_loopback=True).register(("127.0.0.1", 4000))[1]


def test_a_forged_registration_gets_no_stream_and_progress_is_coalesced(
        tmp_path: Path) -> None:
    config = make_config(tmp_path)
    victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    victim.bind(("127.0.0.1", 0))
    victim.settimeout(10)
    for server in run_server(config):
        server.app.osc.clients.cookie_loopback = True
        with server.client() as forger, server.client() as client:
            # the forger registers the victim's address: the victim gets the cookie and /done
            forger.send("/notify", 1, victim.getsockname()[1])
            assert OscMessage(victim.recv(4096)).address == "/notify.cookie"
            assert OscMessage(victim.recv(4096)).address == "/done"
            # a real client echoes its cookie
            got = client.request("/notify", 1, timeout=5)
            assert [r.address for r in got] == ["/notify.cookie", "/done"]
            assert got[-1].args == ("/notify", 1, got[-1].args[2])
            assert client.request("/status", timeout=5)[-1].args[4] == 0, "not yet confirmed"
            wrong = client.request("/notify", 1, 0, (got[0].args[0] + 1) % COOKIE_LIMIT,
                                   timeout=5)[-1]
            assert wrong.address == "/fail" and "cookie" in wrong.args[1]
            done = client.request("/notify", 1, 0, got[0].args[0], timeout=5)
            assert [r.address for r in done] == ["/done"]
            assert client.request("/status", timeout=5)[-1].args[4] == 1
            client.received.clear()
            # a 200-step job: a bounded number of datagrams to the registrant
            client.send("/gen", "x", "steps", 200, "duration", 0.5)
            client.wait_for(lambda r: r.address == "/job.ended", timeout=120)
            stream = [r for r in client.received if r.address in STREAM]
            progress = [r.args[1] for r in stream if r.address == "/progress"]
            assert len(progress) <= 21 and progress[-1] == 1.0 and progress == sorted(progress)
            assert len(stream) <= 23  # before: 202
            assert _drain(victim) == [], "the forged registration received a stream"
    victim.close()


def test_dead_registrations_never_lock_out_a_new_client(tmp_path: Path) -> None:
    """64 registrations from sockets that then close; a Max/Pd-style client (sends from one
    port, listens on another) still registers, gets its replies and the stream."""
    config = make_config(tmp_path)
    inbox = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    inbox.bind(("127.0.0.1", 0))
    inbox.settimeout(10)
    for server in run_server(config):
        for _ in range(64):
            with server.client() as gone:
                assert gone.request("/notify", 1, timeout=5)[-1].address == "/done"
        with server.client() as patch:
            patch.send("/notify", 1, inbox.getsockname()[1])
            reply = OscMessage(inbox.recv(4096))
            assert (reply.address, reply.params[:2]) == ("/done", ["/notify", 1])
            patch.send("/gen", "x", "steps", 2, "duration", 0.5)
            seen = []
            while "/job.ended" not in seen:
                seen.append(OscMessage(inbox.recv(65536)).address)
            assert {"/queued", "/job.started", "/progress", "/done"} <= set(seen)
            assert patch.receive(0.05) is None, "nothing goes to the sending port"
        with server.client() as c:
            assert c.request("/status", timeout=5)[-1].args[4] == 64
    inbox.close()
