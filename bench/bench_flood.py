"""Flood the OSC server over loopback while it generates; print throughput, /status latency and
RSS growth.

    PYTHONPATH=$PWD NUMBA_CACHE_DIR=/tmp/numba python bench/bench_flood.py --seconds 5

Starts the real app in this process (tiny model, temporary folders, free port), starts one long
generation (``--steps`` denoising steps) and, while it runs, another process sends from one
socket at ``--rate`` datagrams/s (0: as fast as it can) for ``--seconds``: /status (70 %),
unknown addresses with a 1 KB argument (20 %) and malformed datagrams (10 %); a second client
asks /status every 20 ms and times the answers.
Prints: datagrams sent and processed per second (replies received + malformed counted by the
server), /status p50/p99/max latency (ms) during the generation, and this process's RSS before,
right after the flood and the growth (MiB). Figures depend on the machine; nothing is asserted.
Works against an older checkout (PYTHONPATH) for before/after figures.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pythonosc.osc_message_builder import OscMessageBuilder


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _dgram(address: str, *args: object) -> bytes:
    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


def flood(target: tuple[str, int], seconds: float, rate: float,
          result: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Send for ``seconds`` at ``rate`` datagrams/s (0: as fast as possible); put (sent,
    replies received, seconds) on ``result``."""
    rng = random.Random(5)
    payloads = [_dgram("/status")] * 7 + [_dgram(f"/nope/{i}", "x" * 1024) for i in range(2)] \
        + [b"\x00not osc at all"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    sent = replies = 0
    start = time.monotonic()
    end = start + seconds
    while (now := time.monotonic()) < end:
        due = int((now - start) * rate) if rate else sent + 100
        while sent < due:
            sock.sendto(payloads[rng.randrange(len(payloads))], target)
            sent += 1
        while True:
            try:
                sock.recv(65536)
                replies += 1
            except (BlockingIOError, ConnectionRefusedError):
                break
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    late = time.monotonic() + 1.0
    while time.monotonic() < late:
        try:
            sock.recv(65536)
            replies += 1
        except (BlockingIOError, ConnectionRefusedError):
            time.sleep(0.005)
    result.put((sent, replies, elapsed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5000.0,
                        help="datagrams/s offered (0: as fast as one process can send)")
    args = parser.parse_args()

    from dreamsampler.config import load_config
    from dreamsampler.server.app import start_app

    tmp = Path(tempfile.mkdtemp(prefix="flood-"))
    (tmp / "in").mkdir()
    config = load_config(None, {
        "model.id": "tiny", "model.device": "cpu", "osc.port": 0, "oscquery.enabled": False,
        "output.dir": str(tmp / "out"), "input_dirs": [str(tmp / "in")],
        "concepts_dir": str(tmp / "concepts"), "live.presets_dir": str(tmp / "presets"),
        "defaults.num_inference_steps": args.steps, "defaults.duration": 8.0,
        "limits.max_steps": max(200, args.steps),
    })
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    app = asyncio.run_coroutine_threadsafe(start_app(config), loop).result(120)
    target = ("127.0.0.1", app.osc.port)

    gen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gen.bind(("127.0.0.1", 0))
    gen.settimeout(10)
    gen.sendto(_dgram("/gen", "a long one", "id", 1), target)
    gen.recv(65536)  # /queued

    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        while not stop.is_set():
            t0 = time.perf_counter()
            s.sendto(_dgram("/status"), target)
            try:
                s.recv(65536)
                latencies.append((time.perf_counter() - t0) * 1000)
            except TimeoutError:
                latencies.append(5000.0)
            time.sleep(0.02)
        s.close()

    rss0 = rss_mib()
    malformed0 = app.osc.malformed
    prober = threading.Thread(target=probe)
    prober.start()
    ctx = multiprocessing.get_context("spawn")  # the flood has its own GIL
    result = ctx.Queue()
    flooder = ctx.Process(target=flood, args=(target, args.seconds, args.rate, result))
    flooder.start()
    sent, replies, elapsed = result.get(timeout=args.seconds + 60)
    flooder.join(10)
    stop.set()
    prober.join()
    rss1 = rss_mib()
    processed = replies + app.osc.malformed - malformed0
    try:
        running: object = app.service.status().engine.running is not None
    except AttributeError:  # an older checkout
        running = "?"
    lat = sorted(latencies)
    print(f"flood: {sent} datagrams in {elapsed:.1f} s ({sent / elapsed:.0f}/s offered), "
          f"{processed} processed ({processed / elapsed:.0f}/s), {replies} replies")
    if lat:
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
        print(f"/status during the generation (job running: {running}): "
              f"{len(lat)} probes, p50 {statistics.median(lat):.1f} ms, p99 {p(0.99):.1f} ms, "
              f"max {lat[-1]:.1f} ms")
    print(f"RSS: {rss0:.1f} MiB before, {rss1:.1f} MiB after the flood "
          f"(+{rss1 - rss0:.1f} MiB)")
    asyncio.run_coroutine_threadsafe(app.close(), loop).result(60)


if __name__ == "__main__":
    main()
