"""Session tempo and beat grid: set directly, followed from MIDI clock, or from Ableton Link.

The grid is a straight line ``beat(t) = anchor_beat + (t - anchor_time) * bpm / 60`` in the
clock's time base (``time_fn``, default :func:`time.monotonic`, in seconds). A tempo change
re-anchors at the moment of the change, so the beat position never jumps.

MIDI clock (24 pulses per quarter note): tempo is the least-squares slope of the last
``smoothing_ticks`` pulse arrival times (a smoothed average of the tick intervals that is immune
to the per-period jitter of JACK MIDI); ``start`` sets the position to beat 0 at the next pulse,
``continue`` resumes from the current position, ``stop`` freezes it, ``songpos`` (in MIDI
beats = 16th notes) moves it.

Ableton Link is optional (the ``aalink`` package is GPL): ``enable_link`` imports it lazily and
raises :class:`LinkUnavailableError` if it is not installed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import mido
import numpy as np

log = logging.getLogger(__name__)

MIN_BPM = 20.0
"""Tempi at or below this (BPM) are refused."""
MAX_BPM = 999.0
"""Tempi above this (BPM) are refused."""
PPQN = 24
"""MIDI clock pulses per quarter note."""


class TempoError(ValueError):
    """A tempo outside (20, 999] BPM or not a finite number."""


class LinkUnavailableError(RuntimeError):
    """Ableton Link was asked for but the optional ``aalink`` package is not installed."""


def validate_bpm(bpm: float) -> float:
    """Return ``bpm`` as float if 20 < bpm <= 999 BPM.

    Raises:
        TempoError: not a finite number, or outside that range (the message says so).
    """
    try:
        value = float(bpm)
    except (TypeError, ValueError) as exc:
        raise TempoError(f"tempo must be a number in BPM, got {bpm!r}") from exc
    if not math.isfinite(value) or not MIN_BPM < value <= MAX_BPM:
        raise TempoError(
            f"tempo {bpm!r} BPM refused: it must be > {MIN_BPM:g} and <= {MAX_BPM:g} BPM"
        )
    return value


def bars_to_seconds(bars: float, bpm: float, beats_per_bar: int = 4) -> float:
    """Duration of ``bars`` bars in seconds at ``bpm`` (BPM, quarter-note beats).

    Raises:
        TempoError: invalid tempo. ValueError: negative bars or beats_per_bar < 1.
    """
    if bars < 0 or beats_per_bar < 1:
        raise ValueError(f"bars must be >= 0 and beats_per_bar >= 1 (got {bars}, "
                         f"{beats_per_bar})")
    return bars * beats_per_bar * 60.0 / validate_bpm(bpm)


Source = Literal["internal", "midi", "link"]


class TempoClock:
    """Session tempo (BPM) and a beat grid on a monotonic clock (seconds).

    Thread-safe: MIDI messages may arrive on one thread while others query the grid.

    Args:
        bpm: initial tempo (BPM).
        beats_per_bar: beats in a bar (for :meth:`next_bar`).
        time_fn: the time base in seconds (default :func:`time.monotonic`).
        follow_midi_clock: whether MIDI clock messages drive tempo and position.
        smoothing_ticks: number of recent MIDI clock pulses in the tempo fit (>= 6).

    Raises:
        TempoError: invalid initial tempo.
    """

    def __init__(
        self,
        bpm: float = 120.0,
        beats_per_bar: int = 4,
        time_fn: Callable[[], float] = time.monotonic,
        follow_midi_clock: bool = True,
        smoothing_ticks: int = 48,
    ) -> None:
        if beats_per_bar < 1:
            raise ValueError(f"beats_per_bar must be >= 1, got {beats_per_bar}")
        if smoothing_ticks < 6:
            raise ValueError(f"smoothing_ticks must be >= 6, got {smoothing_ticks}")
        self._lock = threading.RLock()
        self.time_fn = time_fn
        self.beats_per_bar = beats_per_bar
        self.follow_midi_clock = follow_midi_clock
        self._bpm = validate_bpm(bpm)
        self._anchor_time = time_fn()
        self._anchor_beat = 0.0
        self._running = True
        self.source: Source = "internal"
        # MIDI clock state
        self._ticks: deque[tuple[int, float]] = deque(maxlen=smoothing_ticks)
        self._tick_index = 0
        self._pos_ticks = 0  # position in pulses since beat 0 (moved by start/songpos)
        self._await_first_tick = False
        self._link: Any = None

    # ---- tempo & grid ---------------------------------------------------------------------

    @property
    def bpm(self) -> float:
        """Current tempo in BPM."""
        with self._lock:
            self._poll_link()
            return self._bpm

    @property
    def running(self) -> bool:
        """False after a MIDI ``stop`` (the position is frozen) until ``start``/``continue``."""
        return self._running

    def set_tempo(self, bpm: float, now: float | None = None) -> float:
        """Set the tempo (config, OSC ``/tempo``) keeping the current beat position.

        Returns the tempo set (BPM); with Link enabled the tempo is proposed to the session.

        Raises:
            TempoError: outside (20, 999] BPM.
        """
        value = validate_bpm(bpm)
        with self._lock:
            t = self.time_fn() if now is None else now
            self._reanchor(t)
            self._bpm = value
            if self._link is not None:
                self._link.tempo = value
        return value

    def _reanchor(self, t: float) -> None:
        self._anchor_beat = self._beat_unlocked(t)
        self._anchor_time = t

    def _beat_unlocked(self, t: float) -> float:
        if not self._running:
            return self._anchor_beat
        return self._anchor_beat + (t - self._anchor_time) * self._bpm / 60.0

    def beat_at(self, t: float | None = None) -> float:
        """Beat position (quarter notes since beat 0) at time ``t`` (seconds; default now)."""
        with self._lock:
            self._poll_link()
            return self._beat_unlocked(self.time_fn() if t is None else t)

    def time_at_beat(self, beat: float) -> float:
        """Time (seconds, clock time base) at which the grid reaches ``beat``.

        Raises:
            RuntimeError: the clock is stopped (no grid to follow).
        """
        with self._lock:
            self._poll_link()
            if not self._running:
                raise RuntimeError("the clock is stopped")
            return self._anchor_time + (beat - self._anchor_beat) * 60.0 / self._bpm

    def next_boundary(self, quantum_beats: float, now: float | None = None) -> float:
        """Time (seconds) of the next grid line that is a multiple of ``quantum_beats``.

        ``quantum_beats=4`` in 4/4 is the next bar, 1 the next beat, 0 means "now". A boundary
        that falls exactly on ``now`` is returned as is. When the clock is stopped (MIDI
        ``stop``) there is no grid and ``now`` is returned.

        Raises:
            ValueError: negative quantum.
        """
        if quantum_beats < 0:
            raise ValueError(f"quantum must be >= 0 beats, got {quantum_beats}")
        with self._lock:
            self._poll_link()
            t = self.time_fn() if now is None else now
            if quantum_beats == 0 or not self._running:
                return t
            beat = self._beat_unlocked(t)
            target = math.ceil(beat / quantum_beats - 1e-9) * quantum_beats
            return self._anchor_time + (target - self._anchor_beat) * 60.0 / self._bpm

    def next_bar(self, now: float | None = None) -> float:
        """Time (seconds) of the next bar line (``beats_per_bar`` beats)."""
        return self.next_boundary(self.beats_per_bar, now)

    def bar_seconds(self, bars: float = 1.0) -> float:
        """Duration of ``bars`` bars at the current tempo, in seconds."""
        return bars * self.beats_per_bar * 60.0 / self.bpm

    # ---- MIDI clock -----------------------------------------------------------------------

    def handle_midi(self, msg: mido.Message, t: float | None = None) -> bool:
        """Feed a MIDI realtime/system message received at time ``t`` (seconds; default now).

        Handles ``clock``, ``start``, ``stop``, ``continue`` and ``songpos``. Returns True if
        the message was a clock message (consumed), False otherwise. A tempo estimate outside
        (20, 999] BPM is ignored (logged).
        """
        if msg.type not in ("clock", "start", "stop", "continue", "songpos"):
            return False
        if not self.follow_midi_clock:
            return True
        with self._lock:
            now = self.time_fn() if t is None else t
            self.source = "midi"
            if msg.type == "clock":
                self._on_tick(now)
            elif msg.type == "start":
                self._pos_ticks = 0
                self._await_first_tick = True
                self._freeze(now, 0.0)
            elif msg.type == "continue":
                self._await_first_tick = True
            elif msg.type == "stop":
                self._freeze(now, self._beat_unlocked(now))
                self._pos_ticks = round(self._anchor_beat * PPQN)
            elif msg.type == "songpos":  # while playing: resume from there at the next pulse
                was_running = self._running or self._await_first_tick
                self._pos_ticks = msg.pos * (PPQN // 4)
                self._freeze(now, self._pos_ticks / PPQN)
                self._await_first_tick = was_running
        return True

    def _freeze(self, t: float, beat: float) -> None:
        self._running = False
        self._anchor_time = t
        self._anchor_beat = beat

    def _on_tick(self, t: float) -> None:
        if self._ticks and t - self._ticks[-1][1] > 1.0:  # the clock paused: restart the fit
            self._ticks.clear()
        self._ticks.append((self._tick_index, t))
        self._tick_index += 1
        if len(self._ticks) >= 6:
            idx = np.array([i for i, _ in self._ticks], dtype=np.float64)
            times = np.array([x for _, x in self._ticks], dtype=np.float64)
            slope, intercept = np.polyfit(idx - idx[-1], times - times[-1], 1)
            if slope > 0:
                bpm = 60.0 / (slope * PPQN)
                try:
                    self._bpm = validate_bpm(bpm)
                except TempoError:
                    log.warning("MIDI clock tempo %.2f BPM ignored (out of range)", bpm)
                t_fit = times[-1] + intercept  # fitted arrival time of this pulse
            else:
                t_fit = t
        else:
            t_fit = t
        if self._await_first_tick:  # the first pulse after start/continue is the position
            self._await_first_tick = False
            self._running = True
        elif self._running:
            self._pos_ticks += 1
        else:
            return  # stopped: tempo follows, position stays
        self._anchor_time = t_fit
        self._anchor_beat = self._pos_ticks / PPQN

    # ---- Ableton Link ---------------------------------------------------------------------

    def enable_link(self, loop: Any = None) -> None:
        """Follow (and propose tempo to) an Ableton Link session through ``aalink``.

        Args:
            loop: the asyncio event loop for aalink (default: the running loop).

        Raises:
            LinkUnavailableError: ``aalink`` is not installed ("install dreamsampler[link]").
        """
        try:
            import aalink  # GPL, optional
        except ImportError as exc:
            raise LinkUnavailableError(
                "Ableton Link needs the optional 'aalink' package: "
                "pip install 'dreamsampler[link]'"
            ) from exc
        if loop is None:
            import asyncio

            loop = asyncio.get_running_loop()
        with self._lock:
            link = aalink.Link(self._bpm, loop)
            link.quantum = self.beats_per_bar
            link.enabled = True
            self._link = link
            self.source = "link"
            self._running = True

    def disable_link(self) -> None:
        """Leave the Link session; the grid continues internally at the last tempo."""
        with self._lock:
            if self._link is not None:
                self._link.enabled = False
                self._link = None
                self.source = "internal"

    def _poll_link(self) -> None:
        if self._link is None:
            return
        t = self.time_fn()
        self._bpm = float(self._link.tempo)
        self._anchor_beat = float(self._link.beat)
        self._anchor_time = t
