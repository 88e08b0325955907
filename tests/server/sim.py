"""A simulated audio device: the mixer's output stream on a simulated clock, rendered on demand.

No sound card exists here and a real stream renders on its own schedule, so timing logic cannot be
checked sample-exactly against one. :class:`SimDevice` stands in for the PortAudio stream only
(through :class:`~dreamsampler.server.mixer.Mixer`'s ``stream_factory``); the real mixer, device
sink, tempo clock and jam edge run on top of it. Time stands still until the test advances it;
advancing renders every block that falls due, through the mixer's real audio callback, with the
DAC times PortAudio would report.

Timing model: block ``b`` is rendered at simulated time ``t0 + b * block / sr`` and reaches the
DAC ``latency_blocks`` blocks later, so output sample ``k`` sounds at
``t0 + latency + k / sr`` (:meth:`SimDevice.sample_at` inverts that). The stream clock has its own
origin (``stream_offset`` seconds from the simulated clock), as a real stream's does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dreamsampler.server.mixer import Mixer


@dataclass
class _TimeInfo:
    outputBufferDacTime: float  # PortAudio's names
    currentTime: float


@dataclass
class _Status:
    output_underflow: bool = False


class SimStream:
    """Stand-in for ``sounddevice.OutputStream``: its clock is the simulation's."""

    def __init__(self, device: SimDevice, callback: Callable[..., None], channels: int) -> None:
        self.device = device
        self.callback = callback
        self.channels = channels
        self.active = False

    @property
    def time(self) -> float:
        """Stream time, seconds."""
        return self.device.t + self.device.stream_offset

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        self.active = False


class SimDevice:
    """A simulated output device and clock.

    Args:
        sr: sample rate, Hz. block: frames per callback. latency_blocks: blocks between
        rendering and the DAC. t0: simulated start time, seconds. stream_offset: stream time
        minus simulated time, seconds.
    """

    def __init__(self, sr: int = 48000, block: int = 256, latency_blocks: int = 2,
                 t0: float = 1000.0, stream_offset: float = -987.25) -> None:
        self.sr = sr
        self.block = block
        self.latency = latency_blocks * block / sr
        self.t = t0
        self.t0 = t0
        self.stream_offset = stream_offset
        self.stream: SimStream | None = None
        self.blocks: list[np.ndarray] = []

    def now(self) -> float:
        """Simulated time, seconds (a ``time_fn`` for the clock, mixer and jam)."""
        return self.t

    def mixer(self, **kwargs: Any) -> Mixer:
        """A real :class:`Mixer` on this device (a ``DeviceSink`` ``mixer_factory``)."""
        kwargs.setdefault("time_fn", self.now)
        return Mixer(samplerate=self.sr, blocksize=self.block, stream_factory=self._open,
                     **kwargs)

    def _open(self, *, callback: Callable[..., None], channels: int, **_: Any) -> SimStream:
        self.t0 = self.t
        self.blocks = []
        self.stream = SimStream(self, callback, channels)
        return self.stream

    @property
    def rendered(self) -> int:
        """Frames rendered so far."""
        return len(self.blocks) * self.block

    def advance_to(self, t: float) -> None:
        """Let simulated time reach ``t`` (seconds), rendering every block due by then."""
        if t < self.t:
            raise ValueError(f"time runs forward: {t} < {self.t}")
        stream = self.stream
        while stream is not None and stream.active and (
                self.t0 + self.rendered / self.sr <= t):
            self.t = self.t0 + self.rendered / self.sr
            buf = np.zeros((self.block, stream.channels), dtype=np.float32)
            info = _TimeInfo(stream.time + self.latency, stream.time)
            stream.callback(buf, self.block, info, _Status())
            self.blocks.append(buf)
        self.t = t

    def advance(self, seconds: float) -> None:
        """Advance simulated time by ``seconds``."""
        self.advance_to(self.t + seconds)

    async def sleep(self, seconds: float) -> None:
        """An ``asyncio.sleep`` stand-in that advances simulated time instead of waiting."""
        self.advance(seconds)

    def sample_at(self, t: float) -> int:
        """Index of the output sample that reaches the DAC at simulated time ``t``."""
        return round((t - self.t0 - self.latency) * self.sr)

    @property
    def output(self) -> np.ndarray:
        """Everything rendered so far, ``(frames, channels)``."""
        if not self.blocks:
            return np.zeros((0, 2), dtype=np.float32)
        return np.concatenate(self.blocks)
