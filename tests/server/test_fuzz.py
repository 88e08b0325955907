"""Every well-formed message is answered in one datagram; malformed ones are dropped and logged at a
limited rate; the server keeps answering (issue 12, items 1 and 5)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from bench.fuzz_osc import generate, run
from dreamsampler.client import OscClient
from tests.conftest import RunningServer, make_config, run_server


@pytest.fixture
def jobless(tmp_path: Path) -> Iterator[RunningServer]:
    """A real server whose output folder became a file: every job is refused at once, so
    nothing reaches the model and every answer comes straight back."""
    for server in run_server(make_config(tmp_path)):
        server.output_dir.rmdir()
        server.output_dir.write_text("not a folder")
        yield server


@pytest.fixture
def log_bytes() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_fuzz_every_well_formed_message_answered_once(jobless: RunningServer,
                                                      log_bytes: io.StringIO) -> None:
    cases = generate(seed=2026, count=2000)
    malformed = sum(1 for c in cases if c.expected == 0)
    assert malformed > 100 and len(cases) - malformed > 1500
    result = run(jobless.port, cases, deadline=10.0)
    assert result.without_reply == 0, result.kinds_without_reply
    assert result.extra_replies == 0
    assert result.malformed_answered == 0
    assert jobless.app.osc.malformed == malformed
    with jobless.client() as c:
        assert c.request("/status", timeout=5)[-1].address == "/status.reply"
    # rate-limited, one line per logged event, no tracebacks: a few bytes per datagram
    # (before: ~19 KB of traceback per bad datagram)
    text = log_bytes.getvalue()
    assert "Traceback" not in text
    assert len(text.encode()) < 50 * len(cases), len(text)


def _one(c: OscClient, dgram: bytes, timeout: float = 5.0) -> tuple[str, tuple[object, ...]]:
    c.send_raw(dgram)
    reply = c.receive(timeout)
    assert reply is not None, f"no reply to {dgram[:60]!r}"
    return reply.address, reply.args


def test_hostile_values_get_a_fail(jobless: RunningServer) -> None:
    with jobless.client() as c:
        # the 48-byte datagram that froze a regex-matching dispatcher for 31 s
        evil = OscMessageBuilder("/" + "*" * 40 + "!").build().dgram
        assert len(evil) == 48
        address, args = _one(c, evil)
        assert (address, args[1]) == ("/fail", "pattern addresses are not supported")
        for value in (float("nan"), float("inf")):
            address, args = _one(c, _msg("/cancel", value))
            assert address == "/fail" and args[:1] == ("/cancel",) and len(args) == 2
            assert "finite" in str(args[1])
        address, args = _one(c, _msg("/sync", 1e38))
        assert address == "/fail" and "int32" in str(args[1])
        address, args = _one(c, _msg("/sync", 2**40))  # an int64 atom
        assert address == "/fail" and "int32" in str(args[1])
        huge = "/" + "u" * 40_000
        address, args = _one(c, _msg(huge))
        assert address == "/fail" and len(str(args[0])) <= 256 and len(str(args[1])) <= 1024
        assert str(args[0]).startswith("/uuu") and str(args[0]).endswith("…")
        assert c.request("/status", timeout=5)[-1].address == "/status.reply"


def _msg(address: str, *args: object) -> bytes:
    builder = OscMessageBuilder(address)
    for a in args:
        builder.add_arg(a, "d" if isinstance(a, float) and abs(a) > 3.4e38 else None)
    return builder.build().dgram


def test_malformed_datagrams_are_dropped_and_counted(jobless: RunningServer) -> None:
    bad_utf8 = _msg("/gen", "abcd").replace(b"abcd", b"ab\xc3\x28")
    inner = _msg("/status")
    for _ in range(100):
        inner = b"#bundle\0" + bytes(7) + b"\1" + len(inner).to_bytes(4, "big") + inner
    with jobless.client() as c:
        for dgram in (bad_utf8, inner, b"\x00garbage"):
            c.send_raw(dgram)
            assert c.request("/version", timeout=5)[-1].address == "/version.reply"
        assert c.received[-1].address == "/version.reply"
        assert [r.address for r in c.received].count("/fail") == 0
    assert jobless.app.osc.malformed == 3


def test_a_bundle_of_4000_gets_a_bounded_answer(jobless: RunningServer) -> None:
    """65 KB of /status in one bundle used to reflect 4,000 replies (x amplification)."""
    bundle = OscBundleBuilder(IMMEDIATELY)
    for _ in range(4000):
        bundle.add_content(OscMessageBuilder("/status").build())
    dgram = bundle.build().dgram
    assert len(dgram) < 65507
    with jobless.client() as c:
        c.send_raw(dgram)
        got = c.wait_for(lambda r: r.address == "/fail", timeout=10)
        assert [r.address for r in got] == ["/status.reply"] * 64 + ["/fail"]
        assert got[-1].args[0] == "#bundle" and "4000 messages" in got[-1].args[1]
        assert c.receive(0.2) is None
