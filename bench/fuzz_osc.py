"""A seeded OSC fuzzer for the server: well-formed datagrams (built with python-osc's builders)
with hostile values, plus malformed ones, sent over loopback UDP.

Every datagram goes out from its own socket, so each socket's replies belong to one datagram:
a well-formed message must get exactly one reply (``/fail``, ``/done``, ``/queued`` or its reply
address), a bundle one per message (at most the server's per-datagram bound, then one
``/fail``), a malformed datagram none. Used by ``tests/server/test_fuzz.py`` (a few thousand
datagrams) and ``bench/bench_fuzz.py`` (figures before/after).

Commands whose answer legitimately waits or goes elsewhere are left out: ``/notify`` (moves the
reply port), ``/midi/learn`` (answers when a controller moves).
"""

from __future__ import annotations

import random
import select
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from dreamsampler.server.contract import COMMANDS

SKIPPED = ("/notify", "/midi/learn")
ADDRESSES = tuple(a for a in COMMANDS if a not in SKIPPED)
OPTION_KEYS = ("seed", "steps", "guidance", "duration", "negative", "scheduler", "id", "name",
               "concept", "lora_scale", "bars", "strength", "color")
FLOATS = (0.0, -0.0, 0.5, 1.0, -1.0, 120.0, 1e38, -1e38, 3.4e38, 1e-45, float("nan"),
          float("inf"), float("-inf"))
INTS = (0, 1, -1, 7, 2**31 - 1, -(2**31), 255, 65535, 70000)


@dataclass(frozen=True)
class Case:
    """One datagram and the replies it must get (0: malformed, dropped)."""

    dgram: bytes
    expected: int
    kind: str


@dataclass
class Result:
    """What a fuzz run saw."""

    sent: int = 0
    well_formed_messages: int = 0
    replies: int = 0
    without_reply: int = 0  # well-formed messages that got no reply
    extra_replies: int = 0  # replies beyond the expected count
    malformed_answered: int = 0
    kinds_without_reply: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _string(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.05:
        return "x" * rng.randint(1000, 3000)
    if r < 0.15:
        return "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(1, 12)))
    if r < 0.35:
        return rng.choice(OPTION_KEYS)
    words = ("warm", "bass", "on", "off", "ddim", "pad", "../../etc/passwd", "", " ", "nan")
    return rng.choice(words)


def _atom(rng: random.Random) -> Any:
    r = rng.random()
    if r < 0.3:
        return rng.choice(INTS) if rng.random() < 0.5 else rng.randint(-(2**31), 2**31 - 1)
    if r < 0.55:
        return rng.choice(FLOATS) if rng.random() < 0.6 else rng.uniform(-1e6, 1e6)
    if r < 0.85:
        return _string(rng)
    if r < 0.9:
        return rng.choice((True, False))
    if r < 0.95:
        return rng.randbytes(rng.randint(1, 16))
    return rng.choice((2**40, -(2**40)))  # int64 atoms


def _message(rng: random.Random, address: str, atoms: list[Any]) -> OscMessageBuilder:
    builder = OscMessageBuilder(address)
    for atom in atoms:
        if isinstance(atom, float):
            builder.add_arg(atom, "d" if abs(atom) > 3.4e38 else "f")
        else:
            builder.add_arg(atom)
    return builder


def _address(rng: random.Random, max_stars: int) -> str:
    r = rng.random()
    if r < 0.75:
        return rng.choice(ADDRESSES)
    if r < 0.85:
        return "/" + "".join(rng.choice("abcxyz/._") for _ in range(rng.randint(1, 20)))
    if r < 0.92:
        return "/" + "*" * rng.randint(1, max_stars) + "!"
    return "/" + "u" * rng.randint(33_000, 60_000)  # unknown, over 32 KB


def _atoms_for(rng: random.Random, address: str) -> list[Any]:
    if rng.random() < 0.3 and address in ("/cancel", "/sync", "/play", "/tempo"):
        return [rng.choice(FLOATS)]
    if rng.random() < 0.3 and address in ("/gen", "/transfer"):
        return ["warm bass", rng.choice(OPTION_KEYS), _atom(rng)]
    return [_atom(rng) for _ in range(rng.choice((0, 0, 1, 1, 2, 3, 6)))]


def malformed(rng: random.Random) -> Case:
    """A datagram the server must drop (and count) without answering."""
    r = rng.random()
    if r < 0.25:  # invalid UTF-8 in the address or a string atom
        good = OscMessageBuilder("/gen").build().dgram if rng.random() < 0.5 else \
            _message(rng, "/status", ["abcd"]).build().dgram
        dgram = good.replace(b"gen", b"\xff\xfe\xfd") if b"gen" in good else \
            good.replace(b"abcd", b"ab\xc3\x28")
        return Case(dgram, 0, "invalid-utf8")
    if r < 0.5:  # bundles nested deeper than the bound
        depth = rng.randint(20, 2000)
        inner = OscMessageBuilder("/status").build().dgram
        for _ in range(depth):
            inner = b"#bundle\0" + b"\0" * 7 + b"\1" + len(inner).to_bytes(4, "big") + inner
        return Case(inner[:65000], 0, "deep-bundle")
    if r < 0.75:
        good = _message(rng, rng.choice(ADDRESSES), [1, "x", 2.0]).build().dgram
        return Case(good[: rng.randint(1, len(good) - 1)], 0, "truncated")
    return Case(rng.randbytes(rng.randint(1, 200)), 0, "random-bytes")


def _classify(case: Case, max_per_datagram: int) -> Case:
    """A "malformed" datagram that python-osc reads after all (a cut at a 4-byte boundary) is
    well-formed: it is expected to be answered like any other."""
    if case.dgram.count(b"#bundle\0") > 16:
        return case
    try:
        n = len(OscPacket(case.dgram).messages)
    except Exception:
        return case
    if n == 0:
        return case
    return Case(case.dgram, n if n <= max_per_datagram else max_per_datagram + 1,
                case.kind + "-readable")


def generate(seed: int, count: int, malformed_share: float = 0.1,
             max_per_datagram: int = 64, max_stars: int = 60) -> list[Case]:
    """``count`` datagrams from a seeded RNG: well-formed messages and bundles with hostile
    values, and a ``malformed_share`` of malformed ones. ``max_stars`` bounds the ``*`` in
    pattern addresses (a regex-matching server needs hours for 60: keep it small there)."""
    rng = random.Random(seed)
    cases: list[Case] = []
    for _ in range(count):
        if rng.random() < malformed_share:
            cases.append(_classify(malformed(rng), max_per_datagram))
            continue
        if rng.random() < 0.1:
            n = rng.choice((1, 2, 5, max_per_datagram + rng.randint(1, 40)))
            bundle = OscBundleBuilder(IMMEDIATELY)
            for _ in range(n):
                address = rng.choice(("/status", "/version", "/cancel", "/nope"))
                bundle.add_content(_message(rng, address, _atoms_for(rng, address)).build())
            expected = n if n <= max_per_datagram else max_per_datagram + 1
            dgram = bundle.build().dgram
            if len(dgram) <= 65000:
                cases.append(Case(dgram, expected, "bundle"))
            continue
        address = _address(rng, max_stars)
        try:
            dgram = _message(rng, address, _atoms_for(rng, address)).build().dgram
        except Exception:  # python-osc cannot encode this atom mix: not a datagram
            continue
        if len(dgram) <= 65000:
            kind = address if address in COMMANDS else (
                "pattern" if "*" in address else "unknown")
            cases.append(Case(dgram, 1, kind))
    return cases


def run(port: int, cases: list[Case], batch: int = 50, deadline: float = 3.0,
        host: str = "127.0.0.1") -> Result:
    """Send ``cases`` to ``host:port`` ``batch`` at a time, each from its own socket; wait (at
    most ``deadline`` s per batch) until every well-formed datagram has its replies, then a
    short while for extra ones."""
    result = Result()
    start = time.monotonic()
    chunks: list[list[Case]] = [[]]
    for case in cases:  # at most ``batch`` datagrams and 128 KiB in flight
        if len(chunks[-1]) >= batch or sum(len(c.dgram) for c in chunks[-1]) + len(
                case.dgram) > 128 * 1024:
            chunks.append([])
        chunks[-1].append(case)
    for chunk in chunks:
        socks = []
        for case in chunk:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((host, 0))
            s.setblocking(False)
            s.sendto(case.dgram, (host, port))
            socks.append(s)
        got = [0] * len(chunk)
        end = time.monotonic() + deadline
        quiet_until: float | None = None
        while True:
            waiting = [s for s, c, g in zip(socks, chunk, got, strict=True) if g < c.expected]
            now = time.monotonic()
            if not waiting and quiet_until is None:
                quiet_until = now + 0.05  # a short while for replies that should not come
            limit = quiet_until if quiet_until is not None else end
            if now >= limit:
                break
            readable, _, _ = select.select(socks, [], [], limit - now)
            for s in readable:
                i = socks.index(s)
                while True:
                    try:
                        s.recv(65536)
                    except (BlockingIOError, ConnectionRefusedError):
                        break
                    got[i] += 1
        for s, case, n in zip(socks, chunk, got, strict=True):
            s.close()
            result.sent += 1
            result.replies += n
            if case.expected == 0:
                result.malformed_answered += n > 0
                continue
            result.well_formed_messages += case.expected
            if n < case.expected:
                result.without_reply += case.expected - n
                result.kinds_without_reply[case.kind] = (
                    result.kinds_without_reply.get(case.kind, 0) + case.expected - n)
            else:
                result.extra_replies += n - case.expected
    result.seconds = time.monotonic() - start
    return result
