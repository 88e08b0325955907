"""Live performance through the running server (no audio device, no MIDI system): bars at the
session tempo, presets, tempo, bad input; MIDI messages fed to the server's live controller."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mido
import pytest
import soundfile as sf
import yaml

from dreamsampler.client import OscClient, Reply
from dreamsampler.config import ConfigError
from dreamsampler.engine.bars import read_loop_info
from dreamsampler.server.app import start_app
from dreamsampler.server.contract import REPLIES
from tests.conftest import RunningServer, make_config, run_server

PRESETS = [
    {"name": "beat", "prompt": "dusty drum loop", "seed": {"mode": "increment", "value": 100},
     "steps": 2, "bars": 1, "sinks": ["folder", "device"]},
    {"name": "drone", "prompt": "low <my-drone> drone", "seed": 5, "steps": 2, "seconds": 0.5,
     "concept": "my-drone", "lora_scale": 0.5},
]
MIDI_MAP = {
    "notes": [
        {"note": 60, "preset": "beat", "velocity": {"param": "guidance", "min": 2.0, "max": 6.0}},
        {"note": 62, "preset": "beat", "cancel_on_release": True},
        {"note": 64, "preset": "no-such-preset"},
    ],
    "ccs": [{"cc": 74, "param": "strength", "min": 0.0, "max": 1.0, "curve": "exp"},
            {"cc": 20, "param": "tempo", "min": 60.0, "max": 180.0}],
    "program_change": {"banks": ["drums"]},
}


def write_presets(root: Path) -> Path:
    """A presets folder with a bank file, a single preset, a refused file and a MIDI map."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "drums.yaml").write_text(yaml.safe_dump([PRESETS[0]]))
    (root / "drone.yaml").write_text(yaml.safe_dump(PRESETS[1]))
    (root / "broken.yaml").write_text("name: broken\nprompt: x\nbars: 1\npromt: typo\n")
    (root / "midi_map.yaml").write_text(yaml.safe_dump(MIDI_MAP))
    return root


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[RunningServer]:
    write_presets(tmp_path / "presets")
    yield from run_server(make_config(tmp_path))


def _final(replies: list[Reply], state: str, address: str) -> Reply:
    final = replies[-1]
    assert final.address == state and final.args[0] == address, replies
    return final


def status_fields(c: OscClient) -> dict[str, Any]:
    """``/status.reply`` by field name (positions come from the contract: fields are appended)."""
    args = c.request("/status", timeout=5)[-1].args
    names = [a.name for a in REPLIES["/status.reply"].args]
    assert len(args) == len(names)
    return dict(zip(names, args, strict=True))


def test_bars_make_loop_files_at_the_session_tempo(live_server: RunningServer) -> None:
    with live_server.client() as c:
        assert _final(c.request("/tempo", 96), "/done", "/tempo").args[1] == 96.0
        path = Path(_final(c.request("/gen", "kick loop", "bars", 1, "steps", 2),
                           "/done", "/gen").args[2])
        assert path.name.endswith("_96bpm_1bars.wav")
        assert sf.info(path).frames == 110250  # 1 bar of 4 beats at 96 BPM = 2.5 s at 44.1 kHz
        info = read_loop_info(path)
        assert info is not None and info.bpm == pytest.approx(96.0) and info.beats == 4
        assert (info.loop_start, info.loop_end) == (0, 110249)
        record = json.loads(path.with_suffix(".json").read_text())
        assert (record["bpm"], record["bars"], record["beats_per_bar"]) == (96.0, 1, 4)
        # session bars drive /trigger; an explicit duration means seconds
        c.request("/param/prompt", "pad")
        assert _final(c.request("/param/bars", 2), "/done", "/param/bars").args[1] == 2
        path = Path(_final(c.request("/trigger"), "/done", "/trigger").args[2])
        assert path.name.endswith("_96bpm_2bars.wav") and sf.info(path).frames == 220500
        path = Path(_final(c.request("/gen", "x", "duration", 0.5), "/done", "/gen").args[2])
        assert "bpm" not in path.name and sf.info(path).frames == 22050
        # 8 bars at 96 BPM = 20 s: beyond limits.max_duration (8 s)
        fail = _final(c.request("/gen", "x", "bars", 8), "/fail", "/gen")
        assert "8 bars at 96 BPM" in fail.args[1]
        device = live_server.app.service.device
        assert device is not None and device.recent  # the device sink keeps them for /play


def test_presets_list_trigger_save(live_server: RunningServer) -> None:
    errors = [str(e) for e in live_server.app.service.presets.errors]
    assert len(errors) == 1 and "broken.yaml" in errors[0] and "promt" in errors[0], errors
    with live_server.client() as c:
        assert c.request("/preset/list", timeout=5)[-1].args == ("drone", "beat")
        seeds = []
        for _ in range(2):
            replies = c.request("/preset/trigger", "beat")
            assert replies[0].address == "/queued"
            done = _final(replies, "/done", "/preset/trigger")
            assert done.args[1] == replies[0].args[0]
            path = Path(done.args[2])
            assert "-beat-" in path.name and path.name.endswith("_120bpm_1bars.wav")
            # the preset names the device, and there is none: /done says so after the path
            assert done.args[3] == "device" and "no audio output device" in done.args[4], done
            record = json.loads(path.with_suffix(".json").read_text())
            assert record["preset"] == "beat" and record["num_inference_steps"] == 2
            seeds.append(record["seed"])
        assert seeds == [100, 101]  # increment policy starting at 100
        # the preset's concept travels in the request: one that is not loaded is refused
        fail = _final(c.request("/preset/trigger", "drone"), "/fail", "/preset/trigger")
        assert "my-drone" in fail.args[1] and "not loaded" in fail.args[1]
        # the device sink is additional: without a device the clip is still in the folder
        fail = _final(c.request("/preset/trigger", "nothing"), "/fail", "/preset/trigger")
        assert "unknown preset 'nothing'" in fail.args[1] and "beat" in fail.args[1]
        # save the session as a preset
        c.request("/param/prompt", "glass", "pad")
        c.request("/param/seed", 9)
        c.request("/param/bars", 4)
        saved = Path(_final(c.request("/preset/save", "my pad"), "/done",
                            "/preset/save").args[1])
        assert saved == live_server.app.config.live.presets_dir / "my pad.yaml"
        data = yaml.safe_load(saved.read_text())
        assert (data["prompt"], data["seed"], data["bars"]) == ("glass pad", 9, 4)
        assert "my pad" in c.request("/preset/list", timeout=5)[-1].args
        assert _final(c.request("/preset/save", "../evil"), "/fail", "/preset/save")
        assert _final(c.request("/preset/save", "beat"), "/fail", "/preset/save")


def test_tempo_and_status_fields(live_server: RunningServer) -> None:
    with live_server.client() as c:
        for bad in (0, 10000, 20):
            fail = _final(c.request("/tempo", bad), "/fail", "/tempo")
            assert "BPM" in fail.args[1]
        assert _final(c.request("/tempo", 90.5), "/done", "/tempo").args[1] == 90.5
        status = status_fields(c)
        live = ("tempo", "tempo_source", "underruns", "unmapped_notes", "jam")
        assert tuple(status[k] for k in live) == (90.5, "internal", 0, 0, 0)


def test_play_jam_learn_without_device_or_midi(live_server: RunningServer) -> None:
    with live_server.client() as c:
        fail = _final(c.request("/play", 999), "/fail", "/play")
        assert "no delivered clip with job id 999" in fail.args[1] and fail.args[2] == 999
        job = c.request("/gen", "x", "steps", 2)[-1].args[1]
        fail = _final(c.request("/play", job, 0), "/fail", "/play")
        assert "no audio output device configured" in fail.args[1] and fail.args[2] == job
        assert "no audio output device" in _final(c.request("/jam", "on"), "/fail", "/jam").args[1]
        assert _final(c.request("/jam", "maybe"), "/fail", "/jam")
        assert _final(c.request("/stop"), "/done", "/stop")
        fail = _final(c.request("/midi/learn", "wobble"), "/fail", "/midi/learn")
        assert "unknown parameter 'wobble'" in fail.args[1]
        fail = _final(c.request("/midi/learn", "strength"), "/fail", "/midi/learn")
        assert "no MIDI input configured" in fail.args[1]
        assert status_fields(c)["queued"] == 0  # still serving
        assert c.request("/midi/ports")[-1] == Reply("/midi.ports", ()), "no MIDI configured"


def test_audio_device_names_without_portaudio(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PortAudio library: an empty /audio.devices list, not an error."""
    from dreamsampler.server import audio_devices

    def no_library() -> list[Any]:
        raise OSError("PortAudio library not found")

    monkeypatch.setattr(audio_devices, "list_devices", no_library)
    assert audio_devices.output_device_names() == []


def test_midi_messages_drive_the_session(live_server: RunningServer) -> None:
    """Messages fed to the server's MIDI edge as MidiInput would (on the loop)."""
    live = live_server.app.midi

    def feed(*messages: mido.Message) -> None:
        async def run() -> None:
            for msg in messages:
                live.handle_midi("test", msg)

        live_server.call(run())

    with live_server.client() as c:
        c.request("/notify", 1)
        feed(mido.Message("note_on", note=60, velocity=127))  # beat, guidance 6 from velocity
        ended = c.wait_for(lambda r: r.address == "/job.ended", 30)[-1]
        assert ended.args[1] == "done"
        record = json.loads(Path(ended.args[2]).with_suffix(".json").read_text())
        assert record["preset"] == "beat" and record["guidance_scale"] == 6.0
        # CC 74 → strength on an exp curve; CC 20 → tempo
        feed(mido.Message("control_change", control=74, value=64),
             mido.Message("control_change", control=20, value=127))
        expected = (2.718281828 ** (3 * 64 / 127) - 1) / (2.718281828 ** 3 - 1)
        assert live_server.app.service.session.strength == pytest.approx(expected, rel=1e-6)
        # unmapped notes are counted; a note mapped to a missing preset is logged, not fatal
        feed(mido.Message("note_on", note=1), mido.Message("note_on", note=64))
        status = status_fields(c)
        assert status["tempo"] == 180.0 and status["unmapped_notes"] == 1
        # note-off cancels the job its note-on queued (cancel_on_release), here while it waits
        # behind a long job
        c.send("/gen", "blocker", "duration", 8, "steps", 200)
        blocker = c.wait_for(lambda r: r.address == "/queued", 5)[-1].args[0]
        feed(mido.Message("note_on", note=62), mido.Message("note_off", note=62))
        ended = c.wait_for(lambda r: r.address == "/job.ended" and r.args[1] == "cancelled", 10)
        assert ended[-1].args[0] != blocker
        assert _final(c.request("/cancel", blocker), "/done", "/cancel")
        # program change picks a bank (jam mode cycles through it)
        feed(mido.Message("program_change", program=0))
        assert live_server.app.service.presets.bank == "drums"


def test_link_without_aalink_stops_start_up(tmp_path: Path) -> None:
    if importlib.util.find_spec("aalink") is not None:
        pytest.skip("aalink is installed")
    config = make_config(tmp_path, **{"live.link": True})
    with pytest.raises(ConfigError, match="aalink"):
        asyncio.run(start_app(config))


def test_invalid_midi_map_stops_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "map.yaml"
    bad.write_text("notes:\n  - {note: C3, preset: x, velocty: 1}\n")
    config = make_config(tmp_path, **{"live.midi_map": str(bad)})
    with pytest.raises(ConfigError, match=r"map.yaml.*velocty"):  # not a hang either
        asyncio.run(asyncio.wait_for(start_app(config), 30))
