"""MIDI mapping: curves, note/CC/program mapping, MIDI learn and persistence (pure, no ports)."""

from __future__ import annotations

import itertools
from pathlib import Path

import mido
import pytest
from pydantic import ValidationError

from dreamsampler.server.midi_map import (
    CancelNote,
    Learned,
    MidiMap,
    MidiMapper,
    SelectBank,
    SetParam,
    TriggerPreset,
    apply_curve,
    note_number,
)

SHIPPED = Path(__file__).resolve().parents[2] / "presets" / "midi_map.yaml"


def test_curves() -> None:
    assert apply_curve(0.0, 1, 12) == 1 and apply_curve(1.0, 1, 12) == 12
    assert apply_curve(0.5, 0, 10) == pytest.approx(5.0)
    exp_mid = apply_curve(0.5, 0, 10, "exp")
    log_mid = apply_curve(0.5, 0, 10, "log")
    assert exp_mid < 5.0 < log_mid
    # log is the inverse shape of exp
    assert apply_curve(apply_curve(0.3, 0, 1, "exp"), 0, 1, "log") == pytest.approx(0.3)
    assert [apply_curve(x / 127, 0, 3, "step", steps=4) for x in (0, 40, 80, 127)] == [
        0.0, 1.0, 2.0, 3.0]
    assert apply_curve(2.0, 0, 1) == 1.0  # clamped
    with pytest.raises(ValueError, match="steps"):
        apply_curve(0.5, 0, 1, "step")


def test_note_names() -> None:
    assert note_number("C3") == 60 and note_number("C4", middle_c_octave=4) == 60
    assert note_number("F#2") == 54 and note_number(36) == 36
    with pytest.raises(ValueError):
        note_number("H9")
    with pytest.raises(ValueError):
        note_number(200)


def test_shipped_map_and_actions() -> None:
    mapper = MidiMapper.from_file(SHIPPED)
    [trigger] = mapper.handle(mido.Message("note_on", note=36, velocity=127))
    assert isinstance(trigger, TriggerPreset) and trigger.name == "lofi-drums-4bars"
    assert dict(trigger.overrides) == {"strength": pytest.approx(1.0)}
    assert mapper.handle(mido.Message("note_off", note=38)) == [CancelNote(38)]
    assert mapper.handle(mido.Message("note_on", note=38, velocity=0)) == [CancelNote(38)]
    assert mapper.handle(mido.Message("note_off", note=36)) == []  # no cancel_on_release
    # note 60 only on channel 2 (mido channel 1)
    assert mapper.handle(mido.Message("note_on", note=60, channel=0)) == []
    assert mapper.handle(mido.Message("note_on", note=60, channel=1))[0].name == (
        "ambient-pad-8bars")
    assert mapper.unmapped_notes == 1
    [steps] = mapper.handle(mido.Message("control_change", control=71, value=127))
    assert steps == SetParam("steps", 80) and isinstance(steps.value, int)
    [guid] = mapper.handle(mido.Message("control_change", control=74, value=0))
    assert guid == SetParam("guidance", pytest.approx(1.0))
    assert mapper.handle(mido.Message("program_change", program=2)) == [SelectBank(2, "textures")]
    assert mapper.handle(mido.Message("program_change", program=9)) == []
    assert mapper.handle(mido.Message("control_change", control=99, value=1)) == []


def test_cc_moves_along_curve() -> None:
    mapper = MidiMapper(MidiMap.model_validate(
        {"ccs": [{"cc": 7, "param": "guidance", "min": 1, "max": 13, "curve": "exp"}]}))
    values = [mapper.handle(mido.Message("control_change", control=7, value=v))[0].value
              for v in range(0, 128, 16)]
    assert values == sorted(values) and values[0] == pytest.approx(1.0)
    steps = [b - a for a, b in itertools.pairwise(values)]
    assert steps == sorted(steps)  # exponential: increments grow


def test_learn_binds_next_cc_and_saves(tmp_path: Path) -> None:
    mapper = MidiMapper()
    with pytest.raises(ValueError, match="unknown parameter"):
        mapper.learn("volumee")
    mapper.learn("lora_scale")
    assert mapper.handle(mido.Message("note_on", note=1)) == []  # notes do not bind
    actions = mapper.handle(mido.Message("control_change", channel=4, control=30, value=127))
    assert actions == [Learned("lora_scale", 30, 5), SetParam("lora_scale", pytest.approx(1.5))]
    assert mapper.learning is None
    assert mapper.handle(mido.Message("control_change", channel=4, control=30, value=0)) == [
        SetParam("lora_scale", 0.0)]
    path = mapper.save(tmp_path / "map.yaml")
    again = MidiMapper.from_file(path)
    assert again.handle(mido.Message("control_change", channel=4, control=30, value=127)) == [
        SetParam("lora_scale", pytest.approx(1.5))]


def test_invalid_map_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        MidiMap.model_validate({"ccs": [{"cc": 1, "param": "strength", "min": 0, "max": 1,
                                         "curv": "exp"}]})
    assert info.value.errors()[0]["loc"] == ("ccs", 0, "curv")
    with pytest.raises(ValidationError):
        MidiMap.model_validate({"notes": [{"note": "X#", "preset": "a"}]})
    with pytest.raises(ValidationError):
        MidiMap.model_validate({"ccs": [{"cc": 1, "param": "strength", "min": 0, "max": 1,
                                         "curve": "step"}]})
