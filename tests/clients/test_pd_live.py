"""The generated Pd patch, run by a real headless Pure Data against a real server (tiny model).

A harness patch instantiates ``pd_patches/dreamsampler.pd`` as an abstraction with the server's
port and a free reply port, drives it through its receive names (prompt atoms, seed 7…) and prints
every reply (``[r ds-reply]`` → ``[print REPLY]``) to stderr, which the test reads. Pd quits itself
once the clip is loaded into the patch's array; a timeout kills it otherwise.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

from dreamsampler.clients import FILES, repository_root
from tests.conftest import RunningServer

PD = shutil.which("pd")
pytestmark = [pytest.mark.pd, pytest.mark.skipif(PD is None, reason="Pure Data (pd) not installed")]
PATCH_DIR = repository_root() / Path(FILES[2]).parent


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_pd(patch: Path, timeout: float) -> str:
    """Run Pd headless on ``patch``; returns stderr (Pd's console). Pd is killed on timeout."""
    assert PD is not None
    proc = subprocess.Popen(
        [PD, "-nogui", "-noaudio", "-nomidi", "-stderr", "-nrt", "-path", str(PATCH_DIR),
         "-open", str(patch)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        out += "\n<killed after timeout>"
    return out


def _harness(tmp_path: Path, server_port: int, reply_port: int, script: str) -> Path:
    """A patch with [dreamsampler <server> <reply>] that runs ``script`` (a message box body)
    500 ms after load, prints replies and quits when a clip is loaded or a command failed."""
    text = f"""#N canvas 0 0 400 300 12;
#X obj 10 10 dreamsampler {server_port} {reply_port};
#X obj 10 40 loadbang;
#X obj 10 70 delay 500;
#X msg 10 100 {script};
#X obj 10 150 r ds-reply;
#X obj 10 180 print REPLY;
#X obj 150 150 r ds-clip-loaded;
#X obj 150 180 print LOADED;
#X obj 150 210 delay 100;
#X msg 150 240 \\; pd quit;
#X obj 250 150 route fail;
#X obj 150 120 t b;
#X connect 1 0 2 0;
#X connect 2 0 3 0;
#X connect 4 0 5 0;
#X connect 6 0 7 0;
#X connect 6 0 11 0;
#X connect 11 0 8 0;
#X connect 8 0 9 0;
#X connect 4 0 10 0;
#X connect 10 0 11 0;
"""
    path = tmp_path / "harness.pd"
    path.write_text(text)
    return path


def _replies(console: str) -> list[list[str]]:
    return [line.split()[1:] for line in console.splitlines() if line.startswith("REPLY:")]


def test_pd_patch_loads_without_errors(tmp_path: Path) -> None:
    patch = tmp_path / "open.pd"
    patch.write_text("#N canvas 0 0 400 300 12;\n#X obj 10 10 dreamsampler 9 9;\n"
                     "#X obj 10 40 loadbang;\n#X msg 10 70 \\; pd quit;\n#X connect 1 0 2 0;\n")
    console = _run_pd(patch, timeout=20)
    for bad in ("couldn't create", "connection failed", "error", "killed"):
        assert bad not in console, console


def test_pd_generates_against_the_real_server(server: RunningServer, tmp_path: Path) -> None:
    """Pd registers its reply port, sends /gen with prompt atoms and float numbers, and gets
    /queued and /done /gen <id> <path>; the WAV is loaded into the patch's array."""
    reply_port = _free_udp_port()
    script = ("\\; ds-lock 1 \\; ds-seed 7 \\; ds-steps 2 \\; ds-duration 1 "
              "\\; ds-prompt list warm analog bass \\; ds-generate bang")
    console = _run_pd(_harness(tmp_path, server.port, reply_port, script), timeout=60)
    replies = _replies(console)
    assert ["done", "/notify", "1", str(reply_port)] in replies, console
    queued = next(r for r in replies if r[0] == "queued")
    job_id, position = queued[1:]
    assert position == "0"
    done = next((r for r in replies if r[:2] == ["done", "/gen"]), None)
    assert done is not None, console
    assert done[2] == job_id
    path = Path(done[3])
    assert path.parent == server.output_dir and path.is_file()
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["prompt"] == "warm analog bass" and record["seed"] == 7
    assert record["num_inference_steps"] == 2 and record["duration"] == 1.0
    frames = sf.info(path).frames
    assert f"LOADED: {frames}" in console, "the clip was loaded into the patch's array"
    assert any(r[0] == "progress" for r in replies), "registered clients get /progress"
    assert "error" not in console, console


def test_pd_transfer_of_an_input_clip(server: RunningServer, tmp_path: Path) -> None:
    """The Transfer button sends /transfer <input> <prompt atoms> ... strength <f>."""
    from tests.conftest import write_pluck

    write_pluck(server.input_dir / "pluck.wav")
    script = ("\\; ds-lock 1 \\; ds-steps 2 \\; ds-duration 1 \\; ds-strength 0.3 "
              "\\; ds-input symbol pluck.wav \\; ds-prompt list dub reggae \\; ds-transfer bang")
    console = _run_pd(_harness(tmp_path, server.port, _free_udp_port(), script), timeout=60)
    done = next((r for r in _replies(console) if r[:2] == ["done", "/transfer"]), None)
    assert done is not None, console
    record = json.loads(Path(done[3]).with_suffix(".json").read_text())
    assert record["prompt"] == "dub reggae" and record["strength"] == 0.3
    assert record["input_path"] == str(server.input_dir / "pluck.wav")


def test_pd_failure_reaches_the_patch(server: RunningServer, tmp_path: Path) -> None:
    """A bad value comes back as /fail to the patch (status), and the server keeps serving."""
    script = ("\\; ds-lock 1 \\; ds-steps 2 \\; ds-duration 30 "
              "\\; ds-prompt list dub \\; ds-generate bang")
    console = _run_pd(_harness(tmp_path, server.port, _free_udp_port(), script), timeout=30)
    fail = next((r for r in _replies(console) if r[0] == "fail"), None)
    assert fail is not None and fail[1] == "/gen", console
    assert "exceeds" in " ".join(fail), fail
    with server.client() as c:
        assert c.request("/status", timeout=5)[-1].address == "/status.reply"
