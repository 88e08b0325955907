"""SIGTERM/SIGINT end running and queued jobs with /fail before OSC closes (issue 12, item 7)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dreamsampler.client import OscClient

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_fails_every_job_before_closing(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGHUP (terminal closed, SSH dropped) included: before issue 22 it killed the server
    with no reply to anyone."""
    port = _free_port()
    (tmp_path / "in").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dreamsampler", "serve", "--model", "tiny", "--device", "cpu",
         "--port", str(port), "--output-dir", str(tmp_path / "out"), "--input-dir",
         str(tmp_path / "in"), "--no-oscquery"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # a runner started under nohup passes SIGHUP ignored, which the server respects
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )
    try:
        with OscClient("127.0.0.1", port) as c:
            deadline = time.monotonic() + 60
            while True:  # until the server answers
                c.send("/version")
                if c.receive(0.5) is not None:
                    break
                assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
            c.send("/notify", 1)
            c.wait_for(lambda r: r.address == "/done")
            for i in range(4):  # one runs, three wait
                c.send("/gen", f"long {i}", "steps", 200, "duration", 8.0, "id", 10 + i)
                c.wait_for(lambda r: r.address == "/queued")
            c.wait_for(lambda r: r.address == "/progress")  # job 10 is in the sampler
            c.send("/sync", 77)  # waits behind the jobs: answered too
            proc.send_signal(sig)
            # each job's /fail (to the sender), then its /job.ended (to /notify clients)
            c.wait_for(lambda r: len([x for x in c.received if x.address == "/job.ended"]) == 4,
                       timeout=60)
            fails = [r for r in c.received if r.address == "/fail" and r.args[0] == "/gen"]
            assert sorted((r.args[0], r.args[2]) for r in fails) == \
                [("/gen", 10 + i) for i in range(4)]
            assert {r.args[1] for r in fails} == {"server shutting down"}
            ended = [r for r in c.received if r.address == "/job.ended"]
            assert sorted(r.args[0] for r in ended) == [10, 11, 12, 13]
            if not any(r.args[:1] == ("/sync",) for r in c.received):
                c.wait_for(lambda r: r.args[:1] == ("/sync",), timeout=30)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_sighup_is_left_alone_when_ignored_at_start() -> None:
    """``nohup dreamsampler serve``: an ignored SIGHUP stays ignored (docs/hardening.md)."""
    from dreamsampler.server.app import stop_signals

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert signal.SIGHUP not in stop_signals()
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        assert stop_signals() == [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    finally:
        signal.signal(signal.SIGHUP, previous)
