"""``dreamsampler doctor`` against the real server, a dead port and a broken output folder."""

from __future__ import annotations

import socket

import pytest

from dreamsampler.cli import main
from dreamsampler.cli.doctor import FAIL, NA, OK, run_checks
from tests.conftest import RunningServer


def _by_name(checks: list) -> dict:
    return {c.name: c for c in checks}


def test_doctor_passes_against_a_running_server(server: RunningServer,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    checks = _by_name(run_checks("127.0.0.1", server.port, 5))
    for name in ("server reachable", "version", "model loaded", "output folder", "OSCQuery"):
        assert checks[name].state == OK, checks[name]
    assert "tiny" in checks["model loaded"].detail and "cpu" in checks["model loaded"].detail
    assert str(server.output_dir) in checks["output folder"].detail
    for name in ("concepts", "MIDI ports", "audio devices", "tempo source"):
        assert checks[name].state in (OK, NA), checks[name]
    assert main(["doctor", "--port", str(server.port), "--timeout", "5"]) == 0
    out = capsys.readouterr().out
    assert "model loaded" in out and "not available" in out


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
