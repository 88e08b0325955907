"""The transport: the session tempo and beat grid (internal, MIDI clock or Ableton Link), a part
of the service that the edges reach through the service's narrow API (``set_tempo``, ``now``,
``follow_midi_clock``)."""

from __future__ import annotations

from typing import Any

from dreamsampler.config import ConfigError, LiveConfig
from dreamsampler.engine.request import RequestError
from dreamsampler.server.clock import LinkUnavailableError, TempoClock, TempoError


class Transport:
    """Owns the :class:`TempoClock` (BPM; :func:`time.monotonic` seconds).

    Args:
        live: the ``live`` config section (tempo, beats per bar, Link).
    """

    def __init__(self, live: LiveConfig) -> None:
        self.link = live.link
        self.clock = TempoClock(live.tempo, live.beats_per_bar)

    def start(self) -> None:
        """Join Ableton Link when ``live.link`` asks for it.

        Raises:
            ConfigError: ``aalink`` is not installed.
        """
        if self.link:
            try:
                self.clock.enable_link()
            except LinkUnavailableError as exc:
                raise ConfigError(f"live.link: {exc}") from None

    def close(self) -> None:
        self.clock.disable_link()

    def set_tempo(self, bpm: float) -> float:
        """Set the session tempo (BPM); returns it.

        Raises:
            RequestError: not > 20 and <= 999 BPM.
        """
        try:
            return self.clock.set_tempo(bpm)
        except TempoError as exc:
            raise RequestError(str(exc)) from None

    def now(self) -> float:
        """Seconds on the clock's time base (the base of ``Played.clock_time``)."""
        return self.clock.time_fn()

    def follow_midi_clock(self, msg: Any) -> bool:
        """Feed one MIDI message to the clock; True when it was a clock message (start, stop,
        clock ticks) and is used up."""
        return bool(self.clock.handle_midi(msg, msg.time or None))
