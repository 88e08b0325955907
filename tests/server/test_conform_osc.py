"""Loops that lock, over real UDP (issue 18): ``/conform`` of a FluidSynth loop rides the job
path (``/queued`` then ``/done /conform id path``) and comes back bar-exact, on the target grid
and transposed (checked with librosa onsets and STFT chroma, which conform does not use);
``/gen … bpm key bars`` is bar-exact and its sidecar records what was asked and applied; bad
input gets ``/fail`` with nothing written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dreamsampler.client import OscClient
from dreamsampler.engine.bars import bar_samples, read_loop_info
from tests.conftest import RunningServer, make_config, run_server
from tests.engine.test_conform import LOOPS, chroma_interval, grid_deviation
from tests.music import render_loop


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, OscClient]]:
    tmp = tmp_path_factory.mktemp("conform")
    config = make_config(tmp, **{"output.sample_rate": 44100, "output.subtype": "FLOAT"})
    (tmp / "presets").mkdir()
    (tmp / "presets" / "loops.yaml").write_text(
        "- name: locked\n  prompt: dub chords\n  bars: 1\n  steps: 2\n  bpm: 100\n"
        "  key: Bb major\n  seed: 4\n")
    for running in run_server(config):
        with running.client() as client:
            yield running, client


def _outputs(server: RunningServer) -> list[Path]:
    return sorted(p for p in server.output_dir.rglob("*") if p.is_file())


def test_conform_over_osc_117_em_to_120_gm(rig: tuple[RunningServer, OscClient]) -> None:
    server, client = rig
    source = shutil.copy(render_loop(LOOPS, 117, 4, "minor"), server.input_dir / "em117.wav")
    replies = client.request("/conform", "em117.wav", "bpm", 120.0, "key", "G minor", "bars", 4,
                             timeout=120)
    assert replies[0].address == "/queued", replies
    final = replies[-1]
    assert final.address == "/done" and final.args[:2] == ("/conform", replies[0].args[0])
    path = Path(final.args[2])
    out, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == 44100 and out.shape == (bar_samples(4, 120, 44100), 2)
    src, _ = sf.read(source, dtype="float32", always_2d=True)
    assert np.median(np.abs(grid_deviation(out.T, sr, 120))) < 0.02
    assert chroma_interval(src.T, out.T, sr) == 3
    info = read_loop_info(path)
    assert info is not None and info.bpm == 120 and info.beats == 16
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["process"] == "conform" and record["bars"] == 4 and record["bpm"] == 120
    assert record["conform"]["asked"]["key"] == "G minor"
    assert record["conform"]["applied"]["semitones"] == 3
    assert record["conform"]["before"]["key"] == "E minor"


def test_conform_bad_input_fails_and_writes_nothing(
        rig: tuple[RunningServer, OscClient], tmp_path: Path) -> None:
    server, client = rig
    before = _outputs(server)
    for args, reason in ((("missing.wav", "bpm", 120.0), "no such file"),
                         (("em117.wav", "key", "H minor"), "key"),
                         (("em117.wav", "meter", "7/8"), "meter")):
        replies = client.request("/conform", *args)
        assert [r.address for r in replies] == ["/fail"], replies
        assert replies[0].args[0] == "/conform" and reason in replies[0].args[1]
    (server.input_dir / "silence.wav").write_bytes(b"")
    sf.write(server.input_dir / "silence.wav", np.zeros((44100, 2), np.float32), 44100)
    replies = client.request("/conform", "silence.wav", "bpm", 120.0)
    assert replies[0].address == "/queued" and replies[-1].address == "/fail", replies
    assert "silent" in replies[-1].args[1]
    assert _outputs(server) == before
    assert client.request("/status")[-1].address == "/status.reply"  # still serving


def test_gen_bpm_key_bars_is_bar_exact_and_recorded(
        rig: tuple[RunningServer, OscClient]) -> None:
    _, client = rig
    replies = client.request("/gen", "dark techno loop", "bpm", 96.0, "key", "A minor",
                             "bars", 2, "seed", 3, timeout=120)
    assert replies[-1].address == "/done", replies
    path = Path(replies[-1].args[2])
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    assert audio.shape[0] == bar_samples(2, 96, sr)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["bpm"] == 96 and record["bars"] == 2 and record["key"] is not None
    assert record["conform"]["asked"] == {"bpm": 96, "key": "A minor", "bars": 2,
                                          "meter": "4/4"}
    applied = record["conform"]["applied"]
    assert applied["samples"] == bar_samples(2, 96, record["model_sample_rate"])
    assert "tempo_ratio" in applied and "semitones" in applied
    assert record["prompt"] == "dark techno loop"  # the tiny MusicLDM family takes no tags
    assert info_bpm(path) == 96


def info_bpm(path: Path) -> float:
    info = read_loop_info(path)
    assert info is not None
    return info.bpm


def test_gen_conform_0_only_cuts(rig: tuple[RunningServer, OscClient]) -> None:
    _, client = rig
    replies = client.request("/gen", "pad", "bpm", 100.0, "bars", 1, "conform", 0, timeout=60)
    assert replies[-1].address == "/done", replies
    path = Path(replies[-1].args[2])
    record = json.loads(path.with_suffix(".json").read_text())
    assert "conform" not in record and record["bpm"] == 100 and record["bars"] == 1
    audio, sr = sf.read(path, always_2d=True)
    assert audio.shape[0] == bar_samples(1, 100, sr)


def test_preset_with_bpm_and_key_is_conformed(rig: tuple[RunningServer, OscClient]) -> None:
    _, client = rig
    replies = client.request("/preset/trigger", "locked", timeout=60)
    assert replies[-1].address == "/done", replies
    path = Path(replies[-1].args[2])
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["preset"] == "locked" and record["bpm"] == 100 and record["bars"] == 1
    assert record["conform"]["asked"]["key"] == "Bb major"
    assert sf.info(path).frames == bar_samples(1, 100, 44100)


def test_preset_refuses_a_bad_key() -> None:
    from pydantic import ValidationError

    from dreamsampler.server.presets import Preset

    with pytest.raises(ValidationError, match="key 'H major'"):
        Preset.model_validate({"name": "p", "prompt": "x", "bars": 1, "key": "H major"})
    with pytest.raises(ValidationError, match="meter"):
        Preset.model_validate({"name": "p", "prompt": "x", "bars": 1, "meter": "7/8"})


def test_session_key_and_trigger(rig: tuple[RunningServer, OscClient]) -> None:
    _, client = rig
    assert client.request("/param/key", "H minor")[-1].address == "/fail"
    for message in (("/param/prompt", "pad"), ("/param/key", "E minor"), ("/param/bars", 1),
                    ("/param/steps", 2)):
        assert client.request(*message)[-1].address == "/done", message
    replies = client.request("/trigger", timeout=60)
    assert replies[-1].address == "/done", replies
    record = json.loads(Path(replies[-1].args[2]).with_suffix(".json").read_text())
    assert record["conform"]["asked"]["key"] == "E minor"
    assert client.request("/param/key", "")[-1].address == "/done"
