"""The command line as a user runs it: real processes, real UDP, real files."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from dreamsampler.client import OscClient

from .serving import CLI, ENV, free_port, serving


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    root = tmp_path_factory.mktemp("serve")
    out, inp = root / "out", root / "in"
    inp.mkdir()
    port = free_port()
    with serving(["serve", "--model", "tiny", "--device", "cpu",
                  "--oscquery-port", "0", "--no-zeroconf",  # not the default 9002, not advertised
                  "--output-dir", str(out), "--input-dir", str(inp), "--steps", "3",
                  "--duration", "1"], port):
        yield port, out, inp


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
    # not a terminal: registered for /notify, the job's progress as plain lines
    job = lines[0].split()[1]
    assert f"/job.started {job}" in lines
    fractions = [float(line.split()[2]) for line in lines if line.startswith("/progress ")]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) == 3
    assert "warning" not in run.stderr


def test_send_warns_about_a_misspelt_key(served: tuple[int, Path, Path]) -> None:
    port, _, _ = served
    run = subprocess.run([*CLI, "send", "--port", str(port), "/gen", "x", "negativ", "hiss",
                          "seed", "3"], env=ENV, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert ("'negativ' is sent as part of the prompt; did you mean the option 'negative'?"
            in run.stderr)
    assert run.stdout.strip().splitlines()[-1].endswith("_x-negativ-hiss_3.wav'")


def test_send_labels_the_status_reply(served: tuple[int, Path, Path]) -> None:
    port, _, _ = served
    run = subprocess.run([*CLI, "send", "--port", str(port), "/status"], env=ENV,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    line = run.stdout.strip().splitlines()[-1]
    assert line.startswith("/status.reply queued=0 running=-1 jobs_done="), line
    assert "model='tiny'" in line and "engine_restarts=0" in line


def test_send_a_misspelt_numeric_key_is_refused(served: tuple[int, Path, Path]) -> None:
    port, _, _ = served
    run = subprocess.run([*CLI, "send", "--port", str(port), "/gen", "x", "sed", "3"],
                         env=ENV, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "unknown option 'sed' (value 3); did you mean 'seed'?" in run.stdout + run.stderr


def test_send_shows_a_progress_bar_on_a_terminal(served: tuple[int, Path, Path]) -> None:
    import pty

    port, _, _ = served
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*CLI, "send", "--port", str(port), "/gen", "tty", "pad"],
                            env={**ENV, "TERM": "xterm"}, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(60) == 0
    text = b"".join(chunks).decode("utf-8", "replace")
    assert "denoising" in text and "100%" in text and "━" in text
    assert "/done '/gen'" in text and "/progress" not in text


def test_send_to_a_port_where_nothing_listens_fails_fast() -> None:
    port = free_port()
    run = subprocess.run([*CLI, "send", "--port", str(port), "/gen", "x"],
                         env=ENV, capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert f"127.0.0.1:{port} (UDP)" in run.stderr
    assert "is 'dreamsampler serve' running there" in run.stderr and "doctor" in run.stderr


def test_misspelt_key_detection() -> None:
    from dreamsampler.cli.send import misspelt_keys

    assert misspelt_keys("/gen", ["x", "negativ", "hiss"]) == [("negativ", "negative")]
    assert misspelt_keys("/gen", ["x", "sed", 3]) == [], "the server refuses it itself"
    assert misspelt_keys("/gen", ["fast", "speed", "garage"]) == [], "no number after it"
    assert misspelt_keys("/gen", ["seed", "pod"]) == [], "the first word is prompt"
    assert misspelt_keys("/status", ["sed", 3]) == []


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


def _serve_fails(tmp_path: Path, *args: str, env: dict[str, str] = ENV,
                 cwd: Path | None = None) -> str:
    """Run ``serve`` expecting it to stop before loading anything; its output (log and error).

    The 30 s timeout bounds "fails fast": the old behaviour retried the hub for ~45 s."""
    run = subprocess.run([*CLI, "serve", "--port", "0", "--oscquery-port", "0",
                          "--output-dir", str(tmp_path / "o"), *args],
                         env=env, capture_output=True, text=True, timeout=30, cwd=cwd)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    return run.stdout + run.stderr


def test_config_problems_are_messages_not_tracebacks(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_bytes(b"osc:\n  host: caf\xe9\n")
    assert "not UTF-8 text (byte 0xe9 on line 2)" in _serve_fails(tmp_path, "--config", str(bad))
    assert "the value is not valid YAML" in _serve_fails(tmp_path, "--set", "osc.port=[")
    assert "output.dir: Value error, an empty path is not allowed" in _serve_fails(
        tmp_path, "--set", "output.dir=")


def test_start_up_names_the_config_file_in_effect(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = {**ENV, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HF_HUB_CACHE": str(tmp_path / "c")}
    out = " ".join(_serve_fails(tmp_path, "--model", "someone/not-cached", env=env,
                                cwd=work).split())
    assert "config: built-in defaults (no ./config.yaml or" in out
    (work / "config.yaml").write_text("limits:\n  queue_size: 3\n")
    out = " ".join(_serve_fails(tmp_path, "--model", "someone/not-cached", env=env,
                                cwd=work).split())
    assert f"config: {work / 'config.yaml'}" in out


def test_unloadable_model_stops_start_up(tmp_path: Path) -> None:
    err = _serve_fails(tmp_path, "--model", str(tmp_path / "nothing"))
    assert "no such folder" in err and "--model tiny" in err
    (tmp_path / "empty").mkdir()
    err = _serve_fails(tmp_path, "--model", str(tmp_path / "empty"))
    assert "has no model_index.json" in err


def test_busy_osc_port_is_named_before_the_model_loads(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        run = subprocess.run([*CLI, "serve", "--model", "someone/not-cached", "--port", str(port),
                              "--oscquery-port", "0", "--no-zeroconf",
                              "--output-dir", str(tmp_path / "o")],
                             env=ENV, capture_output=True, text=True, timeout=30)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert f"OSC port {port} on 127.0.0.1 (UDP) is already in use" in run.stderr
    assert "--port N, or --port 0 for a free one" in run.stderr


def test_offline_first_run_fails_fast_and_says_why(tmp_path: Path) -> None:
    """HF_HUB_OFFLINE with a repo id that is not cached: no download is tried."""
    env = {**ENV, "HF_HUB_CACHE": str(tmp_path / "cache")}
    err = _serve_fails(tmp_path, "--model", "someone/not-cached", env=env)
    assert "offline mode is on (HF_HUB_OFFLINE is set)" in err and "--model tiny" in err


def test_unreachable_hub_says_the_download_failed(tmp_path: Path) -> None:
    """Online, but the hub endpoint refuses connections (a closed local port stands in for a
    machine without network): one probe, then a plain message instead of 30 s of retries."""
    # every *_OFFLINE variable (huggingface_hub also reads TRANSFORMERS_OFFLINE) and proxy goes
    env = {k: v for k, v in ENV.items()
           if not k.upper().endswith("_OFFLINE") and "proxy" not in k.lower()}
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
    env.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(tmp_path / "cache"))
    err = _serve_fails(tmp_path, "--model", "someone/not-cached", env=env)
    assert f"the download failed: cannot reach {endpoint}" in err and "--model tiny" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_a_config_error(tmp_path: Path) -> None:
    err = _serve_fails(tmp_path, "--model", "tiny", "--device", "cuda")
    assert "model.device cuda: torch sees no CUDA GPU" in err


def test_load_model_names_offline_mode() -> None:
    """The engine's own message (used by ``generate``/``train`` paths that skip the CLI check)."""
    from dreamsampler.engine.families import ModelLoadError, load_model

    env_offline = os.environ.get("HF_HUB_OFFLINE")
    assert env_offline == "1"  # tests/conftest.py: no test reaches the network
    with pytest.raises(ModelLoadError, match=r"offline mode is on.*--model tiny"):
        load_model("someone/not-cached", "cpu")


def test_library_log_lines_are_printed_once(capfd: pytest.CaptureFixture[str]) -> None:
    """huggingface_hub adds its own stderr handler and propagates: each line came out twice."""
    import logging

    from huggingface_hub.utils import logging as hf_logging

    from dreamsampler.cli.common import route_library_logs

    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("root: %(message)s"))
    root.addHandler(handler)
    try:
        route_library_logs(("huggingface_hub",))
        hf_logging.get_logger("huggingface_hub.test").warning("retrying in 8s")
    finally:
        root.removeHandler(handler)
    assert capfd.readouterr().err.count("retrying in 8s") == 1


def test_logging_cannot_raise(monkeypatch: pytest.MonkeyPatch,
                              capfd: pytest.CaptureFixture[str]) -> None:
    """Rendering a rich traceback reads source files: with no descriptor left it raised out of
    the handler (and out of the event loop). Now the record falls back to one plain line."""
    import errno
    import logging

    import rich.traceback

    from dreamsampler.cli.common import SafeRichHandler

    def no_files(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(rich.traceback.Traceback, "from_exception", no_files)
    handler = SafeRichHandler(rich_tracebacks=True)
    try:
        raise ConnectionError("accept failed")
    except ConnectionError:
        record = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "socket.accept() out "
                                   "of system resource", None, sys.exc_info())
    handler.emit(record)  # does not raise
    assert "ERROR socket.accept() out of system resource" in capfd.readouterr().err


def test_serve_raises_the_open_file_limit() -> None:
    """Soft 256 under a hard 4096: serve raises the soft limit (idle sockets need descriptors)."""
    code = ("import resource; from dreamsampler.cli.serve import raise_open_file_limit; "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096)); raise_open_file_limit(); "
            "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    run = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "4096"


def test_a_bad_concepts_autoload_entry_is_a_message_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from dreamsampler.cli import main

    (tmp_path / "concepts").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"id": "tiny", "device": "cpu"}, "osc": {"port": 0},
        "oscquery": {"enabled": False}, "output": {"dir": str(tmp_path / "out")},
        "concepts_dir": str(tmp_path / "concepts"), "concepts_autoload": ["ghost"],
        "live": {"presets_dir": str(tmp_path / "presets")},
    }))
    assert main(["serve", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "dreamsampler: concept:" in err and "ghost" in err and "Traceback" not in err


def test_serve_help_lists_every_tiny_build_and_an_unknown_one_is_refused(
        tmp_path: Path) -> None:
    from dreamsampler.engine.catalog import TINY_NAMES

    run = subprocess.run([*CLI, "serve", "--help"], env=ENV, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0
    assert all(f"'{name}'" in run.stdout for name in TINY_NAMES), run.stdout
    err = _serve_fails(tmp_path, "--model", "tiny:nope")
    assert "no such tiny build" in err and "'tiny:sa3'" in err
