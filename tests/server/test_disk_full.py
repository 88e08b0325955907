"""A full disk or a failing sink ends the job with /fail, leaves nothing half-written and shows in
/status; a crash's leftovers are cleaned at start-up (issue 12, item 3)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from dreamsampler.client import OscClient
from dreamsampler.server import folder_sink
from dreamsampler.server.folder_sink import FolderSink
from tests.conftest import make_config, run_server

STATUS_DONE, STATUS_FAILED, STATUS_WRITABLE = 2, 3, 10  # /status.reply positions


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str = "64k") -> Iterator[None]:
    """A real file system of ``size`` at ``path`` (needs the right to mount: root here)."""
    path.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                         capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _status(c: OscClient) -> tuple[Any, ...]:
    return c.request("/status", timeout=10)[-1].args


def test_full_disk_fails_the_job_and_status_says_so(tmp_path: Path) -> None:
    """A 64 KiB tmpfs cannot hold a 1 s clip (264 KB): the job gets /fail naming the full disk,
    nothing is left in the folder, the counters move, /status reports the folder not writable
    (and new jobs are refused up front) until space is back."""
    out = tmp_path / "out"
    with tiny_tmpfs(out):
        for server in run_server(make_config(tmp_path)):
            with server.client() as c:
                reply = c.request("/gen", "warm bass", "seed", 1, timeout=60)
                assert [r.address for r in reply] == ["/queued", "/fail"], reply
                assert reply[-1].args[0] == "/gen" and "disk full" in reply[-1].args[1]
                assert os.listdir(out) == [], "no sidecar, no .part, no WAV left behind"
                status = _status(c)
                assert (status[STATUS_DONE], status[STATUS_FAILED]) == (0, 1)
                assert status[STATUS_WRITABLE] == 0
                refused = c.request("/gen", "again", timeout=10)[-1]
                assert refused.address == "/fail" and "disk full" in refused.args[1]
                subprocess.run(["umount", "-l", str(out)], check=True)  # space is back
                assert _status(c)[STATUS_WRITABLE] == 1
                done = c.request("/gen", "warm bass", "seed", 1, timeout=60)[-1]
                assert done.address == "/done", done
                assert Path(done.args[2]).with_suffix(".json").exists()


def test_unexpected_sink_error_fails_the_job(tmp_path: Path, monkeypatch: Any) -> None:
    """soundfile's short write raises AssertionError (not OSError). Injected at the file-system
    boundary so the test runs without the right to mount: half the WAV is written to the
    temporary file, then the write raises as soundfile does when the disk is full."""
    def short_write(file: Any, data: Any, *args: Any, **kwargs: Any) -> None:
        Path(file).write_bytes(b"RIFF" + bytes(1000))  # the temporary file, half written
        raise AssertionError

    monkeypatch.setattr(folder_sink.sf, "write", short_write)
    for server in run_server(make_config(tmp_path)):
        with server.client() as c:
            reply = c.request("/gen", "x", "seed", 2, timeout=60)
            assert [r.address for r in reply] == ["/queued", "/fail"], reply
            assert reply[-1].args[1].startswith(str(server.output_dir))
            assert "cannot write" in reply[-1].args[1]
            assert list(server.output_dir.iterdir()) == []
            status = _status(c)
            assert (status[STATUS_DONE], status[STATUS_FAILED]) == (0, 1)


def test_start_up_removes_what_a_crash_left(tmp_path: Path) -> None:
    """A sidecar whose WAV never landed and a dead writer's .part go; everything else stays."""
    out = tmp_path / "out"
    out.mkdir()
    orphan = out / "clip_1.json"
    orphan.write_text(json.dumps({"file": "clip_1.wav", "seed": 1}))
    dead_pid = 2**22 + 12345  # above pid_max's default: no such process
    part = out / f".clip_2.wav.{dead_pid}.part"
    part.write_bytes(b"RIFF")
    (out / "clip_3.wav").write_bytes(b"RIFF")
    (out / "clip_3.json").write_text(json.dumps({"file": "clip_3.wav"}))
    (out / "notes.json").write_text(json.dumps({"mine": True}))  # not ours: kept
    (out / f".other.wav.{os.getppid()}.part").write_bytes(b"")  # a live writer: kept
    for _server in run_server(make_config(tmp_path)):
        assert sorted(p.name for p in out.iterdir()) == sorted(
            ["clip_3.wav", "clip_3.json", "notes.json", f".other.wav.{os.getppid()}.part"])


def test_clean_orphans_leaves_a_folder_it_cannot_read(tmp_path: Path) -> None:
    assert FolderSink(tmp_path / "missing").clean_orphans() == []


def test_the_disk_full_guard_sizes_each_clip_by_its_own_length(tmp_path: Path) -> None:
    """After a 10 s clip did not fit a 256 KiB file system, a 1 s clip (about 190 KB) is still
    accepted and written; a 10 s job is refused up front, naming its own size."""
    from dreamsampler.engine.request import GenerationRequest, GenerationResult
    from dreamsampler.server.delivery import Delivery
    from dreamsampler.server.sinks import SinkError

    out = tmp_path / "out"
    sr = 16000
    rng = np.random.default_rng(0)

    def clip(seconds: float) -> GenerationResult:
        audio = (0.1 * rng.standard_normal((2, int(seconds * sr)))).astype(np.float32)
        return GenerationResult(audio, sr, {"prompt": "x", "seed": 1})

    def job(seconds: float) -> Delivery:
        return Delivery(GenerationRequest(prompt="x", duration=seconds))

    with tiny_tmpfs(out, "256k"):
        sink = FolderSink(out, "FLOAT")
        with pytest.raises(SinkError, match="disk full"):
            sink.write(clip(10.0))  # 1.28 MB
        assert os.listdir(out) == []
        with pytest.raises(SinkError, match=r"disk full .* a 10 s clip needs about 1345536"):
            sink.check(job(10.0))
        sink.check(job(1.0))
        assert sink.status()["output_writable"] is True
        path = sink.write(clip(1.0))
        assert sf.info(path).frames == sr
        sink.check(job(10.0))  # a success forgets the failed clip: the write itself decides
