"""/separate and the stems option over real UDP, on FluidSynth-rendered drums, bass and chords."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("demucs")

from dreamsampler.client import OscClient
from dreamsampler.engine.audio_io import resample
from dreamsampler.engine.request import GenerationResult
from dreamsampler.engine.stems import SOURCES, separate, tiny_htdemucs
from dreamsampler.server.folder_sink import FolderSink
from dreamsampler.server.sinks import SinkError
from tests.band import render_band
from tests.conftest import RunningServer, make_config, run_server

OUTPUT_RATE = 48000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    yield from run_server(make_config(tmp_path, **{
        "stems.model": "tiny", "output.sample_rate": OUTPUT_RATE, "output.subtype": "FLOAT",
        "limits.max_input_mb": 0.5}))


@pytest.fixture
def band(server: RunningServer) -> Path:
    """1.2 s of drums (channel 10), bass and chords at 44.1 kHz in the input folder."""
    path = render_band(server.input_dir / "band.wav", bars=1, bpm=160.0)
    audio, rate = sf.read(path, dtype="float32", frames=int(1.2 * 44100))
    sf.write(path, audio, rate, subtype="FLOAT")
    return path


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".")]


def test_separate_writes_one_file_per_source(server: RunningServer, client: OscClient,
                                             band: Path) -> None:
    replies = client.request("/separate", str(band), timeout=60)
    assert replies[0].address == "/queued"
    job_id = replies[0].args[0]
    done = replies[-1]
    assert done.address == "/done" and done.args[:2] == ("/separate", job_id), done
    folder = Path(done.args[2])
    assert folder.parent == server.output_dir and folder.name == "band.stems"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"band.{s}.wav" for s in SOURCES] + ["band.stems.json"])
    mix, rate = sf.read(band, dtype="float32", always_2d=True)
    # the reference: Demucs on the same weights, resampled to the output rate as the sink does
    expected = separate(tiny_htdemucs(), mix.T.copy(), rate, seed=0)
    for source in SOURCES:
        audio, file_rate = sf.read(folder / f"band.{source}.wav", dtype="float32",
                                   always_2d=True)
        assert file_rate == OUTPUT_RATE
        assert audio.shape == (round(mix.shape[0] * OUTPUT_RATE / rate), 2)
        assert np.isfinite(audio).all()
        np.testing.assert_allclose(audio.T, resample(expected[source], rate, OUTPUT_RATE),
                                   atol=1e-5)
    record = json.loads((folder / "band.stems.json").read_text())
    assert record["model"] == "tiny" and record["class"] == "HTDemucs"
    assert record["demucs_version"] and record["input"] == str(band)
    assert record["sources"] == list(SOURCES) and record["job_id"] == job_id
    assert oct(folder.stat().st_mode & 0o777) == "0o755"
    assert not _leftovers(server.output_dir)


def test_gen_with_stems_delivers_clip_and_stems(server: RunningServer,
                                                client: OscClient) -> None:
    client.send("/notify", 1)
    client.wait_for(lambda r: r.address == "/done" and r.args[0] == "/notify")
    replies = client.request("/gen", "drums and bass", "seed", 3, "duration", 0.6, "stems", 1,
                             timeout=60)
    done = replies[-1]
    assert done.address == "/done" and done.args[0] == "/gen", done
    clip, folder = Path(done.args[2]), Path(done.args[3])
    assert folder == clip.with_name(clip.stem + ".stems") and folder.is_dir()
    clip_audio, clip_rate = sf.read(clip, always_2d=True)
    for source in SOURCES:
        stem, rate = sf.read(folder / f"{clip.stem}.{source}.wav", always_2d=True)
        assert rate == clip_rate and stem.shape[0] == clip_audio.shape[0]
    record = json.loads(clip.with_suffix(".json").read_text())
    assert record["stems"]["folder"] == folder.name and record["stems"]["model"] == "tiny"
    assert record["stems"] is not None and record["stems"].get("sources") == list(SOURCES)
    progress = [r.args[1] for r in replies if r.address == "/progress"]
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)
    assert len(progress) > 4  # the denoising steps and the stems segments


def test_bad_inputs_fail_and_leave_nothing(server: RunningServer, client: OscClient,
                                           band: Path) -> None:
    big = server.input_dir / "big.wav"
    sf.write(big, np.zeros((200_000, 2), dtype=np.float32), 44100, subtype="FLOAT")  # 1.6 MB
    # (a file that is not audio gets the /transfer check, resolve_input: tested there)
    cases = [
        (("/separate", str(server.input_dir / "missing.wav")), "no such file"),
        # loopback may name any readable file (the input policy, issue 20), but it must be audio
        (("/separate", "/etc/hostname"), "not a readable audio file"),
        (("/separate", str(big)), "over the input limit"),
        (("/separate", str(band), "model", str(server.input_dir / "no-model")),
         "stems model"),
        (("/gen", "x", "stems", 2), "above the maximum"),
    ]
    for args, reason in cases:
        final = client.request(*args, timeout=60)[-1]
        assert final.address == "/fail" and final.args[0] == args[0], final
        assert reason in final.args[1], final
    assert not list(server.output_dir.glob("*.stems")) and not _leftovers(server.output_dir)
    # the server keeps serving
    assert client.request("/separate", "band.wav", timeout=60)[-1].address == "/done"


def _separation(stems: dict[str, np.ndarray]) -> GenerationResult:
    return GenerationResult(audio=np.zeros((2, 100), np.float32), sample_rate=44100,
                            record={"input": "/x/loop.wav", "stems": {"model": "tiny"}},
                            stems=stems)


def test_a_write_failing_midway_leaves_nothing(tmp_path: Path) -> None:
    """The third file of the folder cannot be created: the temporary folder is removed and no
    stems folder appears."""
    sink = FolderSink(tmp_path)
    ok = np.full((2, 4410), 0.1, np.float32)
    with pytest.raises(SinkError, match="cannot write the stems"):
        sink.write_separation(_separation({"drums": ok, "bass": ok, "no/such": ok}))
    bad = ok.copy()
    bad[1, 7] = np.inf
    with pytest.raises(SinkError, match="infinite"):
        sink.write_separation(_separation({"drums": ok, "bass": bad}))
    assert list(tmp_path.iterdir()) == []
    folder = sink.write_separation(_separation({"drums": ok, "bass": ok}))
    assert folder.name == "loop.stems"
    assert sink.write_separation(_separation({"drums": ok})).name == "loop-2.stems"


def test_preset_with_stems(server: RunningServer, client: OscClient) -> None:
    presets = server.app.config.live.presets_dir
    presets.mkdir(parents=True, exist_ok=True)
    (presets / "split.yaml").write_text("name: split\nprompt: drums and bass\nseed: 5\n"
                                        "steps: 2\nseconds: 0.5\nstems: true\n")
    server.call(asyncio.to_thread(server.app.service.presets.reload))
    done = client.request("/preset/trigger", "split", timeout=60)[-1]
    assert done.address == "/done" and done.args[0] == "/preset/trigger", done
    clip, folder = Path(done.args[2]), Path(done.args[3])
    assert sorted(p.name for p in folder.glob("*.wav")) == sorted(
        f"{clip.stem}.{s}.wav" for s in SOURCES)
    # /param/stems 1 makes /trigger separate too
    client.request("/param/prompt", "a loop")
    assert client.request("/param/stems", 1)[-1].args == ("/param/stems", 1)
    done = client.request("/trigger", timeout=60)[-1]
    assert len(done.args) == 4 and Path(done.args[3]).is_dir(), done


def test_start_up_removes_a_stems_folder_a_crash_left(tmp_path: Path) -> None:
    dead = 2**22 + 12345  # above the kernel's default pid_max: no such process
    part = tmp_path / f".loop.stems.{dead}.part"
    part.mkdir()
    (part / "loop.drums.wav").write_bytes(b"RIFF")
    kept = tmp_path / "loop.stems"
    kept.mkdir()
    assert FolderSink(tmp_path).clean_orphans() == [part]
    assert not part.exists() and kept.is_dir()


def test_takes_with_stems_separate_the_first_take(server: RunningServer,
                                                  client: OscClient) -> None:
    """``count 2 stems 1``: /done lists both takes (the leading ``.wav`` atoms), then the first
    take's stems folder; the second take has no stems (docs/stems.md, issue 21)."""
    replies = client.request("/gen", "drums and bass", "seed", 3, "duration", 0.6, "stems", 1,
                             "count", 2, timeout=60)
    done = replies[-1]
    assert done.address == "/done" and done.args[0] == "/gen", done
    atoms = [str(a) for a in done.args[2:]]
    paths = [Path(a) for a in atoms if a.endswith(".wav")]
    assert [p.name.rsplit("_", 1)[1] for p in paths] == ["take1.wav", "take2.wav"]
    assert atoms[:2] == [str(p) for p in paths] and len(atoms) == 3
    folder = Path(atoms[2])
    assert folder == paths[0].with_name(paths[0].stem + ".stems") and folder.is_dir()
    assert {f"{paths[0].stem}.{s}.wav" for s in SOURCES} <= {p.name for p in folder.iterdir()}
    assert not paths[1].with_name(paths[1].stem + ".stems").exists()
    first = json.loads(paths[0].with_suffix(".json").read_text())
    second = json.loads(paths[1].with_suffix(".json").read_text())
    assert first["stems"]["model"] == "tiny" and "stems" not in second
