"""Reply bytes per request byte over loopback: what one datagram makes the server send.

    PYTHONPATH=$PWD NUMBA_CACHE_DIR=/tmp/numba python bench/bench_amplification.py

Starts the real app in this process (tiny model, temporary folders, free port) and prints, for
each command of a fixed list sent with the fewest bytes that make it valid, the request bytes,
the reply bytes the sender gets and their ratio (what a forged source address would reflect to
its victim); then, for one 48-byte ``/gen x steps 200``, the datagrams and bytes sent to one
``/notify`` registrant (the stream), and what a *forged* registration (made by another socket
naming the victim's port) receives of that stream. Servers with the ``/notify`` cookie are told
to require it from loopback too (as from the network). Works against an older checkout
(PYTHONPATH) for before/after figures. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder


def _dgram(address: str, *args: object) -> bytes:
    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


def _sock() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def _collect(s: socket.socket, quiet: float = 0.3, until: str | None = None,
             limit: float = 120.0) -> list[bytes]:
    """Datagrams arriving on ``s`` until ``quiet`` s pass without one (or ``until`` arrives)."""
    got: list[bytes] = []
    end = time.monotonic() + limit
    s.settimeout(quiet)
    while time.monotonic() < end:
        try:
            data = s.recv(65536)
        except TimeoutError:
            if until is None or any(OscMessage(d).address == until for d in got):
                break
            continue
        got.append(data)
    return got


COMMANDS: list[tuple[str, tuple[object, ...]]] = [
    ("/status", ()), ("/version", ()), ("/preset/list", ()), ("/concept/list", ()),
    ("/concept/available", ()), ("/midi/ports", ()), ("/nope", ()), ("/notify", (1,)),
    ("/sync", (1,)), ("/cancel", (1,)), ("/gen", ("x",)),
    ("/" + "a" * 250, ()),  # a long unknown address is echoed (cut to 256 characters)
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()

    from dreamsampler.config import load_config
    from dreamsampler.server.app import start_app

    tmp = Path(tempfile.mkdtemp(prefix="amp-"))
    (tmp / "in").mkdir()
    config = load_config(None, {
        "model.id": "tiny", "model.device": "cpu", "osc.port": 0, "oscquery.enabled": False,
        "output.dir": str(tmp / "out"), "input_dirs": [str(tmp / "in")],
        "concepts_dir": str(tmp / "concepts"), "live.presets_dir": str(tmp / "presets"),
        "defaults.duration": 0.5, "limits.max_steps": max(200, args.steps),
    })
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    app = asyncio.run_coroutine_threadsafe(start_app(config), loop).result(120)
    target = ("127.0.0.1", app.osc.port)
    clients = app.osc.clients
    cookies = hasattr(clients, "cookie_loopback")
    if cookies:
        clients.cookie_loopback = True

    print(f"{'command':<24} {'req B':>6} {'reply B':>8} {'ratio':>6}")
    worst = (0.0, "")
    for address, atoms in COMMANDS:
        s = _sock()
        request = _dgram(address, *atoms)
        s.sendto(request, target)
        replies = _collect(s, until="/done" if address == "/gen" else None)
        size = sum(len(d) for d in replies)
        ratio = size / len(request)
        worst = max(worst, (ratio, address[:24]))
        print(f"{address[:24]:<24} {len(request):>6} {size:>8} {ratio:>6.2f}")
        s.close()
    print(f"worst direct reply ratio: {worst[0]:.2f} ({worst[1]})")

    # the stream of one job to a registrant, and to a forged registration
    registrant, victim, forger, sender = _sock(), _sock(), _sock(), _sock()
    registrant.sendto(_dgram("/notify", 1), target)
    got = _collect(registrant)
    cookie = [OscMessage(d).params[0] for d in got if OscMessage(d).address == "/notify.cookie"]
    if cookie:
        registrant.sendto(_dgram("/notify", 1, 0, cookie[0]), target)
        _collect(registrant)
    forger.sendto(_dgram("/notify", 1, victim.getsockname()[1]), target)
    forged_setup = _collect(victim)
    gen = _dgram("/gen", "x", "steps", args.steps)
    sender.sendto(gen, target)
    stream = _collect(registrant, quiet=1.0, until="/job.ended")
    to_victim = _collect(victim, quiet=0.5)
    n, size = len(stream), sum(len(d) for d in stream)
    print(f"/gen x steps {args.steps} ({len(gen)} B): to one registrant {n} datagrams, "
          f"{size} B (x{size / len(gen):.1f})")
    print(f"forged registration: setup replies {len(forged_setup)} datagrams "
          f"{sum(len(d) for d in forged_setup)} B (request 20 B); of the job's stream "
          f"{len(to_victim)} datagrams, {sum(len(d) for d in to_victim)} B "
          f"(cookie required: {cookies})")
    asyncio.run_coroutine_threadsafe(app.close(), loop).result(60)


if __name__ == "__main__":
    main()
