"""Tempo, key, loudness and similarity descriptors on synthetic signals with known truths."""

from __future__ import annotations

import numpy as np
import pytest

from dreamsampler.eval.audio import AudioError, AudioTooShortError, SilentAudioError
from dreamsampler.eval.music import (
    ClipFeatures,
    KeyEstimate,
    chroma_similarity,
    estimate_bpm,
    estimate_key,
    f0_similarity,
    feature_deltas,
    integrated_loudness,
    parse_key,
    pyin_tracker,
)

from .conftest import chord_progression, click_track, tone


@pytest.mark.parametrize("bpm", [90.0, 120.0, 140.0])
def test_bpm_of_click_tracks(bpm: float) -> None:
    sr = 16000  # resampled internally to 22.05 kHz
    est = estimate_bpm(click_track(bpm, 10.0, sr), sr)
    assert abs(est - bpm) < 2.0


def test_bpm_stereo_and_too_short() -> None:
    sr = 22050
    y = click_track(120.0, 8.0, sr)
    assert abs(estimate_bpm(np.stack([y, 0.5 * y]), sr) - 120.0) < 2.0
    with pytest.raises(AudioTooShortError):
        estimate_bpm(y[: sr * 2], sr)
    with pytest.raises(SilentAudioError):
        estimate_bpm(np.zeros(sr * 5), sr)
    with pytest.raises(AudioError, match="channels"):
        estimate_bpm(np.zeros((sr * 5, 2)), sr)


@pytest.mark.parametrize(
    ("tonic", "mode", "label"),
    [
        (60, "major", "C major"),
        (67, "major", "G major"),
        (63, "major", "Eb major"),
        (57, "minor", "A minor"),
        (64, "minor", "E minor"),
        (66, "minor", "F# minor"),
    ],
)
def test_key_of_chord_progressions(tonic: int, mode: str, label: str) -> None:
    sr = 22050
    est = estimate_key(chord_progression(tonic, mode, sr), sr)
    assert est.label == label
    assert est.score > 0.8


def test_parse_key_enharmonics() -> None:
    assert parse_key("Db major") == parse_key("C# major") == (1, "major")
    assert parse_key("a min") == (9, "minor")
    assert KeyEstimate(3, "minor", 0.9).same_key(KeyEstimate(*parse_key("D# minor"), 0.5))
    with pytest.raises(ValueError):
        parse_key("H major")


def test_loudness_ebu_reference_tone() -> None:
    # EBU Tech 3341 case 1: stereo 1 kHz sine at -23 dBFS peak per channel -> -23.0 LUFS
    sr = 48000
    t = np.arange(sr * 5) / sr
    s = 10 ** (-23 / 20) * np.sin(2 * np.pi * 1000 * t)
    assert integrated_loudness(np.stack([s, s]), sr) == pytest.approx(-23.0, abs=0.1)
    # one channel carries half the power: 3 dB less
    assert integrated_loudness(s, sr) == pytest.approx(-26.0, abs=0.1)
    # level tracks gain 1:1
    assert integrated_loudness(np.stack([s, s]) * 10 ** (6 / 20), sr) == pytest.approx(
        -17.0, abs=0.1
    )
    with pytest.raises(AudioTooShortError):
        integrated_loudness(s[:1000], sr)


def test_chroma_similarity_orders_keys() -> None:
    sr = 22050
    c = chord_progression(60, "major", sr)
    c_again = chord_progression(60, "major", sr) * 0.3
    f_sharp = chord_progression(66, "major", sr)
    same = chroma_similarity(c, c_again, sr)
    far = chroma_similarity(c, f_sharp, sr)
    assert same > 0.99
    assert far < same - 0.2
    assert chroma_similarity(c, f_sharp, sr, mode="global") < 0.9


def test_f0_similarity_melodies() -> None:
    sr = 16000
    notes = [60, 62, 64, 65]
    mel = np.concatenate([tone(m, 0.4, sr, partials=3) for m in notes])
    octave_up = np.concatenate([tone(m + 12, 0.4, sr, partials=3) for m in notes])
    other = np.concatenate([tone(m + 5, 0.4, sr, partials=3) for m in notes])
    track = pyin_tracker(fmin=100.0, fmax=1200.0)
    same = f0_similarity(mel, mel * 0.5, sr, tracker=track)
    assert same.raw_pitch_accuracy > 0.95 and same.n_voiced > 20
    octave = f0_similarity(mel, octave_up, sr, tracker=track)
    assert octave.raw_pitch_accuracy < 0.1 and octave.raw_chroma_accuracy > 0.9
    assert f0_similarity(mel, other, sr, tracker=track).raw_chroma_accuracy < 0.1


def test_feature_deltas_known_values() -> None:
    c_maj, a_min = KeyEstimate(0, "major", 0.9), KeyEstimate(9, "minor", 0.9)
    ref = [
        ClipFeatures(bpm=120.0, key=c_maj, lufs=-14.0),
        ClipFeatures(bpm=122.0, key=c_maj, lufs=-16.0),
        ClipFeatures(bpm=118.0, key=a_min, lufs=-15.0),
    ]
    gen = [
        ClipFeatures(bpm=124.0, key=c_maj, lufs=-20.0),
        ClipFeatures(bpm=110.0, key=a_min, lufs=-18.0),
        ClipFeatures(bpm=None, key=c_maj, lufs=None, errors={"bpm": "x: too short"}, name="x"),
    ]
    d = feature_deltas(gen, ref)
    assert d.reference_bpm.value == 120.0 and d.reference_key == "C major"
    assert d.bpm_delta.value == pytest.approx((4 + 10) / 2) and d.bpm_delta.n == 2
    assert d.key_match.value == pytest.approx(2 / 3) and d.key_match.n == 3
    assert d.lufs_delta.value == pytest.approx(-19.0 - (-15.0)) and d.lufs_delta.n == 2
    none = feature_deltas(gen, [ClipFeatures(errors={"bpm": "silent"}, name="r.wav")])
    assert none.bpm_delta.value is None and "r.wav: silent" in (none.bpm_delta.error or "")
