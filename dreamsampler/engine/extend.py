"""Extend and repaint with the original kept: the input's own samples outside the new region.

A continuation (``side`` after, before or both) or an inpainting is sampled with the input as
the model's conditioning (SA3's keep-mask and masked latents); the model also re-synthesises the
kept part, but that re-synthesis is only conditioning. :func:`keep_original` puts the input's
own samples back outside the generated regions and joins them with a short linear crossfade
that lies *inside the kept part*, next to each generated region: outside the crossfades the
output holds the input's samples bit for bit (when the input is at the model's rate and has its
channel count; otherwise it is resampled with soxr / channel-matched first).

Layout: :func:`layout` says where the input sits in the output and which spans are new.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dreamsampler.engine.audio_io import read_audio, resample

CROSSFADE_S = 0.02
"""Length of each seam's crossfade, seconds (at most a quarter of the kept part)."""


def layout(input_seconds: float, continuation: float | None, side: str,
           mask: tuple[float, float] | None) -> tuple[float, list[tuple[float, float]]]:
    """``(offset, regions)``: where the input starts in the output (s) and the regenerated
    ``[(start, end), ...]`` spans (s) of a continuation on ``side`` or of an inpainting."""
    if continuation is None:
        assert mask is not None
        return 0.0, [mask]
    end = input_seconds + continuation * (2 if side == "both" else 1)
    if side == "after":
        return 0.0, [(input_seconds, end)]
    if side == "before":
        return continuation, [(0.0, continuation)]
    return continuation, [(0.0, continuation), (continuation + input_seconds, end)]


def read_input(path: Path, sample_rate: int, channels: int) -> np.ndarray:
    """The input's samples ``(channels, samples)`` float32 at ``sample_rate`` (unchanged when
    the file already has that rate and channel count; mono is duplicated, other counts mixed
    to mono first). Raises ``AudioFileError``."""
    audio, rate = read_audio(path)
    if audio.shape[0] != channels:
        audio = np.repeat(audio.mean(axis=0, keepdims=True), channels, axis=0)
    if rate != sample_rate:
        audio = resample(np.ascontiguousarray(audio), rate, sample_rate)
    return np.asarray(audio, dtype=np.float32)


def keep_original(generated: np.ndarray, original: np.ndarray, offset: int,
                  regions: list[tuple[int, int]], fade: int) -> np.ndarray:
    """``generated`` with ``original`` pasted at ``offset`` except inside ``regions``.

    Args:
        generated: ``(channels, n)`` the model's output.
        original: ``(channels, m)`` the input at the output's rate.
        offset: sample where the input starts in the output.
        regions: ``[(start, end), ...]`` samples the model generated (they stay generated).
        fade: crossfade length in samples, laid inside the kept part next to each region.

    Returns:
        float32 ``(channels, n)``.
    """
    out = np.array(generated, dtype=np.float32, copy=True)
    n = out.shape[1]
    keep = np.zeros(n, dtype=bool)
    keep[offset:min(n, offset + original.shape[1])] = True
    for start, end in regions:
        keep[max(0, start):max(0, end)] = False
    placed = np.zeros_like(out)
    span = min(original.shape[1], n - offset)
    placed[:, offset:offset + span] = original[:, :span]
    # weight of the original: 1 in the kept part, 0 in the regions, ramps inside the kept part
    weight = keep.astype(np.float32)
    edges = np.flatnonzero(np.diff(keep.astype(np.int8)))
    idx = np.arange(n)
    for e in edges:  # a boundary between samples e and e + 1
        # kept part ending at e: the original fades out over its last samples; starting at
        # e + 1: it fades in over its first
        ramp = (e + 1 - idx if keep[e] else idx - e) / (fade + 1.0)
        near = keep & (ramp > 0.0) & (ramp < 1.0)
        weight[near] = np.minimum(weight[near], ramp[near])
    whole = weight == 1.0
    out[:, whole] = placed[:, whole]
    part = (weight > 0.0) & ~whole
    out[:, part] = placed[:, part] * weight[part] + out[:, part] * (1.0 - weight[part])
    return out


def crossfade_samples(original_samples: int, sample_rate: int) -> int:
    """:data:`CROSSFADE_S` in samples, at most a quarter of the kept part."""
    return max(1, min(round(CROSSFADE_S * sample_rate), original_samples // 4))
