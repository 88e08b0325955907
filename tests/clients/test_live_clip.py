"""The device's script, embedded in ``max_patches/dreamsampler.amxd`` and taken from its bytes
alone, run by node against a small fake Live Object Model (``fake_lom.js``).

Live cannot run here, so the Live API is the one thing faked (a justified mock): the script that
ships with the device is executed unchanged, and what it calls on the fake LOM and what it shows
in the device's status line are checked: the clip lands on the device's own track in the
selected scene's slot or the next empty one below, and every failure is a status line.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dreamsampler.clients import maxpat, repository_root

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node not installed")
DEVICE = repository_root() / "max_patches" / "dreamsampler.amxd"
FAKE = Path(__file__).with_name("fake_lom.js")
CLIP = "/Users/me/Music/dreamsampler/warm bass 0001.wav"


def _set(slots: list[int], **track: Any) -> dict[str, Any]:
    """A Live set: the device is the first one on track 1 ('Audio'), scene 2 is selected, and
    ``slots`` says which clip slots of that track hold a clip."""
    objects: dict[str, Any] = {
        "live_set": {"id": 2, "counts": {},
                     "props": {"tempo": 120.0, "signature_numerator": 4,
                               "signature_denominator": 4, "current_song_time": 32.0}},
        "live_set tracks 1": {"id": 7, "counts": {"clip_slots": len(slots),
                                                  "arrangement_clips": 0},
                              "props": {"name": "Audio", "has_audio_input": 1,
                                        "is_foldable": 0, "is_frozen": 0, **track}},
        "live_set tracks 1 devices 0": {"id": 9, "counts": {}, "props": {}},
    }
    for i, has_clip in enumerate(slots):
        objects[f"live_set tracks 1 clip_slots {i}"] = {"id": 100 + i, "counts": {},
                                                        "props": {"has_clip": has_clip}}
    return {"version": [12, 1, 0], "this_device": "live_set tracks 1 devices 0",
            "parent": "live_set tracks 1", "selected_scene": "live_set scenes 2",
            "objects": objects}


def _run(scenario: dict[str, Any], messages: list[list[Any]]) -> dict[str, Any]:
    """Run the script embedded in the shipped ``.amxd`` (read from its bytes alone) with
    ``messages`` (``[copy, name, args...]``); returns its outlets, LOM calls and posts."""
    assert NODE is not None
    run = subprocess.run([NODE, str(FAKE), str(DEVICE)],
                         input=json.dumps({**scenario, "messages": messages}),
                         capture_output=True, text=True, timeout=30, check=True)
    return dict(json.loads(run.stdout))


def _status(result: dict[str, Any]) -> str:
    (_copy, index, word, *status), = [o for o in result["outlets"] if o[1] == 0]
    assert (index, word) == (0, "set")
    return " ".join(str(w) for w in status)


def _place(scenario: dict[str, Any], path: str = CLIP) -> tuple[str, list[list[Any]]]:
    """Run the shipped script's ``place <path>``; returns the status line and the LOM calls."""
    result = _run(scenario, [[0, "place", path]])
    text = _status(result)
    assert result["posted"] == [f"dreamsampler: {text}\n"]
    return text, [c for c in result["calls"] if c[0] != "live_app"]


def test_clip_goes_into_the_selected_scene_of_the_device_track() -> None:
    status, calls = _place(_set([0, 0, 0, 0]))
    assert calls == [["live_set tracks 1 clip_slots 2", "create_audio_clip", CLIP]]
    assert status == "placed warm bass 0001.wav in 'Audio' scene 3"


def test_a_full_slot_moves_the_clip_to_the_next_empty_one_below() -> None:
    status, calls = _place(_set([0, 0, 1, 1, 0, 0]))
    assert calls == [["live_set tracks 1 clip_slots 4", "create_audio_clip", CLIP]]
    assert status.endswith("scene 5")


def test_no_empty_slot_below_is_shown_in_the_device() -> None:
    status, calls = _place(_set([0, 0, 1, 1]))
    assert calls == [], "slots above the selected scene are never used"
    assert status.startswith("not placed: no empty clip slot in 'Audio' from scene 3 down")
    assert "warm bass 0001.wav is in the output folder" in status


@pytest.mark.parametrize(("change", "expected"), [
    ({"has_audio_input": 0}, "'Audio' is a MIDI track"),
    ({"is_foldable": 1}, "'Audio' is a group track"),
    ({"is_frozen": 1}, "'Audio' is frozen"),
])
def test_tracks_that_hold_no_audio_clip_are_refused(change: dict[str, int],
                                                   expected: str) -> None:
    status, calls = _place(_set([0, 0, 0], **change))
    assert calls == [] and status.startswith("not placed: " + expected), status


def test_return_track_and_old_live_are_refused() -> None:
    scenario = _set([0, 0, 0])
    scenario["objects"]["live_set return_tracks 0"] = scenario["objects"]["live_set tracks 1"]
    scenario["parent"] = "live_set return_tracks 0"
    status, calls = _place(scenario)
    assert calls == [] and "return and master tracks hold no clips" in status
    old = _set([0, 0, 0])
    old["version"] = [12, 0, 4]
    status, calls = _place(old)
    assert calls == [] and status.startswith("not placed: Live 12.0.4 cannot create clips")
    old["version"] = [11, 3, 20]
    assert "12.0.5 or later" in _place(old)[0]


def test_a_device_inside_a_rack_uses_the_rack_track() -> None:
    """In a rack the canonical parent is a chain; the clip still goes to the track."""
    scenario = _set([1, 0, 0, 0])
    scenario["this_device"] = "live_set tracks 1 devices 0 chains 0 devices 1"
    scenario["parent"] = "live_set tracks 1 devices 0 chains 0"
    scenario["objects"]["live_set tracks 1 devices 0 chains 0"] = {"id": 11, "counts": {},
                                                                   "props": {}}
    status, calls = _place(scenario)
    assert calls == [["live_set tracks 1 clip_slots 2", "create_audio_clip", CLIP]], status


def test_live_refusing_the_file_is_shown() -> None:
    scenario = copy.deepcopy(_set([0, 0, 0]))
    scenario["refuse"] = True
    status, _ = _place(scenario)
    assert status.startswith("not placed: Live refused warm bass 0001.wav in 'Audio' scene 3")


def test_the_shipped_device_carries_the_generated_script() -> None:
    """One file: the script is inside the .amxd (and nowhere beside it)."""
    _, patcher = maxpat.read_amxd(DEVICE.read_bytes())
    texts = [b["box"]["textfile"]["text"] for b in patcher["patcher"]["boxes"]
             if "textfile" in b["box"]]
    assert texts == [maxpat.clip_script().decode()]
    assert not (DEVICE.parent / maxpat.CLIP_SCRIPT).exists()


def _out(result: dict[str, Any], copy: int, outlet: int) -> list[list[Any]]:
    return [o[2:] for o in result["outlets"] if o[0] == copy and o[1] == outlet]


def test_two_copies_claim_their_own_reply_ports_and_register_them() -> None:
    """Two copies in one Max: each binds [udpreceive] to its own port and registers it, so the
    server's replies (sent to the registered port of the sender) never cross over."""
    scenario = {**_set([0, 0]), "copies": 2}
    result = _run(scenario, [[0, "start"], [1, "start"], [0, "tick"], [1, "notifydeleted"],
                             [1, "start"]])
    first, second = _out(result, 0, 1), _out(result, 1, 1)
    port0 = first[0][2]
    assert first[:3] == [["receive", "port", port0], ["send", "/notify", 1, port0],
                         ["send", "/status"]]
    port1 = second[0][2]
    assert port1 != port0 and second[:2] == [["receive", "port", port1],
                                             ["send", "/notify", 1, port1]]
    assert first[3] == ["send", "/notify", 1, port0], "tick: re-registers (server restart)"
    assert second[3] == ["send", "/notify", 0], "a deleted copy unregisters"
    assert second[4] == ["receive", "port", port1], "and its port is free again"


def test_a_remote_server_is_set_from_the_host_and_port_fields() -> None:
    result = _run(_set([0]), [[0, "start"], [0, "host", "192.168.1.20"],
                              [0, "serverport", 9100], [0, "serverport", 0]])
    network = _out(result, 0, 1)
    port = network[0][2]
    assert network[3:] == [
        ["send", "/notify", 0], ["send", "host", "192.168.1.20"], ["send", "port", 9000],
        ["send", "/notify", 1, port],
        ["send", "/notify", 0], ["send", "host", "192.168.1.20"], ["send", "port", 9100],
        ["send", "/notify", 1, port]]
    assert "port 0 is not a UDP port" in " ".join(map(str, _out(result, 0, 0)[-1]))


def test_takes_are_listed_and_the_chosen_one_is_placed() -> None:
    takes = [f"/out/take {i}.wav" for i in range(1, 4)]
    result = _run(_set([0, 0, 0, 0]), [[0, "done", "/gen", 5, *takes], [0, "take", 1]])
    assert _out(result, 0, 2) == [["_parameter_range", "take1", "take2", "take3"], ["set", 0]]
    assert _out(result, 0, 3) == [["replace", takes[1]], ["input", takes[1]],
                                  ["channels", 2]]  # not a readable WAV: stereo
    calls = [c for c in result["calls"] if c[0] != "live_app"]
    assert calls == [["live_set tracks 1 clip_slots 2", "create_audio_clip", takes[1]]]
    one = _run(_set([0]), [[0, "done", "/gen", 6, "/out/one.wav"]])
    assert _out(one, 0, 2) == [], "one clip: no takes menu ('place' places it)"


def test_stems_go_on_new_tracks_next_to_the_device(tmp_path: Path) -> None:
    folder = tmp_path / "groove 0007"
    folder.mkdir()
    for name in ("drums.wav", "bass.wav", "notes.txt"):
        (folder / name).write_bytes(b"")
    scenario = _set([0, 0, 0])
    scenario["objects"]["live_set tracks 2"] = {"id": 8, "counts": {"clip_slots": 3},
                                                "props": {"name": "Keys"}}
    result = _run(scenario, [[0, "done", "/separate", 5, str(folder)]])
    calls = [c for c in result["calls"] if c[0] != "live_app"]
    assert calls == [
        ["live_set", "create_audio_track", 2],
        ["live_set tracks 2", "set", "name", "groove 0007 bass"],
        ["live_set tracks 2 clip_slots 2", "create_audio_clip", f"{folder}/bass.wav"],
        ["live_set", "create_audio_track", 3],
        ["live_set tracks 3", "set", "name", "groove 0007 drums"],
        ["live_set tracks 3 clip_slots 2", "create_audio_clip", f"{folder}/drums.wav"],
    ]
    assert _status(result) == "placed stems bass, drums of groove 0007 on new tracks 3-4"


def test_a_clip_with_stems_places_the_stems_and_lists_no_takes(tmp_path: Path) -> None:
    """``/done /gen <id> <clip> <stems folder> <sink> <error>`` (the stems option, issue 19, and a
    sink that failed): the folder's stems go on new tracks; neither the folder nor the sink's
    error is a take."""
    folder = tmp_path / "pad 0003.stems"
    folder.mkdir()
    (folder / "drums.wav").write_bytes(b"")
    scenario = _set([0, 0, 0])
    result = _run(scenario, [[0, "done", "/gen", 7, str(tmp_path / "pad 0003.wav"), str(folder),
                              "device", "no audio device"]])
    assert _out(result, 0, 2) == [], "one clip: no takes menu"
    calls = [c for c in result["calls"] if c[0] != "live_app"]
    assert calls == [
        ["live_set", "create_audio_track", 2],
        ["live_set tracks 2", "set", "name", "pad 0003.stems drums"],
        ["live_set tracks 2 clip_slots 2", "create_audio_clip", f"{folder}/drums.wav"],
    ]


def test_arrangement_places_at_the_playhead_on_live_12_2() -> None:
    scenario = _set([0, 0, 0])
    scenario["version"] = [12, 2, 0]
    result = _run(scenario, [[0, "mode", "arrangement"], [0, "place", CLIP]])
    calls = [c for c in result["calls"] if c[0] != "live_app"]
    assert calls == [["live_set tracks 1", "create_audio_clip", CLIP, 32.0]]
    assert _status(result) == "placed warm bass 0001.wav in 'Audio' arrangement at beat 32"
    scenario["version"] = [12, 1, 3]
    old = _run(scenario, [[0, "mode", "arrangement"], [0, "place", CLIP]])
    assert [c for c in old["calls"] if c[0] != "live_app"] == []
    assert "cannot create Arrangement clips (12.2 or later can)" in _status(old)


def test_capture_records_bars_then_continues_it() -> None:
    """capture → continue: the script sizes the capture for 2 bars at the set's tempo (120 BPM,
    4/4: 4 s), records, writes the file into the server's output folder and presses Continue
    with it as the input; the device then sends /continue with that file (checked by running
    the device patch in the Max simulator with the script's outputs)."""
    from dreamsampler.server.contract import COMMANDS, REPLIES
    from tests.clients.maxsim import MaxSim

    names = [a.name for a in REPLIES["/status.reply"].args]
    status_args: list[Any] = ["x"] * len(names)
    status_args[names.index("output_dir")] = "/Users/me/Music/dreamsampler"
    result = _run(_set([0]), [[0, "start"],
                              [0, "outputdir", names.index("output_dir"), *status_args],
                              [0, "capture", 2, "Continue"], [0, "captured"]])
    port = _out(result, 0, 1)[0][2]
    path = f"/Users/me/Music/dreamsampler/capture-{port}-1.wav"
    capture = _out(result, 0, 4)
    assert capture == [["size", 4000], ["record", 1], ["wait", 4000], ["write", path],
                       ["press", "Continue"]]
    assert _out(result, 0, 3) == [["input", path]]

    sim = MaxSim(maxpat.read_amxd(DEVICE.read_bytes())[1])
    sim.loadbang()
    for outlet, message in [(4, capture[0]), (4, capture[1]), (4, capture[2])]:
        sim.script_output(outlet, message)
    assert ("buffer~ ---ds-capture 1000 2", ["size", 4000]) in sim.effects
    assert ("record~ ---ds-capture 2", [1]) in sim.effects and ("delay", [4000]) in sim.effects
    sim.output(sim.find("newobj", "delay"), 0, ["bang"])
    assert ("v8 5 1 @embed 1", ["captured"]) in sim.effects
    sim.script_output(4, capture[3])
    assert ("buffer~ ---ds-capture 1000 2", ["writewave", path]) in sim.effects
    sim.script_output(3, ["input", path])
    sim.script_output(4, capture[4])
    address, args = sim.sent[-1]
    assert address == "/continue" and COMMANDS[address].parse(args)["input_path"] == path


def test_the_preview_plays_a_mono_clip_on_both_sides(tmp_path: Path) -> None:
    """The script reads the channel count from the WAV header (written here by libsndfile, an
    independent writer) and the device's right output takes the left channel for a mono clip
    (play~ outputs zeros on channels a buffer~ lacks, as Cycling '74's reference says)."""
    import numpy as np
    import soundfile as sf

    from tests.clients.maxsim import MaxSim

    mono, stereo = tmp_path / "mono.wav", tmp_path / "stereo.wav"
    sf.write(mono, np.zeros(100, dtype=np.float32), 16000)
    sf.write(stereo, np.zeros((100, 2), dtype=np.float32), 44100, subtype="FLOAT")
    result = _run(_set([0, 0, 0, 0]), [[0, "place", str(mono)], [0, "place", str(stereo)]])
    assert _out(result, 0, 3) == [["channels", 1], ["channels", 2]]
    sim = MaxSim(maxpat.read_amxd(DEVICE.read_bytes())[1])
    sim.loadbang()
    sim.script_output(3, ["channels", 1])
    assert ("selector~ 2 2", [1]) in sim.effects, "mono: the right side plays the left channel"


def test_the_device_echoes_the_notify_cookie_with_its_reply_port() -> None:
    """Issue 22: ``/notify.cookie c`` (routed to the script as ``cookie c``) is answered with
    ``/notify 1 <this copy's reply port> c``; the server parses it as a confirmation."""
    from dreamsampler.server.contract import COMMANDS

    result = _run({**_set([0, 0]), "copies": 2},
                  [[0, "start"], [1, "start"], [1, "cookie", 4242]])
    first, second = _out(result, 0, 1), _out(result, 1, 1)
    port = second[0][2]
    assert port != first[0][2] and second[-1] == ["send", "/notify", 1, port, 4242]
    assert ["send", "/notify", 1, first[0][2], 4242] not in first
    COMMANDS["/notify"].parse(second[-1][2:])


def test_a_capture_for_separate_sends_it_to_separate() -> None:
    """Issue 19: *Capture for* lists Separate, and the script's ``input <path>`` then
    ``press Separate`` end in ``/separate <that file>`` (the device patch in the Max simulator)."""
    from dreamsampler.server.contract import COMMANDS
    from tests.clients.maxsim import MaxSim

    sim = MaxSim(maxpat.read_amxd(DEVICE.read_bytes())[1])
    sim.loadbang()
    menu = sim.param("Capture for")
    assert "Separate" in sim.valueof(menu)["parameter_enum"]
    path = "/Users/me/Music/dreamsampler/capture-47001-1.wav"
    sim.script_output(3, ["input", path])
    sim.script_output(4, ["press", "Separate"])
    address, args = sim.sent[-1]
    assert address == "/separate" and COMMANDS[address].parse(args)["input_path"] == path
