"""A private JACK server (dummy backend) for tests that need real audio and MIDI ports.

The server gets a unique name (``jackd -n``) and ``JACK_DEFAULT_SERVER`` points this process at
it, so a user's own JACK server is left alone. PortAudio only looks for JACK when sounddevice is
first imported: start the server before anything imports sounddevice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

SAMPLE_RATE = 48000
PERIOD = 256


def jack_available() -> bool:
    """True if ``jackd``, ``jack_wait``, ``jack_connect`` and ``jack_lsp`` are installed."""
    return all(shutil.which(tool) for tool in ("jackd", "jack_wait", "jack_connect", "jack_lsp"))


def jack_cmd(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """Run a JACK command-line tool against the test server (``JACK_DEFAULT_SERVER``)."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          check=False)


def ports() -> list[str]:
    """All JACK port names of the test server."""
    return [p.strip() for p in jack_cmd("jack_lsp").stdout.splitlines() if p.strip()]


def connect(src: str, dst: str) -> None:
    """``jack_connect src dst``; raises RuntimeError with JACK's message on failure."""
    res = jack_cmd("jack_connect", src, dst)
    if res.returncode != 0:
        raise RuntimeError(f"jack_connect {src} {dst} failed: {res.stderr.strip()}")


def wait_for_port(substring: str, timeout: float = 5.0) -> str:
    """The first JACK port whose name contains ``substring``, waiting up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = [p for p in ports() if substring in p]
        if match:
            return match[0]
        time.sleep(0.05)
    raise TimeoutError(f"no JACK port containing {substring!r}; ports: {ports()}")


@contextmanager
def jack_server(name: str | None = None) -> Iterator[str]:
    """Start ``jackd -n NAME --no-realtime -d dummy -r 48000 -p 256``, wait until it is up,
    point ``JACK_DEFAULT_SERVER`` at it, and stop it on exit. Yields the server name."""
    name = name or f"dstest{os.getpid()}"
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    proc = subprocess.Popen(
        ["jackd", "-n", name, "--no-realtime", "-d", "dummy", "-r", str(SAMPLE_RATE),
         "-p", str(PERIOD)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        res = jack_cmd("jack_wait", "-w", "-s", name, "-t", "10", timeout=15)
        if res.returncode != 0 or proc.poll() is not None:
            raise RuntimeError(f"jackd did not start: {res.stdout} {res.stderr}")
        yield name
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if previous is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = previous

