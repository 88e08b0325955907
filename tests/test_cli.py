"""The command line as a user runs it: real processes, real UDP, real files."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from dreamsampler.client import OscClient

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
CLI = [sys.executable, "-m", "dreamsampler"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    root = tmp_path_factory.mktemp("serve")
    out, inp = root / "out", root / "in"
    inp.mkdir()
    port = _free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--model", "tiny", "--device", "cpu", "--port", str(port),
         "--oscquery-port", "0", "--no-zeroconf",  # never the default 9002, never advertised
         "--output-dir", str(out), "--input-dir", str(inp), "--steps", "3", "--duration", "1"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        with OscClient("127.0.0.1", port) as c:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                c.send("/version")
                if c.receive(0.5) is not None:
                    break
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        yield port, out, inp
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, "serve exits cleanly on Ctrl-C"


def test_serve_and_send(served: tuple[int, Path, Path]) -> None:
    port, out, _ = served
    run = subprocess.run(
        [*CLI, "send", "--port", str(port), "/gen", "warm analog bass", "seed", "7"],
        env=ENV, capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[0].startswith("/queued ") and lines[-1].startswith("/done '/gen' ")
    path = Path(lines[-1].split("'")[-2])
    assert path.parent == out and path.name.endswith("_warm-analog-bass_7.wav")
    assert sf.info(path).frames == 44100  # 1 s written at the default 44.1 kHz


def test_send_reports_failures(served: tuple[int, Path, Path]) -> None:
    port, _, _ = served
    run = subprocess.run([*CLI, "send", "--port", str(port), "/gen", "x", "steps", "0"],
                         env=ENV, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and run.stdout.startswith("/fail '/gen' ")


@pytest.mark.skipif(shutil.which("oscsend") is None, reason="liblo-tools not installed")
def test_liblo_oscsend(served: tuple[int, Path, Path]) -> None:
    """liblo's oscsend (as a shell script or another app would send): typed args, no reply."""
    port, out, _ = served
    before = set(out.glob("*.wav"))
    subprocess.run(["oscsend", "localhost", str(port), "/gen", "sfsi", "liblo", "3.0", "seed", "5"],
                   check=True, timeout=10)
    with OscClient("127.0.0.1", port) as c:
        assert c.request("/sync", 1, timeout=30)[-1].args == (1,)
    new = set(out.glob("*.wav")) - before
    assert len(new) == 1 and next(iter(new)).name.endswith("_liblo-3_5.wav")


def test_generate_without_server(tmp_path: Path) -> None:
    run = subprocess.run(
        [*CLI, "generate", "glassy pad", "--model", "tiny", "--device", "cpu", "--seed", "3",
         "--steps", "2", "--duration", "0.5", "--output-dir", str(tmp_path), "--name", "pad"],
        env=ENV, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()) == tmp_path / "pad.wav"
    assert sf.info(tmp_path / "pad.wav").frames == 22050  # 0.5 s at 44.1 kHz
    assert (tmp_path / "pad.json").exists()


def test_bad_config_stops_start_up(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("osc:\n  port: 9000\n  hots: 0.0.0.0\n")
    run = subprocess.run([*CLI, "serve", "--config", str(cfg)], env=ENV, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2
    assert str(cfg) in run.stderr and "osc.hots: Extra inputs are not permitted" in run.stderr


def test_unloadable_model_stops_start_up(tmp_path: Path) -> None:
    run = subprocess.run([*CLI, "serve", "--model", str(tmp_path / "nothing"), "--port", "0",
                          "--oscquery-port", "0", "--no-zeroconf",
                          "--output-dir", str(tmp_path / "o")],
                         env=ENV, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "cannot read model_index.json" in run.stderr
