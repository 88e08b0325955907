"""``dreamsampler serve`` as a user starts it, for tests: a real process on a free loopback port,
ready once it answers ``/version``, stopped with Ctrl-C (SIGINT) and expected to exit cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from dreamsampler.client import OscClient

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
CLI = [sys.executable, "-m", "dreamsampler"]


def free_port() -> int:
    """A UDP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(args: list[str], port: int, ready_s: float = 60.0) -> Iterator[subprocess.Popen[str]]:
    """Run ``dreamsampler serve ARGS --port PORT`` (``args`` start with ``serve``; OSCQuery off
    the default port and no Zeroconf advertisement are the caller's to pass) until it answers
    ``/version``; on exit send SIGINT and assert it exits 0 within 30 s."""
    proc = subprocess.Popen([*CLI, *args, "--port", str(port)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with OscClient("127.0.0.1", port) as c:
            deadline = time.monotonic() + ready_s
            while time.monotonic() < deadline:
                c.send("/version")
                if c.receive(0.5) is not None:
                    break
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, "serve exits cleanly on Ctrl-C"
