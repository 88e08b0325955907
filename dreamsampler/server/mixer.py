"""The audio-device mixer: clips scheduled sample-exactly on one PortAudio output stream.

:class:`Mixer` owns one ``sounddevice.OutputStream`` (stereo, float32). Its callback mixes every
active clip (overlapping clips add up; the sum is clipped to [-1, 1]), applies short fades at each
clip's start and end, and starts each clip at the sample that corresponds to the requested *stream
time* (``at``, seconds on the stream clock, i.e. when the first sample should reach the DAC, as
reported by PortAudio's ``outputBufferDacTime``). Clips are resampled with soxr to the device rate
before they are queued, so the callback only adds arrays.

Clocks are injectable so that scheduling can be checked sample-exactly without a sound card:
``stream_factory`` stands in for ``sounddevice.OutputStream`` and ``time_fn`` for
:func:`time.monotonic`; :meth:`Mixer.render` is the audio callback's work on one block, callable
with any DAC time.

Threading: ``play``/``stop_clip`` may be called from any thread (a lock-free deque carries commands
to the audio thread). Errors in the callback or an unexpected end of the stream are reported
through ``on_error`` (on a helper thread), never raised into the caller.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr

from dreamsampler.server.audio_devices import AudioDevice, _sd, find_output_device

log = logging.getLogger(__name__)

DEFAULT_FADE_S = 0.005
"""Fade at the start and end of each clip, seconds (5 ms)."""


#: A block whose DAC time is this far behind the stream's current time counts as an underrun.
LATE_BLOCK_S = 0.02


@dataclass(eq=False)
class _Clip:
    id: int
    data: np.ndarray  # (frames, channels) float32 at the device rate
    at: float | None  # requested stream time of the first sample, seconds
    loop: bool
    fade_in: int  # frames
    start_frame: int | None = None  # absolute output frame, set by the callback
    stop_at: float | None = None
    stop_fade: int = 0
    stop_frame: int | None = None
    stop_requested: bool = False
    replaces: int | None = None  # id of a clip that fades out where this one fades in


class Mixer:
    """Mixes clips into an audio output stream.

    Args:
        device: output device name (substring), index, or None for the default device.
        samplerate: stream rate in Hz (default: the device's default rate).
        channels: output channels (2).
        blocksize: frames per callback (0 = let the host choose, JACK uses its period).
        latency: PortAudio latency hint (``"low"``, ``"high"`` or seconds).
        on_error: called with the exception (on a helper thread) if the callback fails or
            the stream stops unexpectedly.
        time_fn: the clock clip times are converted from (seconds; default
            :func:`time.monotonic`, the :class:`TempoClock`'s default time base).
        stream_factory: builds the output stream with ``sounddevice.OutputStream``'s keyword
            arguments (``device`` is then ``device`` as given, not looked up); None = a real
            PortAudio stream on the device found by name. The stream needs ``time``, ``active``,
            ``start()``, ``stop()``, ``close()`` and calls ``callback`` per block.

    Raises:
        AudioDeviceNotFoundError: from :meth:`start`, if the device does not exist.
    """

    def __init__(
        self,
        device: str | int | None = None,
        samplerate: int | None = None,
        channels: int = 2,
        blocksize: int = 0,
        latency: str | float = "low",
        on_error: Callable[[BaseException], None] | None = None,
        time_fn: Callable[[], float] = time.monotonic,
        stream_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.device_spec = device
        self.requested_samplerate = samplerate
        self.channels = channels
        self.blocksize = blocksize
        self.latency = latency
        self.on_error = on_error
        self.time_fn = time_fn
        self.stream_factory = stream_factory
        self.samplerate = 0
        self.device: AudioDevice | None = None
        self.underruns = 0
        """Output underflows reported by PortAudio (callback status flags)."""
        self.late_starts = 0
        """Clips whose requested start time had already passed when they reached the callback."""
        self.callback_errors = 0
        self.last_error: BaseException | None = None
        self._stream: Any = None
        self._commands: collections.deque[tuple[Any, ...]] = collections.deque()
        self._active: list[_Clip] = []
        self._ids = itertools.count(1)
        self._frame = 0  # absolute index of the next frame the callback renders
        self._playing: set[int] = set()
        self._closing = False

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Open and start the output stream.

        Raises:
            AudioDeviceNotFoundError: unknown device. sounddevice.PortAudioError: the device
                refused the settings. ValueError: a ``stream_factory`` without a sample rate.
        """
        if self.stream_factory is None:
            self.device = find_output_device(self.device_spec)
            self.samplerate = int(self.requested_samplerate or self.device.default_samplerate)
            factory, device, name = _sd().OutputStream, self.device.index, self.device.name
        else:
            if not self.requested_samplerate:
                raise ValueError("a mixer with a stream_factory needs a samplerate")
            self.samplerate = int(self.requested_samplerate)
            factory, device, name = self.stream_factory, self.device_spec, str(self.device_spec)
        self._closing = False
        self._stream = factory(
            device=device, samplerate=self.samplerate, channels=self.channels,
            dtype="float32", blocksize=self.blocksize, latency=self.latency,
            callback=self._callback, finished_callback=self._finished)
        self._stream.start()
        log.info("audio output on %s at %d Hz", name, self.samplerate)

    def close(self) -> None:
        """Stop and close the stream (clips are dropped)."""
        self._closing = True
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.stop()
            with contextlib.suppress(Exception):
                self._stream.close()
            self._stream = None

    def __enter__(self) -> Mixer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def active(self) -> bool:
        """True while the stream runs."""
        return self._stream is not None and bool(self._stream.active)

    # ---- time -----------------------------------------------------------------------------

    def time(self) -> float:
        """Current stream time in seconds (the clock ``at`` refers to).

        Raises:
            RuntimeError: the stream is not started.
        """
        if self._stream is None:
            raise RuntimeError("the mixer is not started")
        return float(self._stream.time)

    def monotonic_to_stream(self, t: float) -> float:
        """Convert a ``time_fn`` time (seconds; :func:`time.monotonic` by default) to stream
        time (seconds)."""
        return t - self.time_fn() + self.time()

    # ---- playback -------------------------------------------------------------------------

    def play(
        self,
        audio: np.ndarray,
        sr: int,
        at: float | None = None,
        *,
        loop: bool = False,
        fade_in_s: float = DEFAULT_FADE_S,
        fade_out_s: float = DEFAULT_FADE_S,
        gain: float = 1.0,
        replace: int | None = None,
    ) -> int:
        """Queue a clip; returns its id.

        Args:
            audio: ``(channels, samples)`` or mono 1-D float audio at ``sr`` Hz; mono is
                copied to both channels, more channels than the stream are refused.
            sr: sample rate of ``audio`` in Hz (resampled with soxr to the stream rate).
            at: stream time in seconds of the first sample (see :meth:`monotonic_to_stream`
                to use a :class:`TempoClock` boundary); None = as soon as possible. A time
                already past starts the clip at once (counted in ``late_starts``).
            loop: repeat until :meth:`stop_clip`/:meth:`stop` (no end fade).
            fade_in_s: fade-in, seconds; ``fade_out_s``: fade at the natural end, seconds.
            gain: linear gain.
            replace: id of a playing clip to crossfade from: it fades out over ``fade_in_s``
                starting at this clip's first frame, both resolved in the same audio callback
                (sample-exact; two separate commands could land in different callbacks, whose
                reported DAC times jitter, and open a gap).

        Raises:
            RuntimeError: the stream is not started. ValueError: bad audio shape or rate.
        """
        if self._stream is None:
            raise RuntimeError("the mixer is not started")
        data = self._prepare(audio, sr, gain, 0.0 if loop else fade_out_s)
        clip = _Clip(next(self._ids), data, at, loop, round(fade_in_s * self.samplerate),
                     replaces=replace)
        self._playing.add(clip.id)
        self._commands.append(("play", clip))
        return clip.id

    def _prepare(self, audio: np.ndarray, sr: int, gain: float, fade_out_s: float
                 ) -> np.ndarray:
        arr = np.asarray(audio, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[np.newaxis, :]
        if arr.ndim != 2 or arr.shape[1] == 0 or arr.shape[0] > self.channels:
            raise ValueError(f"audio must be (channels<={self.channels}, samples>0), "
                             f"got {arr.shape}")
        if sr <= 0:
            raise ValueError(f"sample rate must be > 0 Hz, got {sr}")
        frames = arr.T  # (samples, channels)
        if sr != self.samplerate:
            frames = soxr.resample(frames, sr, self.samplerate, quality="HQ")
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        if frames.shape[1] < self.channels:
            frames = np.repeat(frames[:, :1], self.channels, axis=1)
        frames = frames * np.float32(gain)
        n_out = min(len(frames), round(fade_out_s * self.samplerate))
        if n_out > 0:
            frames[-n_out:] *= np.linspace(1.0, 0.0, n_out, dtype=np.float32)[:, None]
        return frames

    def stop_clip(self, clip_id: int, at: float | None = None,
                  fade_s: float = DEFAULT_FADE_S) -> None:
        """Fade clip ``clip_id`` out over ``fade_s`` seconds starting at stream time ``at``
        (None = now). Unknown or finished ids are ignored."""
        self._commands.append(("stop", clip_id, at, round(fade_s * self.samplerate)))

    def stop(self, fade_s: float = DEFAULT_FADE_S) -> None:
        """Fade out every clip now (OSC ``/stop``); the stream keeps running."""
        self._commands.append(("stop_all", round(fade_s * self.samplerate)))

    def is_playing(self, clip_id: int) -> bool:
        """True while the clip is queued or sounding."""
        return clip_id in self._playing

    @property
    def playing(self) -> int:
        """Number of clips queued or sounding."""
        return len(self._playing)

    # ---- audio thread ---------------------------------------------------------------------

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        try:
            dac_time = float(time_info.outputBufferDacTime)
            # A block due at the DAC before "now" is late: an underrun the backend did not flag
            # (JACK's dummy driver falls behind real time under load without reporting xruns).
            if status.output_underflow or dac_time < float(time_info.currentTime) - LATE_BLOCK_S:
                self.underruns += 1
            self.render(outdata, frames, dac_time)
        except Exception as exc:  # never let an exception stop the stream
            outdata.fill(0)
            self.callback_errors += 1
            if self.callback_errors == 1 or self.callback_errors % 1000 == 0:
                self._report(exc)

    def render(self, outdata: np.ndarray, frames: int, dac_time: float) -> None:
        """Render the next block: what the audio callback does, without the device.

        Takes the queued commands, places each new clip at the frame its stream time ``at``
        falls on relative to ``dac_time``, and writes the clipped mix of every active clip.

        Args:
            outdata: ``(frames, channels)`` float32 buffer, overwritten.
            frames: frames in this block.
            dac_time: stream time (seconds) at which ``outdata[0]`` reaches the DAC
                (PortAudio's ``outputBufferDacTime``).
        """
        block = self._frame
        sr = self.samplerate
        while self._commands:
            cmd = self._commands.popleft()
            if cmd[0] == "play":
                clip: _Clip = cmd[1]
                if clip.at is None:
                    clip.start_frame = block
                else:
                    clip.start_frame = block + round((clip.at - dac_time) * sr)
                    if clip.start_frame < block:
                        self.late_starts += 1
                        clip.start_frame = block
                for old in self._active:
                    if old.id == clip.replaces and not old.stop_requested:
                        old.stop_requested = True
                        old.stop_frame, old.stop_fade = clip.start_frame, max(1, clip.fade_in)
                self._active.append(clip)
            elif cmd[0] == "stop":
                for c in self._active:
                    if c.id == cmd[1] and not c.stop_requested:
                        c.stop_requested = True
                        c.stop_at, c.stop_fade = cmd[2], max(1, cmd[3])
            elif cmd[0] == "stop_all":
                for c in self._active:
                    if not c.stop_requested:
                        c.stop_requested, c.stop_at, c.stop_fade = True, None, max(1, cmd[1])
        mix = np.zeros((frames, outdata.shape[1]), dtype=np.float32)
        positions = np.arange(block, block + frames)
        finished: list[_Clip] = []
        for c in self._active:
            assert c.start_frame is not None
            if c.stop_requested and c.stop_frame is None:
                c.stop_frame = block if c.stop_at is None else max(
                    block, block + round((c.stop_at - dac_time) * sr))
            offset = c.start_frame - block
            if offset >= frames:
                continue
            dst0 = max(0, offset)
            rel = positions[dst0:] - c.start_frame  # clip-relative frame index
            n = len(c.data)
            if c.loop:
                seg = c.data[rel % n]
            else:
                rel = rel[rel < n]
                seg = c.data[rel] if len(rel) else c.data[:0]
                if rel.size == 0 or rel[-1] >= n - 1:
                    finished.append(c)
            if len(seg) == 0:
                continue
            env = None
            if c.fade_in > 0 and rel[0] < c.fade_in:
                env = np.minimum(1.0, rel / c.fade_in).astype(np.float32)
            if c.stop_frame is not None:
                after = (positions[dst0:dst0 + len(seg)] - c.stop_frame) / c.stop_fade
                stop_env = np.clip(1.0 - after, 0.0, 1.0).astype(np.float32)
                env = stop_env if env is None else env * stop_env
                if c.stop_frame + c.stop_fade <= block + frames and c not in finished:
                    finished.append(c)
            mix[dst0:dst0 + len(seg)] += seg if env is None else seg * env[:, None]
        for c in finished:
            self._active.remove(c)
            self._playing.discard(c.id)
        np.clip(mix, -1.0, 1.0, out=outdata)
        self._frame = block + frames

    def _finished(self) -> None:
        if not self._closing:
            self._report(RuntimeError("the audio stream stopped unexpectedly"))

    def _report(self, exc: BaseException) -> None:
        self.last_error = exc
        log.error("audio output error: %s", exc)
        if self.on_error is not None:
            threading.Thread(target=self._call_on_error, args=(exc,), daemon=True).start()

    def _call_on_error(self, exc: BaseException) -> None:
        try:
            assert self.on_error is not None
            self.on_error(exc)
        except Exception:
            log.exception("on_error callback failed")
