"""Tests for dreamsampler.engine.training.dataset on clips loaded from real files."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dreamsampler.engine.training.augment import BeatSyncMixup, MixAugmenter, measure_snr_db
from dreamsampler.engine.training.clips import TrainingClip, load_concept_clips
from dreamsampler.engine.training.dataset import (
    DREAMBOOTH_TEMPLATE,
    TI_TEMPLATES,
    ConceptDataset,
    TrainingExample,
    format_prompt,
)

from .synth import SR, WriteAudio, click_track, tone

CLIP = 4 * SR
TOKEN = "<my-drum>"


@pytest.fixture
def clips(tmp_path: Path, write_audio: WriteAudio) -> list[TrainingClip]:
    write_audio("concept/a.wav", click_track(120, 4.0, offset_s=0.1))
    write_audio("concept/b.flac", click_track(121, 4.0, offset_s=0.4))
    write_audio("concept/c.wav", click_track(90, 4.0, offset_s=0.2))
    return load_concept_clips(tmp_path / "concept", SR, CLIP, min_clips=3)


def test_templates_constant() -> None:
    assert 20 <= len(TI_TEMPLATES) <= 27
    assert len(set(TI_TEMPLATES)) == len(TI_TEMPLATES)
    assert all(t.count("{}") == 1 for t in TI_TEMPLATES)
    for required in ("a recording of a {}", "the sound of {}", "a {} sound", "music made with {}"):
        assert required in TI_TEMPLATES
    assert format_prompt(DREAMBOOTH_TEMPLATE, "sks", "guitar") == "a recording of a sks guitar"
    with pytest.raises(ValueError):
        format_prompt("no slot", "sks")


def test_items_and_prompts(clips: list[TrainingClip]) -> None:
    ds = ConceptDataset(clips, TOKEN, repeats=10, seed=1)
    assert len(ds) == 30
    ex = ds[4]
    assert isinstance(ex, TrainingExample)
    assert ex.waveform.shape == (CLIP,) and ex.waveform.dtype == torch.float32
    torch.testing.assert_close(ex.waveform, torch.from_numpy(clips[1].waveform))
    prompts = [ds[i].prompt for i in range(len(ds))]
    assert all(TOKEN in p for p in prompts)
    assert all(p in {t.format(TOKEN) for t in TI_TEMPLATES} for p in prompts)
    assert len(set(prompts)) > 5
    with pytest.raises(IndexError):
        ds[30]


def test_dreambooth_prompt(clips: list[TrainingClip]) -> None:
    ds = ConceptDataset(clips, "sks", prompt_mode="dreambooth", class_word="drum loop")
    assert {ds[i].prompt for i in range(len(ds))} == {"a recording of a sks drum loop"}
    with pytest.raises(ValueError, match="class_word"):
        ConceptDataset(clips, "sks", prompt_mode="dreambooth")


def test_deterministic_for_seed_and_epoch(
    clips: list[TrainingClip], tmp_path: Path, write_audio: WriteAudio
) -> None:
    write_audio("others/noise.wav", (0.3 * np.random.default_rng(0).standard_normal(SR)))
    write_audio("others/hum.wav", tone(60, 2.0))

    def make(seed: int) -> ConceptDataset:
        mix = MixAugmenter.from_folder(tmp_path / "others", SR, snr_db=20.0)
        return ConceptDataset(clips, TOKEN, repeats=4, seed=seed, mix=mix, mix_probability=0.5)

    d1, d2, d3 = make(7), make(7), make(8)
    for i in range(len(d1)):
        a, b = d1[i], d2[i]
        assert a.prompt == b.prompt
        torch.testing.assert_close(a.waveform, b.waveform)
    assert [d1[i].prompt for i in range(12)] != [d3[i].prompt for i in range(12)]
    # about half the items are mixed, each at 20 dB
    mixed = 0
    for i in range(len(d1)):
        w = d1[i].waveform.numpy().astype(np.float64)
        ref = clips[i % 3].waveform
        if not np.array_equal(w, ref):
            mixed += 1
            assert measure_snr_db(ref, w - ref) == pytest.approx(20.0, abs=0.01)
    assert 2 <= mixed <= 10
    # another epoch gives other draws; the same epoch again the same
    e0 = [d1.example(i, 0).prompt for i in range(12)]
    e1 = [d1.example(i, 1).prompt for i in range(12)]
    assert e0 != e1
    d1.set_epoch(1)
    assert [d1[i].prompt for i in range(12)] == e1


def test_stream_and_dataloader(clips: list[TrainingClip]) -> None:
    ds = ConceptDataset(clips, TOKEN, repeats=2, seed=3)
    first = [ex.prompt for ex in islice(ds.stream(), 14)]
    again = [ex.prompt for ex in islice(ds.stream(), 14)]
    assert first == again and len(first) == 14
    loader = DataLoader(ds, batch_size=2, shuffle=False)
    waves, prompts = next(iter(loader))
    assert waves.shape == (2, CLIP) and len(prompts) == 2


def test_bam_hook_mixes_tempo_partners_only(clips: list[TrainingClip]) -> None:
    bsm = BeatSyncMixup([c.waveform for c in clips], SR, tolerance_bpm=3.0)
    assert bsm.partners(2) == []  # 90 BPM clip has no partner
    ds = ConceptDataset(clips, TOKEN, repeats=2, seed=0, beat_mixup=bsm, beat_mixup_probability=1.0)
    changed = [
        not np.array_equal(ds[i].waveform.numpy(), clips[i % 3].waveform) for i in range(len(ds))
    ]
    assert changed == [True, True, False, True, True, False]
    with pytest.raises(ValueError, match="same clips"):
        ConceptDataset(clips[:2], TOKEN, beat_mixup=bsm)


def test_custom_augment_hook_and_arrays(clips: list[TrainingClip]) -> None:
    def gain(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return w * 0.5

    ds = ConceptDataset([c.waveform for c in clips], TOKEN, augment=gain)
    torch.testing.assert_close(ds[0].waveform, torch.from_numpy(clips[0].waveform * 0.5))
    with pytest.raises(ValueError, match="same length"):
        ConceptDataset([np.zeros(10, np.float32), np.zeros(11, np.float32)], TOKEN)
