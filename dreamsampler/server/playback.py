"""Device control: what the edges may ask of the audio device (``/play``, jam, volume, the device
list), a part of the service reached through its narrow API. PortAudio is queried here, off the
event loop, never by an edge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from dreamsampler.server import audio_devices
from dreamsampler.server.sinks import Player, SinkError


class Playback:
    """Controls the device sink that ``device()`` returns (None: no device sink).

    Args:
        device: returns the current device sink (looked up on each call: the service's sinks
            may be replaced).
    """

    def __init__(self, device: Callable[[], Player | None]) -> None:
        self._device = device

    def _require(self) -> Player:
        device = self._device()
        if device is None:
            raise SinkError("no audio device sink")
        return device

    def play(self, job_id: int, quantum: float | None = None) -> float:
        """Play kept clip ``job_id`` (``/play``); returns the delay until it starts, seconds.

        Raises:
            SinkError: unknown job id or no working device.
        """
        return self._require().replay(job_id, quantum)

    def require(self) -> None:
        """Open the audio device if needed (jam mode needs it).

        Raises:
            SinkError: no device configured, or it cannot be opened.
        """
        self._require().open()

    def stop_jam(self, fade_s: float = 0.05) -> None:
        """Fade out the looping jam clip."""
        device = self._device()
        if device is not None:
            device.stop_jam(fade_s)

    def set_volume(self, gain: float) -> None:
        """Linear gain of clips sent to the device (>= 0)."""
        device = self._device()
        if device is not None:
            device.volume = max(0.0, float(gain))

    @staticmethod
    async def output_devices() -> list[str]:
        """The audio output devices' names as PortAudio reports them (``/audio/devices``);
        PortAudio's first initialisation can take a while (it probes JACK): off the loop."""
        return await asyncio.to_thread(audio_devices.output_device_names)
