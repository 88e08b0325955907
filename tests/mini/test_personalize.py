"""Personalization in miniature: the concept clips are the held-out instrument's notes with
captions naming them, and every method goes through ``dreamsampler train --captions`` into a
concept the measures then read (the figures themselves: docs/mini.md)."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import yaml

from dreamsampler.mini import data, personalize

from .conftest import needs_fluidsynth


@needs_fluidsynth
def test_concept_clips_are_the_held_out_notes_with_their_captions(tmp_path: Path) -> None:
    paths = personalize.write_concept_clips("saxophone", tmp_path)
    assert [p.stem for p in paths] == list(personalize.TRAIN_NOTES["saxophone"])
    assert "saxophone" not in {i.name for i in data.TRAINED}
    for path in paths:
        assert path.with_suffix(".txt").read_text().strip() == "{} playing " + path.stem
        audio, rate = sf.read(path, dtype="float32")
        assert rate == data.SAMPLE_RATE and audio.shape == (data.CLIP_SAMPLES,)
        f0 = librosa.yin(audio[1600:5696], fmin=55, fmax=2200, sr=rate, frame_length=2048)
        assert abs(float(np.median(librosa.hz_to_midi(f0))) - data.midi_number(path.stem)) < 0.5
    assert set(personalize.EDIT_NOTES["saxophone"]).isdisjoint(personalize.TRAIN_NOTES["saxophone"])


@needs_fluidsynth
def test_every_method_trains_through_the_cli_and_is_measured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One step per method (the real settings are in TRAIN_SETTINGS): the run writes a concept per
    method whose concept.yaml records the clips' captions, and a table row per method."""
    monkeypatch.setattr(personalize, "TRAIN_SETTINGS",
                        {m: ["--steps", "1"] for m in personalize.METHODS})
    result = personalize.run_personalization("mini", n=1, out=tmp_path, steps=3,
                                             instruments=("saxophone",))
    assert [r["method"] for r in result["rows"]] == ["none (words)", *personalize.METHODS]
    for method in personalize.METHODS:
        meta = yaml.safe_load((tmp_path / "concepts" / f"saxophone-{method}" /
                               "concept.yaml").read_text())
        assert meta["method"] == method
        assert sorted(c["caption"] for c in meta["clips"]) == sorted(
            "{} playing " + n for n in personalize.TRAIN_NOTES["saxophone"])
    for row in result["rows"]:
        assert row["clips"] == len(personalize.EDIT_NOTES["saxophone"])
        for key in ("p", "recognised", "sim_aa_90", "edit_pitch"):
            assert 0.0 <= row[key] <= 1.0, (row, key)
        assert -1.0 <= row["similarity"] <= 1.0
    table = (tmp_path / "personalization.md").read_text()
    assert table.count("| saxophone |") == 4
