"""Bounded /notify registrations, an allow-list, bounded pending requests (issue 12, items 6, 8)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dreamsampler.config import ConfigError, load_config
from dreamsampler.server.notify import Clients
from dreamsampler.server.osc import open_to_network
from tests.conftest import held_engine, make_config, run_server


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_registrations_are_capped_evicted_and_expire() -> None:
    """Full table: a new confirmation evicts the least recently confirmed registration (issue
    22: 64 registrations from closed sockets locked every new client out for an hour)."""
    clock = FakeClock()
    clients = Clients(max_clients=3, ttl=60.0, clock=clock)
    for port in (1, 2, 3):
        clients.register(("127.0.0.1", port))
    clock.now += 1
    clients.touch(("127.0.0.1", 1))  # any command renews (and keeps its place)
    _, confirmed = clients.register(("127.0.0.1", 4))
    assert confirmed and clients.notified() == [("127.0.0.1", 3), ("127.0.0.1", 1),
                                                ("127.0.0.1", 4)]
    assert clients.evicted == 1
    assert clients.register(("127.0.0.1", 3), 9000) == (("127.0.0.1", 9000), True)
    clock.now += 40
    clients.touch(("127.0.0.1", 1))
    clock.now += 30  # 71 s after the first registrations: only 1 (renewed at +41) is left
    assert clients.notified() == [("127.0.0.1", 1)]
    assert len(clients) == 1
    assert clients.reply_address(("127.0.0.1", 3)) == ("127.0.0.1", 9000), "reply port kept"
    assert clients.reply_address(("127.0.0.1", 7)) == ("127.0.0.1", 7), "back to the sender"


def test_notify_cap_over_udp(tmp_path: Path) -> None:
    config = make_config(tmp_path, **{"osc.max_clients": 2})
    for server in run_server(config):
        with server.client() as a, server.client() as b, server.client() as c:
            assert a.request("/notify", 1, timeout=5)[-1].address == "/done"
            assert b.request("/notify", 1, timeout=5)[-1].address == "/done"
            assert c.request("/notify", 1, timeout=5)[-1].address == "/done"  # evicts a
            assert c.request("/status", timeout=5)[-1].args[4] == 2
            assert a.request("/notify", 0, timeout=5)[-1].address == "/done"
            assert c.request("/status", timeout=5)[-1].args[4] == 2


def test_allow_list_drops_other_senders(tmp_path: Path) -> None:
    config = make_config(tmp_path, **{"osc.allow": ["10.1.2.0/24"]})
    for server in run_server(config):
        with server.client() as c:
            c.send("/status")
            deadline = time.monotonic() + 10
            while server.app.osc.refused == 0 and time.monotonic() < deadline:
                time.sleep(0.01)  # wait for the datagram to be seen (no reply will come)
            assert server.app.osc.refused == 1
            assert c.receive(0.1) is None
    config = make_config(tmp_path, **{"osc.allow": ["10.1.2.0/24", "127.0.0.1"]})
    for server in run_server(config):
        with server.client() as c:
            assert c.request("/status", timeout=5)[-1].address == "/status.reply"


def test_an_open_server_without_allow_list_is_flagged() -> None:
    assert open_to_network("0.0.0.0", [])
    assert open_to_network("192.168.1.20", [])
    assert open_to_network("::", [])
    assert not open_to_network("0.0.0.0", ["192.168.1.0/24"])
    assert not open_to_network("127.0.0.1", [])
    assert not open_to_network("::1", [])


def test_allow_list_entries_are_checked() -> None:
    with pytest.raises(ConfigError, match="allow"):
        load_config(None, {"osc.allow": ["192.168.1.0/33"]})


def test_pending_requests_are_bounded(tmp_path: Path) -> None:
    """/sync waits behind a held engine: 64 wait, the rest get /fail busy at once; all 64
    answer once the engine moves (before: every /sync was a task, without bound)."""
    config = make_config(tmp_path)
    engine = held_engine(config)
    for server in run_server(config, engine):
        held = asyncio.run_coroutine_threadsafe(engine.hold(), server.loop)
        assert engine.busy.wait(10)
        with server.client() as c:
            for i in range(80):
                c.send("/sync", i)
            fails = c.wait_for(lambda r: len([x for x in c.received
                                              if x.address == "/fail"]) == 16, timeout=10)
            busy = [r for r in fails if r.address == "/fail"]
            assert all(r.args[0] == "/sync" and r.args[1].startswith("busy") for r in busy)
            # control messages neither wait behind work nor count against its limits
            # (issue 22: /stop got "busy: 64 requests pending")
            for _ in range(3):
                reply = c.request("/stop", timeout=5)[-1]
                assert (reply.address, reply.args) == ("/done", ("/stop",))
            assert c.request("/status", timeout=5)[-1].address == "/status.reply"
            # each kind of work has its own bound: 64 /sync do not lock out a concept load,
            # which waits in arrival order behind the held job
            c.send("/concept/load", "x")
            engine.release.set()
            held.result(10)
            c.wait_for(lambda r: len([x for x in c.received if x.address == "/synced"]) == 64,
                       timeout=30)
            assert sorted(r.args[0] for r in c.received if r.address == "/synced") == \
                list(range(64))
            def concept_reply() -> list[object]:
                return [r for r in c.received if r.args[:1] == ("/concept/load",)]

            if not concept_reply():
                c.wait_for(lambda r: r.args[:1] == ("/concept/load",), timeout=30)
            (loaded,) = concept_reply()
            assert not loaded.args[1].startswith("busy")  # type: ignore[attr-defined]
