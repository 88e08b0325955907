"""Fuzz the OSC server over loopback and print what it answered and what it logged.

    PYTHONPATH=$PWD NUMBA_CACHE_DIR=/tmp/numba python bench/bench_fuzz.py --count 3000

Starts the real app (tiny model, temporary folders, free port) in this process, makes the output
folder unwritable so that no job reaches the model (every /gen is answered at once), sends
``--count`` datagrams from :mod:`bench.fuzz_osc` and prints: well-formed messages without a
reply, extra replies, malformed datagrams answered, log bytes per bad datagram (a plain
``time level name: message`` formatter on the root logger at INFO), whether ``/status`` still
answers, and the time taken. Runs against any checkout with ``start_app`` (point PYTHONPATH at an
older tree to measure "before"; ``--max-stars 6`` there, since a regex-matching server freezes on
longer patterns).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.fuzz_osc import Case, generate, run


class _Counting(io.TextIOBase):
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, s: str) -> int:
        self.bytes += len(s.encode("utf-8", "replace"))
        return len(s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--max-stars", type=int, default=6)
    parser.add_argument("--deadline", type=float, default=2.0, help="seconds per batch of 50")
    args = parser.parse_args()

    import dreamsampler
    from dreamsampler.config import load_config
    from dreamsampler.server.app import start_app

    tmp = Path(tempfile.mkdtemp(prefix="fuzz-"))
    (tmp / "in").mkdir()
    config = load_config(None, {
        "model.id": "tiny", "model.device": "cpu", "osc.port": 0, "oscquery.enabled": False,
        "output.dir": str(tmp / "out"), "input_dirs": [str(tmp / "in")],
        "concepts_dir": str(tmp / "concepts"), "live.presets_dir": str(tmp / "presets"),
        "defaults.num_inference_steps": 2, "defaults.duration": 0.5,
    })
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    app = asyncio.run_coroutine_threadsafe(start_app(config), loop).result(120)
    out = tmp / "out"
    out.rmdir()
    out.write_text("a file where the folder should be: no job reaches the model")

    counter = _Counting()
    handler = logging.StreamHandler(counter)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    cases = generate(args.seed, args.count, max_stars=args.max_stars)
    result = run(app.osc.port, cases, deadline=args.deadline)
    root.removeHandler(handler)

    from pythonosc.osc_message_builder import OscMessageBuilder
    status = run(app.osc.port, [Case(OscMessageBuilder("/status").build().dgram, 1, "/status")],
                 deadline=5.0)
    malformed = sum(1 for c in cases if c.expected == 0)
    fails_and_malformed = max(1, malformed + result.replies)  # upper bound on bad messages
    print(f"dreamsampler from {Path(dreamsampler.__file__).parent}")
    print(f"datagrams sent: {result.sent} ({malformed} malformed) in {result.seconds:.1f} s")
    print(f"well-formed messages: {result.well_formed_messages}, without a reply: "
          f"{result.without_reply} {dict(sorted(result.kinds_without_reply.items()))}")
    print(f"extra replies: {result.extra_replies}; malformed datagrams answered: "
          f"{result.malformed_answered}")
    print(f"log: {counter.bytes} bytes, {counter.bytes / max(1, len(cases)):.0f} bytes per "
          f"datagram, {counter.bytes / fails_and_malformed:.0f} per bad one (replies + malformed)")
    print(f"/status after the fuzz: {'answered' if status.without_reply == 0 else 'SILENT'}")
    t0 = time.monotonic()
    asyncio.run_coroutine_threadsafe(app.close(), loop).result(60)
    print(f"closed in {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    main()
