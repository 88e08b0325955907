"""The device mixer, driven block by block without an audio device.

The audio callback cannot run without a sound server, so these tests call the mixer's render step
directly with the same arguments PortAudio passes (an output buffer and its DAC time); only the
stream object is a stand-in, because ``play()`` refuses to queue without one.
"""

from __future__ import annotations

import numpy as np

from dreamsampler.server.mixer import Mixer

SR = 48000
BLOCK = 256


def _sink() -> Mixer:
    sink = Mixer(channels=1)
    sink.samplerate = SR
    sink._stream = object()  # stand-in: play() only checks that a stream exists
    return sink


def _run(sink: Mixer, blocks: int, t0: float = 0.0,
         between: dict[int, object] | None = None) -> np.ndarray:
    out = []
    for b in range(blocks):
        if between and b in between:
            between[b]()  # type: ignore[operator]
        buf = np.zeros((BLOCK, 1), dtype=np.float32)
        sink.render(buf, BLOCK, t0 + b * BLOCK / SR)
        out.append(buf[:, 0].copy())
    return np.concatenate(out)


def test_replace_crossfades_sample_exactly_even_across_callbacks() -> None:
    """The new clip fades in where the old one fades out: constant sum, no dip, no gap."""
    sink = _sink()
    ones = np.ones(SR, dtype=np.float32)
    first = sink.play(ones, SR, at=0.0, loop=True, fade_in_s=0.0)
    at = 1000 / SR  # mid-block
    out = _run(sink, 12, between={3: lambda: sink.play(0.5 * ones, SR, at=at, loop=True,
                                                      fade_in_s=0.01, replace=first)})
    fade = round(0.01 * SR)
    np.testing.assert_allclose(out[:1000], 1.0)
    expected = 1.0 - 0.5 * np.minimum(1.0, np.arange(fade) / fade)
    np.testing.assert_allclose(out[1000:1000 + fade], expected, atol=1e-6)
    np.testing.assert_allclose(out[1000 + fade:], 0.5)
    assert first not in sink._playing


def test_overlapping_clips_are_mixed_and_a_loop_wraps_without_a_gap() -> None:
    sink = _sink()
    sink.play(np.full(300, 0.25, np.float32), SR, at=0.0, loop=True, fade_in_s=0.0)
    sink.play(np.full(200, 0.5, np.float32), SR, at=100 / SR, fade_in_s=0.0, fade_out_s=0.0)
    out = _run(sink, 4)
    np.testing.assert_allclose(out[:100], 0.25)
    np.testing.assert_allclose(out[100:300], 0.75)  # mixed, not cut
    np.testing.assert_allclose(out[300:], 0.25)  # the loop goes on past its 300 samples


def test_a_block_due_before_now_counts_as_an_underrun() -> None:
    class Info:
        outputBufferDacTime = 1.0
        currentTime = 1.5  # rendered half a second too late

    class Status:
        output_underflow = False

    sink = _sink()
    sink._callback(np.zeros((BLOCK, 1), np.float32), BLOCK, Info(), Status())
    assert sink.underruns == 1
