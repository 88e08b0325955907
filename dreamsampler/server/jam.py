"""Jam mode, an edge: it keeps music going by submitting one job after another to the service.

Each job names the device sink with ``jam=True``: the device loops the clip and crossfades from the
previous one on the next bar line (see :class:`~dreamsampler.server.device_sink.DeviceSink`). Jam
awaits each delivery, waits until the clip sounds, then asks for the next one, so clip N loops
(no silence) while clip N+1 is generated. Clips cycle through a list of presets, or use the session
parameters with the seed advancing by one per clip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from dreamsampler.engine.jobs import QueueFull
from dreamsampler.engine.request import RequestError
from dreamsampler.server.delivery import DEVICE, FOLDER, Delivery, Played
from dreamsampler.server.service import JobError, Service
from dreamsampler.server.sinks import SinkError

log = logging.getLogger(__name__)

SCHEDULE_KEPT = 64
"""Jam clips whose start times are kept (for inspection and tests)."""


class Jam:
    """The jam edge of one :class:`Service`.

    Args:
        service: where the jobs go.
        retry_s: wait after a failed clip before asking again, seconds (the current clip keeps
            looping meanwhile).
        sleep: awaits a delay in seconds on the service clock's time base (default
            :func:`asyncio.sleep`; a simulation advances its clock instead).
    """

    def __init__(self, service: Service, retry_s: float = 0.5,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.service = service
        self.retry_s = retry_s
        self.sleep = sleep
        self.presets: list[str] = []
        self.clips_started = 0
        self.late_clips = 0
        """Changes where the next clip came after the current one had ended (it looped)."""
        self.schedule: deque[Played] = deque(maxlen=SCHEDULE_KEPT)
        """The last :data:`SCHEDULE_KEPT` clips started, in order (stream and clock start
        times, seconds)."""
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """True while jam mode plays."""
        return self._task is not None and not self._task.done()

    async def start(self, presets: Sequence[str] = ()) -> None:
        """Start jam mode (``/jam on``): cycle through ``presets`` (default: the bank chosen by
        MIDI program change, else the session parameters with a locked seed advancing by one, or a
        fresh seed per clip).

        Raises:
            PresetRequestError: unknown preset. SinkError: no working device.
            RequestError: the session cannot make a request.
        """
        names = self.service.bank_presets(tuple(presets))
        self.service.require_device()
        if not names:  # check the session can make a request before looping on it
            self.service.session_job()
        await self.stop()
        self.presets = names
        self.clips_started = self.late_clips = 0
        self.schedule.clear()
        self._task = asyncio.create_task(self._run(), name="jam")
        log.info("jam on: %s", ", ".join(names) or "session parameters")

    async def stop(self, fade_s: float = 0.05) -> None:
        """Stop jam mode (``/jam off``): cancel the pending job, fade the loop out."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self.service.stop_jam(fade_s)

    def _job(self, n: int) -> Delivery:
        if self.presets:
            return self.service.preset_job(self.presets[n % len(self.presets)], jam=True)
        return self.service.session_job(seed_offset=n, sinks=(FOLDER, DEVICE), jam=True)

    async def _next(self, n: int) -> Played:
        while True:
            try:
                delivered = await self.service.run(self._job(n))
                played = delivered.receipts.get(DEVICE)
                if isinstance(played, Played):
                    return played
                log.error("jam: clip %d is not on the device: %s", n,
                          delivered.sink_errors.get(DEVICE, "unknown reason"))
            except (JobError, RequestError, SinkError, QueueFull) as exc:
                log.error("jam: clip %d failed (%s); the current clip keeps looping", n, exc)
            await self.sleep(self.retry_s)

    async def _run(self) -> None:
        n = 0
        previous: Played | None = None
        while True:
            played = await self._next(n)
            assert played.clock_time is not None
            if previous is not None and previous.clock_time is not None and (
                    played.clock_time - previous.clock_time > previous.duration + 1e-3):
                self.late_clips += 1
            self.schedule.append(played)
            self.clips_started += 1
            previous = played
            # until it sounds
            await self.sleep(max(0.0, played.clock_time - self.service.now()))
            n += 1
