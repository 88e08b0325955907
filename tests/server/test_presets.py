"""Presets: validation, banks, per-file errors, seed policies, atomic save."""

from __future__ import annotations

import random
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from dreamsampler.server.presets import Preset, SeedPolicy, load_presets, save_preset

SHIPPED = Path(__file__).resolve().parents[2] / "presets"


def test_shipped_presets_all_load() -> None:
    library, errors = load_presets(SHIPPED)
    assert errors == []
    assert len(library) >= 4
    assert {b.name for b in library.banks} >= {"drums", "bass", "textures"}
    pad = library["ambient-pad-8bars"]
    assert pad.bars == 8 and pad.strength == 0.5 and pad.input_clip is not None
    dub = library["dub-reggae-rhodes"]
    assert dub.concept == "my-rhodes" and "<my-rhodes>" in dub.prompt
    assert library["lofi-drums-4bars"].duration_seconds(120) == pytest.approx(8.0)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_bad_file_is_refused_but_others_load(tmp_path: Path) -> None:
    _write(tmp_path / "good.yaml", "name: good\nprompt: a beat\nbars: 2\n")
    bad = _write(tmp_path / "bank.yaml",
                 "- name: ok-in-bad-file\n  prompt: x\n  bars: 1\n"
                 "- name: typo\n  prompt: y\n  bars: 1\n  guidanse: 3\n")
    _write(tmp_path / "pads" / "p.yaml", "name: pad\nprompt: pad\nseconds: 4.5\n")
    _write(tmp_path / "broken.yaml", "name: [unclosed\n")
    library, errors = load_presets(tmp_path)
    assert sorted(library) == ["good", "pad"]
    typo = [e for e in errors if e.path == bad]
    assert len(typo) == 1 and typo[0].loc == (1, "guidanse")
    assert "bank.yaml: [1].guidanse" in str(typo[0])
    assert any(e.path.name == "broken.yaml" for e in errors)
    assert library["pad"].bank == "pads" and library["good"].bank == "default"


def test_duplicate_name_reported(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", "name: same\nprompt: a\nbars: 1\n")
    _write(tmp_path / "b.yaml", "name: same\nprompt: b\nbars: 1\n")
    library, errors = load_presets(tmp_path)
    assert list(library) == ["same"] and errors[0].loc == ("name",)


@pytest.mark.parametrize(
    "fields, loc",
    [
        ({"bars": 2, "seconds": 3.0}, ()),
        ({}, ()),
        ({"bars": 2, "strength": 1.5}, ("strength",)),
        ({"bars": 2, "sinks": ["folder", "cloud"]}, ("sinks", 1)),
        ({"bars": 2, "prompt": "x <other>", "concept": "mine"}, ()),
        ({"bars": 2, "name": "../escape"}, ("name",)),
    ],
)
def test_preset_validation(fields: dict[str, object], loc: tuple[object, ...]) -> None:
    data = {"name": "p", "prompt": "x", **fields}
    with pytest.raises(ValidationError) as info:
        Preset.model_validate(data)
    assert info.value.errors()[0]["loc"] == loc


def test_seed_policies() -> None:
    assert SeedPolicy.model_validate(7).next_seed(100) == 7
    inc = SeedPolicy.model_validate("increment")
    assert inc.next_seed(None) == 0 and inc.next_seed(41) == 42
    assert inc.next_seed(2**31 - 1) == 0
    start = SeedPolicy.model_validate({"mode": "increment", "value": 100})
    assert start.next_seed(None) == 100
    rnd = SeedPolicy.model_validate("random")
    assert rnd.next_seed(None, random.Random(1)) == rnd.next_seed(None, random.Random(1))
    with pytest.raises(ValidationError):
        SeedPolicy.model_validate({"mode": "fixed"})
    with pytest.raises(ValidationError):
        SeedPolicy.model_validate(True)


def test_save_preset_atomic_roundtrip(tmp_path: Path) -> None:
    preset = Preset(name="my beat", prompt="boom bap <kit>", concept="kit", bars=4,
                    seed=SeedPolicy(mode="fixed", value=3), sinks=["device"])
    path = save_preset(tmp_path, preset, bank="live")
    assert path == tmp_path / "live" / "my beat.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not list(path.parent.glob(".*"))  # no temp file left
    library, errors = load_presets(tmp_path)
    assert errors == []
    loaded = library["my beat"]
    assert loaded.model_dump(exclude={"bank"}) == preset.model_dump(exclude={"bank"})
    assert loaded.bank == "live"
