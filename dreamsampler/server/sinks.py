"""What every sink is: a peer that takes finished clips (folder, device; a new sink is a module).

The service knows sinks only through :class:`Sink` (it never imports a concrete one; the standard
set is built by :func:`dreamsampler.server.standard_sinks.standard_sinks`). For each finished clip
:class:`~dreamsampler.server.fanout.Fanout` delivers it to every sink the job names at the same
time (:meth:`Sink.deliver`; none waits for another), applies each sink's failure policy
(:attr:`Sink.required`) and, once the job's delivery succeeded, offers the clip to every sink
(:meth:`Sink.offer`: e.g. the device keeps recent clips for ``/play``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from dreamsampler.server.delivery import Clip, Delivery


class SinkError(OSError):
    """The clip cannot be delivered; the message names the sink, folder or file and the reason."""


class Sink(Protocol):
    """One destination for clips.

    Attributes:
        name: how jobs name it (``Delivery.sinks``).
        required: the failure policy: when a required sink cannot take a job's clip the job fails
            (``/fail``); an optional sink's failure is reported beside the success (``/done``
            with the sink's error appended). A job also fails when every sink it names failed.
    """

    name: str
    required: bool

    async def start(self) -> None:
        """Prepare at server start (the folder: check it, clean a crash's leftovers; the device:
        open it when one is configured).

        Raises:
            SinkError: the sink cannot work (fatal for a required sink; an optional sink's
                failure is logged and the server serves on).
        """

    def check(self, job: Delivery | None = None) -> None:
        """Refuse early (before ``job`` is queued; ``None``: any typical clip) when this sink
        cannot take its clip.

        Raises:
            SinkError: why (e.g. the output folder is not writable, or too full for the clip).
        """

    def status(self) -> Mapping[str, Any]:
        """Fields for ``/status`` (``output_dir``, ``output_writable``, ``underruns``…)."""

    async def deliver(self, clip: Clip) -> Any:
        """Take the clip; returns a receipt (the folder: the WAV's path).

        Raises:
            SinkError: the clip could not be delivered; nothing is left half-done.
        """

    def offer(self, clip: Clip) -> None:
        """See every clip whose job was delivered, named or not (no I/O; never raises)."""

    async def stop(self) -> None:
        """Stop what is sounding (``/stop``); a sink that does not sound does nothing."""

    async def close(self) -> None:
        """Release the sink's resources."""


class Player(Sink, Protocol):
    """A sink that sounds (the audio device): what ``/play``, ``/jam`` and ``volume`` reach.

    Attributes:
        volume: linear gain of the clips it plays (>= 0).
        configured: whether a device is configured at all.
    """

    volume: float

    @property
    def configured(self) -> bool: ...

    @property
    def underruns(self) -> int: ...

    def open(self) -> Any:
        """Open the device if needed. Raises ``SinkError`` when it cannot."""

    def replay(self, job_id: int, quantum: float | None = None) -> float:
        """Play kept clip ``job_id``; returns seconds until it starts. Raises ``SinkError``."""

    def stop_jam(self, fade_s: float = 0.05) -> None:
        """Fade the looping jam clip out."""
