"""Fixtures for the live-performance tests (a private JACK server for the ``jack`` tests)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from tests.jack import jack_available, jack_server

os.environ.setdefault("OMP_NUM_THREADS", "1")

JACK_BACKEND = "rtmidi/UNIX_JACK"


@pytest.fixture(scope="session")
def jack() -> Iterator[str]:
    """A JACK server (dummy backend, 48 kHz, 256-frame periods) for the whole session.

    Session-scoped because PortAudio binds to the JACK server when it initializes; if
    sounddevice was imported earlier, PortAudio is re-initialized so that it finds JACK. Skips
    only if jackd2's tools are not installed.
    """
    if not jack_available():
        pytest.skip("jackd2 tools not installed")
    with jack_server() as name:
        sd = sys.modules.get("sounddevice")
        if sd is not None:  # PortAudio looked for host APIs before JACK was up: look again
            sd._terminate()
            sd._initialize()
        yield name
        # audio clients (PortAudio) must go before jackd stops
        sd = sys.modules.get("sounddevice")
        if sd is not None:
            sd._terminate()
