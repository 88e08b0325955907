"""``dreamsampler doctor`` against the real server, a dead port and a broken output folder.

The server's ``/audio/devices`` handler is pointed at a fixed list here: listing real devices
imports sounddevice into the test process, and PortAudio only sees a JACK server started before
that import, which the JACK tests need (``tests/server/test_live_server_jack.py`` checks the real
listing).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from dreamsampler.cli import main
from dreamsampler.cli.doctor import FAIL, OK, WARN, run_checks
from dreamsampler.server import audio_devices
from tests.conftest import RunningServer, make_config, run_server


@pytest.fixture(autouse=True)
def _fixed_audio_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio_devices, "output_device_names", lambda: ["Speakers", "system"])


def _by_name(checks: list) -> dict:
    return {c.name: c for c in checks}


def test_doctor_passes_against_a_running_server(server: RunningServer,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    checks = _by_name(run_checks("127.0.0.1", server.port, 5))
    for name in ("server reachable", "version", "model loaded", "output folder", "OSCQuery",
                 "tempo", "concepts", "MIDI ports", "audio devices"):
        assert checks[name].state == OK, checks[name]
    assert "tiny" in checks["model loaded"].detail and "cpu" in checks["model loaded"].detail
    assert str(server.output_dir) in checks["output folder"].detail
    assert checks["tempo"].detail == "120 BPM (internal), 0 audio underruns"
    assert checks["concepts"].detail == "none loaded"
    assert checks["MIDI ports"].detail == "none configured"
    assert checks["audio devices"].detail == "Speakers, system"
    assert main(["doctor", "--port", str(server.port), "--timeout", "5"]) == 0
    out = capsys.readouterr().out
    assert "model loaded" in out and "not available" not in out


def test_doctor_warns_about_a_missing_midi_input(tmp_path: Path) -> None:
    config = make_config(tmp_path, **{"live.midi_in": ["no-such-port"]})
    for server in run_server(config):
        with server.client() as c:
            c.request("/tempo", 97.5)
        checks = _by_name(run_checks("127.0.0.1", server.port, 5))
        assert checks["MIDI ports"].state == WARN
        assert checks["MIDI ports"].detail == "no-such-port (missing)"
        assert checks["tempo"].detail.startswith("97.5 BPM (internal)")
        assert not any(c.failed for c in checks.values())


def test_doctor_fails_clearly_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    assert main(["doctor", "--port", str(port), "--timeout", "0.5"]) == 1
    out = capsys.readouterr().out
    assert "server reachable" in out and FAIL in out and "dreamsampler serve" in out


def test_doctor_fails_on_an_unwritable_output_folder(server: RunningServer) -> None:
    server.output_dir.rmdir()
    server.output_dir.write_text("a file where the folder should be")
    checks = _by_name(run_checks("127.0.0.1", server.port, 5))
    assert checks["output folder"].state == FAIL and checks["output folder"].failed
    assert main(["doctor", "--port", str(server.port)]) == 1
    server.output_dir.unlink()
