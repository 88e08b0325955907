"""The device's Live API script (``max_patches/dreamsampler-clip.js``), run by node against a
small fake Live Object Model (``fake_lom.js``).

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
SCRIPT = repository_root() / "max_patches" / maxpat.CLIP_SCRIPT
FAKE = Path(__file__).with_name("fake_lom.js")
CLIP = "/Users/me/Music/dreamsampler/warm bass 0001.wav"


def _set(slots: list[int], **track: Any) -> dict[str, Any]:
    """A Live set: the device is the first one on track 1 ('Audio'), scene 2 is selected, and
    ``slots`` says which clip slots of that track hold a clip."""
    objects: dict[str, Any] = {
        "live_set tracks 1": {"id": 7, "counts": {"clip_slots": len(slots)},
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


def _place(scenario: dict[str, Any], path: str = CLIP) -> tuple[str, list[list[Any]]]:
    """Run the shipped script's ``place <path>``; returns the status line and the LOM calls."""
    assert NODE is not None
    run = subprocess.run([NODE, str(FAKE), str(SCRIPT), path], input=json.dumps(scenario),
                         capture_output=True, text=True, timeout=30, check=True)
    result = json.loads(run.stdout)
    (index, word, *status), = result["outlets"]
    assert (index, word) == (0, "set")
    text = " ".join(str(w) for w in status)
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


def test_the_shipped_script_is_the_generated_one() -> None:
    assert SCRIPT.read_bytes() == maxpat.clip_script()
