"""``dreamsampler conform`` and ``generate --bpm --key --bars`` as a user runs them: real
processes, real files (the conform's musical checks are in tests/engine/test_conform.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import soundfile as sf

from dreamsampler.engine.bars import bar_samples, read_loop_info
from tests.engine.test_conform import LOOPS
from tests.music import render_loop
from tests.test_cli import CLI, ENV


def test_conform_a_file(tmp_path: Path) -> None:
    source = render_loop(LOOPS, 117, 4, "minor")
    out = tmp_path / "gm120.wav"
    run = subprocess.run([*CLI, "conform", str(source), "--bpm", "120", "--key", "G minor",
                          "--bars", "4", "-o", str(out)], env=ENV, capture_output=True,
                         text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()) == out
    assert sf.info(out).frames == bar_samples(4, 120, 44100)
    info = read_loop_info(out)
    assert info is not None and info.bpm == 120 and info.beats == 16
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["conform"]["applied"]["semitones"] == 3
    # a bad key: a clear error, nothing written
    bad = tmp_path / "bad.wav"
    run = subprocess.run([*CLI, "conform", str(source), "--key", "H minor", "-o", str(bad)],
                         env=ENV, capture_output=True, text=True, timeout=180)
    assert run.returncode == 1 and "key 'H minor'" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gm120.json", "gm120.wav"]


def test_generate_with_bpm_key_bars(tmp_path: Path) -> None:
    run = subprocess.run(
        [*CLI, "generate", "dark techno", "--model", "tiny", "--device", "cpu", "--seed", "3",
         "--steps", "2", "--bpm", "96", "--key", "A minor", "--bars", "1",
         "--output-dir", str(tmp_path), "--name", "loop"],
        env=ENV, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    path = Path(run.stdout.strip())
    assert path.name == "loop_96bpm_1bars.wav"
    assert sf.info(path).frames == bar_samples(1, 96, sf.info(path).samplerate)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["conform"]["asked"]["key"] == "A minor" and record["bars"] == 1
