"""Synthesized test signals (tones, click tracks with known tempo and downbeats)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

SR = 16000

#: Signature of the ``write_audio`` fixture: (name, data, sr=SR, **soundfile kwargs) -> path.
WriteAudio = Callable[..., Path]


def tone(
    freq_hz: float, seconds: float, sr: int = SR, amp: float = 0.5, channels: int = 1
) -> np.ndarray:
    """Sine tone, ``(samples,)`` or ``(samples, channels)`` as soundfile writes it."""
    t = np.arange(round(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
    if channels == 1:
        return x
    return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1)


def click_track(
    bpm: float,
    seconds: float,
    sr: int = SR,
    offset_s: float = 0.0,
    beats_per_bar: int = 4,
    accent: float = 1.0,
    weak: float = 0.25,
) -> np.ndarray:
    """Click track: a 30 ms decaying noise burst per beat, louder (``accent``) on downbeats.

    Beats sit at ``offset_s + k * 60 / bpm`` seconds; beat ``k`` is a downbeat when
    ``k % beats_per_bar == 0``. Returns ``(samples,)`` float32.
    """
    n = round(seconds * sr)
    out = np.zeros(n, dtype=np.float32)
    rng = np.random.default_rng(1234)
    burst_len = round(0.03 * sr)
    env = np.exp(-np.arange(burst_len) / (0.005 * sr)).astype(np.float32)
    period = 60.0 / bpm
    k = 0
    while True:
        t = offset_s + k * period
        start = round(t * sr)
        if start >= n:
            break
        if start >= 0:
            amp = accent if k % beats_per_bar == 0 else weak
            burst = amp * env * rng.uniform(-1, 1, burst_len).astype(np.float32)
            end = min(n, start + burst_len)
            out[start:end] += burst[: end - start]
        k += 1
    return out
