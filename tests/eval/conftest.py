"""Shared signal generators for the evaluation tests (synthetic audio with known truths)."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def click_track(bpm: float, seconds: float, sr: int, offset: float = 0.1) -> np.ndarray:
    """Decaying 1 kHz clicks every 60/bpm seconds, shape (samples,)."""
    y = np.zeros(int(seconds * sr))
    n = int(0.03 * sr)
    t = np.arange(n) / sr
    click = np.sin(2 * np.pi * 1000 * t) * np.exp(-t / 0.005)
    for start in np.arange(offset, seconds, 60.0 / bpm):
        i = round(float(start) * sr)
        seg = y[i : i + n]
        seg += click[: len(seg)]
    return 0.5 * y


def tone(midi: float, seconds: float, sr: int, partials: int = 4) -> np.ndarray:
    """A note with `partials` sine harmonics (amplitude 1/k) and a decaying envelope."""
    t = np.arange(int(seconds * sr)) / sr
    f = 440.0 * 2 ** ((midi - 69) / 12)
    y = sum((1.0 / k) * np.sin(2 * np.pi * f * k * t) for k in range(1, partials + 1))
    env = np.minimum(1.0, t / 0.01) * np.exp(-t / 1.5)
    return np.asarray(y * env)


def chord_progression(
    tonic_midi: int, mode: str, sr: int, chord_seconds: float = 0.75
) -> np.ndarray:
    """I–IV–V–I (major) or i–iv–V–i (harmonic minor), triads plus bass, shape (samples,)."""
    steps = (
        [(0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")]
        if mode == "major"
        else [(0, "min"), (5, "min"), (7, "maj"), (0, "min")]
    )
    out = []
    for offset, quality in steps:
        third = 4 if quality == "maj" else 3
        root = tonic_midi + offset
        notes = [root, root + third, root + 7, root - 12]
        out.append(sum(tone(m, chord_seconds, sr) for m in notes))
    y = np.concatenate(out)
    return 0.2 * y / np.abs(y).max()


def noise_beats(bpm: float, seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Short decaying white-noise bursts on every beat (tempo without pitch), shape (samples,)."""
    rng = np.random.default_rng(seed)
    y = np.zeros(int(seconds * sr))
    n = int(0.04 * sr)
    env = np.exp(-np.arange(n) / (0.008 * sr))
    for start in np.arange(0.05, seconds, 60.0 / bpm):
        i = round(float(start) * sr)
        seg = y[i : i + n]
        seg += (rng.standard_normal(n) * env)[: len(seg)]
    return y


def song(tonic_midi: int, mode: str, bpm: float, sr: int, seconds: float = 6.0) -> np.ndarray:
    """Chord progression (looped) plus noise beats: known key and tempo, shape (samples,)."""
    prog = chord_progression(tonic_midi, mode, sr, chord_seconds=60.0 / bpm * 2)
    reps = int(np.ceil(seconds * sr / len(prog)))
    harmony = np.tile(prog, reps)[: int(seconds * sr)]
    return 0.6 * harmony + 0.25 * noise_beats(bpm, seconds, sr)
