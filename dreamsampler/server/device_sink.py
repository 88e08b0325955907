"""The audio-device sink: plays clips on the output device, quantized to the session's beat grid.

A peer of the folder sink (:class:`~dreamsampler.server.sinks.Sink` ``device``). It owns the
:class:`~dreamsampler.server.mixer.Mixer` (opened on first use and re-opened after a failure), the
replay cache behind ``/play`` (the last ``keep`` delivered clips offered to it) and the jam slot:
a job with ``jam=True`` loops on the device and crossfades from the previous jam clip on the next
bar line.

Times are seconds on the tempo clock's time base (``clock.time_fn``, :func:`time.monotonic` by
default) unless named *stream time* (the device's clock); the mixer converts between the two with
the same ``time_fn``, so a simulated clock drives the whole sink. A device
that does not exist or fails is reported to whoever asked (:class:`DeviceError`); the folder still
gets every clip.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import numpy as np

from dreamsampler.server.clock import TempoClock
from dreamsampler.server.delivery import DEVICE, Clip, Delivery, Played
from dreamsampler.server.mixer import DEFAULT_FADE_S, Mixer
from dreamsampler.server.sinks import SinkError

log = logging.getLogger(__name__)

LEAD_S = 0.05
"""Least time between scheduling a clip and its start, seconds (covers the device buffer)."""

JAM_CROSSFADE_S = 0.02
"""Crossfade between consecutive jam clips, seconds."""


class DeviceError(SinkError):
    """The device cannot play the clip (none configured, it cannot be opened, unknown job id)."""


class DeviceSink:
    """Plays clips on one audio output device.

    Args:
        device: ``live.audio_out``: a device name (substring) or index as text; None = no
            device configured (every play fails with a :class:`DeviceError`).
        clock: the session tempo and beat grid.
        play_quantum: default start grid, beats (0 = as soon as possible).
        keep: clips kept for ``/play``.
        mixer_factory: builds the mixer (``Mixer(device=..., on_error=..., time_fn=...)``,
            ``time_fn`` being ``clock.time_fn``).
    """

    name = DEVICE
    required = False
    """A device problem is reported beside the clip; the job does not fail for it."""

    def __init__(self, device: str | None, clock: TempoClock, play_quantum: float = 4.0,
                 keep: int = 16, mixer_factory: Callable[..., Mixer] = Mixer) -> None:
        self.device = device
        self.clock = clock
        self.play_quantum = play_quantum
        self.keep = keep
        self.mixer_factory = mixer_factory
        self.mixer: Mixer | None = None
        self.error: str | None = None
        self.volume = 1.0
        """Linear gain of clips sent to the device (MIDI parameter ``volume``)."""
        self.recent: OrderedDict[int, Clip] = OrderedDict()
        """The last ``keep`` clips by job id (for ``/play``)."""
        self.played: deque[Played] = deque(maxlen=max(1, keep))
        """The last ``keep`` receipts (newest last)."""
        self.plays = 0
        """Clips started on the device since start."""
        self._jam_clip: int | None = None
        self._underruns_before = 0

    # ---- the sink interface -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the device when one is configured.

        Raises:
            DeviceError: it cannot be opened (the service logs it and serves on).
        """
        if self.configured:
            self.open()

    def check(self, job: Delivery | None = None) -> None:
        """Never refuses early: a device problem is reported per clip (the folder gets it)."""

    def status(self) -> dict[str, Any]:
        """``underruns`` since start."""
        return {"underruns": self.underruns}

    def offer(self, clip: Clip) -> None:
        """Keep a delivered clip for ``/play`` (the oldest beyond ``keep`` is dropped)."""
        self.recent[clip.job_id] = clip
        while len(self.recent) > self.keep:
            self.recent.popitem(last=False)

    async def deliver(self, clip: Clip) -> Played:
        """Play the clip at the job's quantum (a jam clip: loop it from the next bar line).

        Raises:
            DeviceError: no working device.
        """
        if clip.job.jam:
            return self._play_jam(clip)
        return self._play(clip, clip.job.quantum)

    async def stop(self) -> None:
        """Fade out everything on the device (nothing to do without one)."""
        self._jam_clip = None
        if self.mixer is not None:
            self.mixer.stop()

    async def close(self) -> None:
        """Close the device stream."""
        self._close_mixer()

    # ---- replay and jam -----------------------------------------------------------------------

    def replay(self, job_id: int, quantum: float | None = None) -> float:
        """Play kept clip ``job_id`` at the next multiple of ``quantum`` beats (default
        ``play_quantum``; 0 = now). Returns the delay until it starts, seconds.

        Raises:
            DeviceError: unknown job id (not among the kept clips) or no working device.
        """
        clip = self.recent.get(job_id)
        if clip is None:
            kept = ", ".join(str(k) for k in self.recent) or "none"
            raise DeviceError(f"no delivered clip with job id {job_id} (kept: {kept})")
        played = self._play(clip, quantum)
        return 0.0 if played.clock_time is None else max(
            0.0, played.clock_time - self.clock.time_fn())

    def stop_jam(self, fade_s: float = 0.05) -> None:
        """Fade the looping jam clip out (nothing happens when none loops)."""
        if self._jam_clip is not None and self.mixer is not None:
            self.mixer.stop_clip(self._jam_clip, fade_s=fade_s)
        self._jam_clip = None

    def _play(self, clip: Clip, quantum: float | None) -> Played:
        mixer = self.open()
        q = self.play_quantum if quantum is None else quantum
        now = self.clock.time_fn()
        at = self.clock.next_boundary(q, now + LEAD_S) if q > 0 else None
        audio, sr = clip.result.audio, clip.result.sample_rate
        try:
            at_stream = None if at is None else mixer.monotonic_to_stream(at)
            clip_id = mixer.play(audio, sr, at_stream, gain=self.volume)
        except (RuntimeError, ValueError) as exc:
            raise DeviceError(f"cannot play job {clip.job_id}: {exc}") from None
        return self._played(Played(clip.job_id, clip_id, at_stream, at, audio.shape[-1] / sr))

    def _play_jam(self, clip: Clip) -> Played:
        mixer = self.open()
        now = self.clock.time_fn()
        at = self.clock.next_boundary(float(self.clock.beats_per_bar), now + LEAD_S)
        audio, sr = clip.result.audio, clip.result.sample_rate
        first = self._jam_clip is None
        try:
            at_stream = mixer.monotonic_to_stream(at)
            clip_id = mixer.play(audio * np.float32(self.volume), sr, at_stream, loop=True,
                                 fade_in_s=DEFAULT_FADE_S if first else JAM_CROSSFADE_S,
                                 replace=self._jam_clip)
        except (RuntimeError, ValueError) as exc:
            raise DeviceError(f"cannot play job {clip.job_id}: {exc}") from None
        self._jam_clip = clip_id
        return self._played(Played(clip.job_id, clip_id, at_stream, at, audio.shape[-1] / sr))

    def _played(self, played: Played) -> Played:
        self.played.append(played)
        self.plays += 1
        return played

    # ---- the device ---------------------------------------------------------------------------

    @property
    def configured(self) -> bool:
        return self.device is not None

    def open(self) -> Mixer:
        """The running mixer, (re)opened if it is not running.

        Raises:
            DeviceError: no device configured, or it cannot be opened.
        """
        if self.device is None:
            raise DeviceError("no audio output device configured (start the server with "
                              "--audio-out DEVICE; 'dreamsampler audio devices' lists them)")
        if self.mixer is not None and not self.mixer.active:
            log.warning("audio device stream is not running (%s); re-opening",
                        self.error or "stopped")
            self._close_mixer()
        if self.mixer is not None:
            return self.mixer
        spec: str | int = int(self.device) if self.device.isdigit() else self.device
        mixer = self.mixer_factory(device=spec, on_error=self._failed, time_fn=self.clock.time_fn)
        try:
            mixer.start()
        except Exception as exc:  # AudioDeviceNotFoundError, PortAudioError, OSError
            mixer.close()
            self.error = str(exc)
            raise DeviceError(f"audio device {self.device!r} unavailable: {exc}") from None
        self.mixer, self.error = mixer, None
        return mixer

    def _close_mixer(self) -> None:
        if self.mixer is not None:
            self._underruns_before += self.mixer.underruns
            self.mixer.close()
            self.mixer = None
            self._jam_clip = None

    def _failed(self, exc: BaseException) -> None:  # helper thread
        self.error = str(exc)
        log.error("audio device %r failed: %s; clips still go to the output folder",
                  self.device, exc)

    @property
    def underruns(self) -> int:
        """Audio output underruns since start (over every device stream opened)."""
        return self._underruns_before + (self.mixer.underruns if self.mixer else 0)
