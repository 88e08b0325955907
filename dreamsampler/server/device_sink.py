"""Play generated clips on an audio device, quantized to the beat grid, and jam mode.

:class:`DeviceSink` owns one ``sounddevice.OutputStream`` (stereo, float32). Its callback mixes
every active clip (overlapping clips add up; the sum is clipped to [-1, 1]), applies short fades
at each clip's start and end, and starts each clip at the sample that corresponds to the
requested *stream time* (``at``, seconds on the stream clock, i.e. when the first sample should
reach the DAC, as reported by PortAudio's ``outputBufferDacTime``). Clips are resampled with
soxr to the device rate before they are queued, so the callback only adds arrays.

:class:`JamLoop` keeps music going: clip N loops (no silence) while clip N+1 is being generated;
when it arrives it starts on the next bar line with a short crossfade.

Threading: ``play``/``stop_clip`` may be called from any thread (a lock-free deque carries
commands to the audio thread). Errors in the callback or an unexpected end of the stream are
reported through ``on_error`` (on a helper thread), never raised into the caller.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr

from dreamsampler.server.clock import TempoClock

log = logging.getLogger(__name__)

DEFAULT_FADE_S = 0.005
"""Fade at the start and end of each clip, seconds (5 ms)."""


class AudioDeviceNotFoundError(ValueError):
    """No output device matches the requested name; the message lists the devices."""


@dataclass(frozen=True)
class AudioDevice:
    """An audio device as PortAudio reports it (rates in Hz)."""

    index: int
    name: str
    hostapi: str
    max_output_channels: int
    max_input_channels: int
    default_samplerate: float


def _sd() -> Any:
    # Imported lazily: PortAudio scans for JACK when sounddevice is imported, so a JACK server
    # started later would not be seen if the import happened at module load.
    import sounddevice

    return sounddevice


def list_devices() -> list[AudioDevice]:
    """All audio devices (``dreamsampler audio devices``)."""
    sd = _sd()
    apis = sd.query_hostapis()
    return [
        AudioDevice(d["index"], d["name"], apis[d["hostapi"]]["name"], d["max_output_channels"],
                    d["max_input_channels"], float(d["default_samplerate"]))
        for d in sd.query_devices()
    ]


def output_device_names() -> list[str]:
    """Names of the output devices (``/audio.devices``), in PortAudio's order; empty (and logged)
    when the PortAudio library cannot be loaded.

    The first call imports sounddevice, which is when PortAudio looks for a JACK server.
    """
    try:
        devices = list_devices()
    except OSError as exc:  # PortAudio library missing
        log.warning("cannot list audio devices: %s", exc)
        return []
    return [d.name for d in devices if d.max_output_channels > 0]


def find_output_device(name: str | int | None) -> AudioDevice:
    """The output device whose name contains ``name`` (case-insensitive; exact name first), the
    device with that index, or the default output device for None.

    Raises:
        AudioDeviceNotFoundError: nothing matches; the message lists the output devices.
    """
    devices = [d for d in list_devices() if d.max_output_channels > 0]
    listing = "; ".join(f"[{d.index}] {d.name} ({d.hostapi}, {d.max_output_channels} out)"
                        for d in devices) or "none"
    if name is None:
        default = _sd().default.device[1]
        match = [d for d in devices if d.index == default] or devices[:1]
    elif isinstance(name, int):
        match = [d for d in devices if d.index == name]
    else:
        match = [d for d in devices if d.name == name] or [
            d for d in devices if name.lower() in d.name.lower()]
    if not match:
        raise AudioDeviceNotFoundError(f"no audio output device matches {name!r}; "
                                       f"output devices: {listing}")
    return match[0]


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


class DeviceSink:
    """Mixes clips into an audio output stream.

    Args:
        device: output device name (substring), index, or None for the default device.
        samplerate: stream rate in Hz (default: the device's default rate).
        channels: output channels (2).
        blocksize: frames per callback (0 = let the host choose, JACK uses its period).
        latency: PortAudio latency hint (``"low"``, ``"high"`` or seconds).
        on_error: called with the exception (on a helper thread) if the callback fails or
            the stream stops unexpectedly.

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
    ) -> None:
        self.device_spec = device
        self.requested_samplerate = samplerate
        self.channels = channels
        self.blocksize = blocksize
        self.latency = latency
        self.on_error = on_error
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
                refused the settings.
        """
        sd = _sd()
        self.device = find_output_device(self.device_spec)
        self.samplerate = int(self.requested_samplerate or self.device.default_samplerate)
        self._closing = False
        self._stream = sd.OutputStream(
            device=self.device.index, samplerate=self.samplerate, channels=self.channels,
            dtype="float32", blocksize=self.blocksize, latency=self.latency,
            callback=self._callback, finished_callback=self._finished)
        self._stream.start()
        log.info("audio output on %s at %d Hz", self.device.name, self.samplerate)

    def close(self) -> None:
        """Stop and close the stream (clips are dropped)."""
        self._closing = True
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.stop()
            with contextlib.suppress(Exception):
                self._stream.close()
            self._stream = None

    def __enter__(self) -> DeviceSink:
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
            raise RuntimeError("the device sink is not started")
        return float(self._stream.time)

    def monotonic_to_stream(self, t: float) -> float:
        """Convert a :func:`time.monotonic` time (seconds) to stream time (seconds)."""
        return t - time.monotonic() + self.time()

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
            raise RuntimeError("the device sink is not started")
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
            self._render(outdata, frames, dac_time)
        except Exception as exc:  # never let an exception stop the stream
            outdata.fill(0)
            self.callback_errors += 1
            if self.callback_errors == 1 or self.callback_errors % 1000 == 0:
                self._report(exc)

    def _render(self, outdata: np.ndarray, frames: int, dac_time: float) -> None:
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


NextClip = Callable[[int], Awaitable[tuple[np.ndarray, int]]]
"""Jam mode's clip source: ``await request_next(n)`` returns clip n as ``(audio, sr)``."""


class JamLoop:
    """Continuous playback: clip N loops while clip N+1 is generated, then crossfades on a bar.

    Args:
        sink: a started :class:`DeviceSink`.
        clock: the session :class:`TempoClock`, on :func:`time.monotonic` (converted with
            :meth:`DeviceSink.monotonic_to_stream`) or directly on ``sink.time``.
        request_next: async callback returning clip ``n`` as ``(audio, sr)``; it is awaited
            once clip ``n - 1`` has started. Exceptions are logged and the request is retried
            after ``retry_s`` seconds while the current clip keeps looping.
        quantum_beats: grid for the changes, beats (default: one bar of ``clock``).
        crossfade_s: crossfade length between clips, seconds.
        lead_s: minimum time between scheduling and the boundary, seconds (must cover the
            audio buffer latency).
        retry_s: wait before asking again after a failed request, seconds.
    """

    def __init__(
        self,
        sink: DeviceSink,
        clock: TempoClock,
        request_next: NextClip,
        quantum_beats: float | None = None,
        crossfade_s: float = 0.02,
        lead_s: float = 0.05,
        retry_s: float = 0.5,
    ) -> None:
        self.sink = sink
        self.clock = clock
        self.request_next = request_next
        self.quantum_beats = quantum_beats or float(clock.beats_per_bar)
        self.crossfade_s = crossfade_s
        self.lead_s = lead_s
        self.retry_s = retry_s
        self.clips_started = 0
        self.late_clips = 0
        """Changes where the next clip came after the current one had ended (it looped)."""
        self.schedule: list[tuple[int, float, float]] = []
        """(clip id, stream start time, clock start time), seconds, of every clip, in order."""
        self._task: asyncio.Task[None] | None = None
        self._current: int | None = None

    @property
    def running(self) -> bool:
        """True while the jam task runs."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start jamming (OSC ``/jam on``); a second call while running does nothing."""
        if not self.running:
            self._task = asyncio.create_task(self._run(), name="jam-loop")

    async def stop(self, fade_s: float = 0.05) -> None:
        """Stop jamming (OSC ``/jam off``): cancel pending requests and fade the loop out."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._current is not None:
            self.sink.stop_clip(self._current, fade_s=fade_s)
            self._current = None

    async def _fetch(self, n: int) -> tuple[np.ndarray, int]:
        while True:
            try:
                return await self.request_next(n)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("jam: clip %d failed; the current clip keeps looping", n)
                await asyncio.sleep(self.retry_s)

    def _on_stream_clock(self) -> bool:
        return bool(self.clock.time_fn == self.sink.time)

    def _boundary(self) -> tuple[float, float]:
        """Next grid line at least ``lead_s`` ahead: (clock time, stream time), seconds."""
        now = self.clock.time_fn()
        t = self.clock.next_boundary(self.quantum_beats, now + self.lead_s)
        return t, t if self._on_stream_clock() else self.sink.monotonic_to_stream(t)

    async def _run(self) -> None:
        n = 0
        current_start = 0.0
        current_len = 0.0
        while True:
            audio, sr = await self._fetch(n)
            t_mono, t_stream = self._boundary()
            first = self._current is None
            clip_id = self.sink.play(audio, sr, at=t_stream, loop=True,
                                     fade_in_s=DEFAULT_FADE_S if first else self.crossfade_s,
                                     replace=self._current)
            if not first and t_mono - current_start > current_len + 1e-3:
                self.late_clips += 1
            self._current = clip_id
            self.schedule.append((clip_id, t_stream, t_mono))
            self.clips_started += 1
            current_start, current_len = t_mono, np.asarray(audio).shape[-1] / sr
            await asyncio.sleep(max(0.0, t_mono - self.clock.time_fn()))  # until it sounds
            n += 1
