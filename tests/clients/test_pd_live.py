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


def _harness(tmp_path: Path, server_port: int, reply_port: int, script: str,
             on_loaded: str = "", quit_after_ms: int = 100, quit_on_fail: bool | str = True
             ) -> Path:
    """A patch with [dreamsampler <server> <reply>] that runs ``script`` (a message box body)
    500 ms after load, prints replies and quits ``quit_after_ms`` after a clip is loaded (running
    ``on_loaded`` first, when given) or, with ``quit_on_fail``, after a command failed (an
    address such as ``"/gen"``: after that command failed, the reply the test waits for)."""
    text = f"""#N canvas 0 0 400 300 12;
#X obj 10 10 dreamsampler {server_port} {reply_port};
#X obj 10 40 loadbang;
#X obj 10 70 delay 500;
#X msg 10 100 {_to_inlet(script)};
#X obj 300 10 r dsin;
#X obj 10 180 print REPLY;
#X obj 150 150 t f;
#X obj 150 180 print LOADED;
#X obj 150 210 delay {quit_after_ms};
#X msg 150 240 \\; pd quit;
#X obj 250 150 route fail;
#X obj 150 120 t b;
#X connect 1 0 2 0;
#X connect 2 0 3 0;
#X connect 4 0 0 0;
#X connect 0 0 5 0;
#X connect 0 1 6 0;
#X connect 6 0 7 0;
#X connect 6 0 11 0;
#X connect 11 0 8 0;
#X connect 8 0 9 0;
#X connect 0 0 10 0;
"""
    objects = 12
    if on_loaded:
        text += f"#X msg 300 180 {_to_inlet(on_loaded)};\n#X connect 6 0 {objects} 0;\n"
        objects += 1
    if isinstance(quit_on_fail, str):  # [route fail] -> [route /gen] -> quit
        text += f"#X obj 250 180 route {quit_on_fail};\n#X connect 10 0 {objects} 0;\n"
        text += f"#X connect {objects} 0 11 0;\n"
    elif quit_on_fail:
        text += "#X connect 10 0 11 0;\n"
    path = tmp_path / "harness.pd"
    path.write_text(text)
    return path


def _to_inlet(script: str) -> str:
    """``\\; ds-seed 7`` (a control of the patch) → ``\\; dsin seed 7``: to the abstraction's
    inlet, which routes it to that copy's ``$0-ds-seed``."""
    return script.replace("\\; ds-", "\\; dsin ")


def _replies(console: str) -> list[list[str]]:
    """The printed replies as words (Pd prints a space inside a symbol as ``\\ ``)."""
    return [line.split()[1:] for line in console.splitlines() if line.startswith("REPLY:")]


def _text(reply: list[str]) -> str:
    return " ".join(reply).replace("\\", "")


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
    # a concept typed and cleared again ("symbol": the empty symbol) sends no concept option
    script = ("\\; ds-concept symbol nope \\; ds-concept symbol "
              "\\; ds-lock 1 \\; ds-seed 7 \\; ds-steps 2 \\; ds-duration 1 "
              "\\; ds-prompt list warm analog bass \\; ds-generate bang")
    # the typed concept is loaded on the server and fails (no such folder): quit on the clip only
    console = _run_pd(_harness(tmp_path, server.port, reply_port, script, quit_on_fail=False),
                      timeout=60)
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
    assert not record.get("concept") and not record.get("bars"), "bars 0: duration is used"
    frames = sf.info(path).frames
    assert f"LOADED: {frames}" in console, "the clip was loaded into the patch's array"
    assert any(r[0] == "progress" for r in replies), "registered clients get /progress"
    assert "error" not in console, console


def test_pd_transfer_of_an_input_clip(server: RunningServer, tmp_path: Path) -> None:
    """The Transfer button sends /transfer <input> <prompt atoms> ... strength <f>; a bars value
    above 0 makes a loop of that many bars at the session tempo (duration is then ignored)."""
    from tests.conftest import write_pluck

    write_pluck(server.input_dir / "pluck.wav")
    script = ("\\; ds-lock 1 \\; ds-steps 2 \\; ds-duration 1 \\; ds-bars 1 \\; ds-strength 0.3 "
              "\\; ds-input symbol pluck.wav \\; ds-prompt list dub reggae \\; ds-transfer bang")
    console = _run_pd(_harness(tmp_path, server.port, _free_udp_port(), script), timeout=60)
    done = next((r for r in _replies(console) if r[:2] == ["done", "/transfer"]), None)
    assert done is not None, console
    record = json.loads(Path(done[3]).with_suffix(".json").read_text())
    assert record["prompt"] == "dub reggae" and record["strength"] == 0.3
    assert record["input_path"] == str(server.input_dir / "pluck.wav")
    assert record["bars"] == 1 and record["duration"] == 2.0, "one bar at 120 BPM"


def test_pd_failure_reaches_the_patch(server: RunningServer, tmp_path: Path) -> None:
    """A bad value comes back as /fail to the patch (status), and the server keeps serving."""
    script = ("\\; ds-lock 1 \\; ds-steps 2 \\; ds-duration 30 "
              "\\; ds-prompt list dub \\; ds-generate bang")
    # the patch loads the typed concept first (/concept/load fails too): wait for /gen's reply
    console = _run_pd(_harness(tmp_path, server.port, _free_udp_port(), script,
                               quit_on_fail="/gen"), timeout=30)
    fail = next((r for r in _replies(console) if r[:2] == ["fail", "/gen"]), None)
    assert fail is not None and fail[1] == "/gen", console
    assert "exceeds" in " ".join(fail), fail
    with server.client() as c:
        assert c.request("/status", timeout=5)[-1].address == "/status.reply"


def test_pd_concept_reaches_the_server(server: RunningServer, tmp_path: Path) -> None:
    """A concept name in the symbol box is sent as the concept option (an unloaded one fails
    with its name)."""
    script = ("\\; ds-lock 1 \\; ds-steps 2 \\; ds-duration 1 "
              "\\; ds-concept symbol no-such-concept \\; ds-prompt list dub \\; ds-generate bang")
    # the patch loads the typed concept first (/concept/load fails too): wait for /gen's reply
    console = _run_pd(_harness(tmp_path, server.port, _free_udp_port(), script,
                               quit_on_fail="/gen"), timeout=30)
    fail = next((r for r in _replies(console) if r[:2] == ["fail", "/gen"]), None)
    assert fail is not None and fail[1] == "/gen", console
    assert "no-such-concept" in " ".join(fail), fail


def test_pd_live_controls_reach_the_server(tmp_path: Path) -> None:
    """Preset trigger, jam, stop and play from the patch, against a server with presets and no
    audio device: the preset's clip is delivered and loaded; /jam on and /play fail with the
    server's reason (no device), /stop succeeds and turns the jam toggle off without sending."""
    from tests.conftest import make_config, run_server
    from tests.server.test_live_server import write_presets

    write_presets(tmp_path / "presets")
    for server in run_server(make_config(tmp_path)):
        script = ("\\; ds-play bang \\; ds-jam 1 \\; ds-stop bang \\; ds-jam bang "
                  "\\; ds-preset symbol \\; ds-trigger bang "
                  "\\; ds-preset symbol beat \\; ds-trigger bang")
        harness = _harness(tmp_path, server.port, _free_udp_port(), script,
                           on_loaded="\\; ds-play bang", quit_after_ms=1500, quit_on_fail=False)
        console = _run_pd(harness, timeout=60)
        replies = _replies(console)
        done = next((r for r in replies if r[:2] == ["done", "/preset/trigger"]), None)
        assert done is not None, console
        assert Path(done[3]).is_file() and "LOADED:" in console
        jams = [r for r in replies if r[:2] == ["fail", "/jam"]]
        assert len(jams) == 2 and "no audio output device" in _text(jams[0]), console
        assert ["done", "/stop"] in replies and ["done", "/jam", "off"] not in replies
        assert [r for r in replies if r[:2] == ["fail", "/preset/trigger"]] == [], (
            "an empty preset box triggers nothing")
        plays = [r for r in replies if r[:2] == ["fail", "/play"]]
        assert len(plays) == 1, "Play before any clip sends nothing"
        assert plays[0][-1] == done[2] and "no audio output device" in _text(plays[0])


def test_pd_continue_inpaint_and_concept_load_reach_the_server(server: RunningServer,
                                                               tmp_path: Path) -> None:
    """Continue and Inpaint send their whole message (clip, bars, prompt, options, unit) and
    the server parses it: before any clip exists it answers that the input does not exist (the
    prompt, options and unit were accepted); a typed concept is loaded (/concept/load)."""
    script = ("\\; ds-lock 1 \\; ds-steps 2 \\; ds-extend 2 \\; ds-from 0.5 \\; ds-to 1 "
              "\\; ds-concept symbol no-such-concept "
              "\\; ds-prompt list dub \\; ds-continue bang \\; ds-inpaint bang")
    console = _run_pd(_harness(tmp_path, server.port, _free_udp_port(), script,
                               quit_after_ms=1500), timeout=30)
    fails = {r[1]: _text(r) for r in _replies(console) if r[0] == "fail"}
    assert "no-such-concept" in fails.get("/concept/load", ""), console
    for address in ("/continue", "/inpaint"):
        assert "no-clip-yet" in fails.get(address, "") and "no such file" in fails[address], (
            console)


def test_two_copies_at_once_keep_to_themselves(server: RunningServer, tmp_path: Path) -> None:
    """Two copies of the abstraction in one Pd, each with its own reply port: their names and
    arrays are $0-local, so each sends its own prompt and seed, gets only its own /done and
    loads its own clip."""
    ports = [_free_udp_port(), _free_udp_port()]
    scripts = [("\\; dsin0 lock 1 \\; dsin0 seed 11 \\; dsin0 steps 2 \\; dsin0 duration 1 "
                "\\; dsin0 prompt list left copy \\; dsin0 generate bang"),
               ("\\; dsin1 lock 1 \\; dsin1 seed 22 \\; dsin1 steps 2 \\; dsin1 duration 1 "
                "\\; dsin1 prompt list right copy \\; dsin1 generate bang")]
    text = f"""#N canvas 0 0 400 300 12;
#X obj 10 10 dreamsampler {server.port} {ports[0]};
#X obj 200 10 dreamsampler {server.port} {ports[1]};
#X obj 10 40 r dsin0;
#X obj 200 40 r dsin1;
#X obj 10 70 print REPLY0;
#X obj 200 70 print REPLY1;
#X obj 10 100 print LOADED0;
#X obj 200 100 print LOADED1;
#X obj 400 10 loadbang;
#X obj 400 40 delay 500;
#X msg 400 70 {scripts[0]} {scripts[1]};
#X obj 400 130 t b;
#X obj 400 160 f;
#X obj 450 160 + 1;
#X obj 400 190 sel 1;
#X obj 400 220 delay 100;
#X msg 400 250 \\; pd quit;
#X connect 2 0 0 0;
#X connect 3 0 1 0;
#X connect 0 0 4 0;
#X connect 1 0 5 0;
#X connect 0 1 6 0;
#X connect 1 1 7 0;
#X connect 8 0 9 0;
#X connect 9 0 10 0;
#X connect 0 1 11 0;
#X connect 1 1 11 0;
#X connect 11 0 12 0;
#X connect 12 0 13 0;
#X connect 13 0 12 1;
#X connect 12 0 14 0;
#X connect 14 0 15 0;
#X connect 15 0 16 0;
"""
    patch = tmp_path / "two.pd"
    patch.write_text(text)
    console = _run_pd(patch, timeout=90)
    assert "killed" not in console and "error" not in console, console
    done = {}
    for copy in (0, 1):
        replies = [line.split()[1:] for line in console.splitlines()
                   if line.startswith(f"REPLY{copy}:")]
        assert ["done", "/notify", "1", str(ports[copy])] in replies, console
        gens = [r for r in replies if r[:2] == ["done", "/gen"]]
        assert len(gens) == 1, (copy, replies)  # its own /done, not the other's
        done[copy] = Path(gens[0][3])
        frames = sf.info(done[copy]).frames
        assert f"LOADED{copy}: {frames}" in console, console
    records = [json.loads(done[c].with_suffix(".json").read_text()) for c in (0, 1)]
    assert [(r["prompt"], r["seed"]) for r in records] == [("left copy", 11), ("right copy", 22)]


def test_pd_echoes_the_notify_cookie_and_then_gets_progress(server: RunningServer,
                                                             tmp_path: Path) -> None:
    """Issue 22: with ``cookie_loopback`` on, the server treats Pd on 127.0.0.1 as a remote
    client: /notify 1 <port> gets /notify.cookie c and no /progress until Pd echoes
    /notify 1 <port> c, which the generated patch does by itself (docs/hardening.md)."""
    server.app.osc.clients.cookie_loopback = True
    reply_port = _free_udp_port()
    script = ("\\; ds-lock 1 \\; ds-seed 7 \\; ds-steps 4 \\; ds-duration 1 "
              "\\; ds-prompt list warm analog bass \\; ds-generate bang")
    console = _run_pd(_harness(tmp_path, server.port, reply_port, script), timeout=60)
    replies = _replies(console)
    assert any(r[0] == "notify.cookie" for r in replies), console
    assert any(r[:2] == ["done", "/gen"] for r in replies), console
    assert any(r[0] == "progress" for r in replies), "confirmed by the echo: /progress streams"
    assert not any(r[0] == "fail" for r in replies), console



def test_pd_sends_the_loop_options_only_when_set(tmp_path: Path) -> None:
    """Issue 18: with their defaults (bpm 0, key empty, conform -1) Pd sends no bpm, key or
    conform; set to 100, Am and 0 they go out. A plain UDP socket stands in for the server and
    python-osc decodes what Pd sent; the contract parses it."""
    from pythonosc.osc_message import OscMessage

    from dreamsampler.server.contract import COMMANDS

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        script = ("\\; ds-lock 1 \\; ds-seed 7 \\; ds-prompt list warm bass "
                  "\\; ds-generate bang \\; ds-bpm 100 \\; ds-key symbol Am \\; ds-conform 0 "
                  "\\; ds-generate bang \\; pd quit")
        console = _run_pd(_harness(tmp_path, sock.getsockname()[1], _free_udp_port(), script),
                          timeout=30)
        sent = []
        while len([m for m in sent if m.address == "/gen"]) < 2:
            sent.append(OscMessage(sock.recv(65536)))
    plain, looped = (COMMANDS["/gen"].parse(list(m.params)) for m in sent
                     if m.address == "/gen")
    assert not {"bpm", "key", "conform"} & set(plain), (plain, console)
    assert (looped["bpm"], looped["key"], looped["conform"]) == (100, "Am", 0), looped


def test_pd_separates_the_last_clip(tmp_path: Path) -> None:
    """Issue 19: after a clip is delivered, ds-separate sends /separate <that clip>; the server
    (a tiny Demucs) answers /done /separate <id> <its .stems folder>."""
    from tests.conftest import make_config, run_server

    for server in run_server(make_config(tmp_path, **{"stems.model": "tiny"})):
        script = ("\\; ds-lock 1 \\; ds-seed 7 \\; ds-steps 2 \\; ds-duration 1 "
                  "\\; ds-prompt list warm analog bass \\; ds-generate bang")
        console = _run_pd(_harness(tmp_path, server.port, _free_udp_port(), script,
                                   on_loaded="\\; ds-separate bang", quit_after_ms=8000),
                          timeout=60)
        replies = _replies(console)
        clip = next(r for r in replies if r[:2] == ["done", "/gen"])[3]
        done = next((r for r in replies if r[:2] == ["done", "/separate"]), None)
        assert done is not None, console
        folder = Path(done[3])
        assert folder.is_dir() and folder.parent == server.output_dir, done
        # the folder is named after the clip Pd sent (made safe: _ -> -)
        assert folder.name == Path(clip).stem.replace("_", "-") + ".stems", (clip, done)
        assert any(f.suffix == ".wav" for f in folder.iterdir()), sorted(folder.iterdir())
