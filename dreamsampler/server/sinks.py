"""What every sink is: a peer that takes finished clips (folder, device; a new sink is a module).

The service offers each finished clip to every sink (:meth:`Sink.offer`, e.g. the device sink keeps
recent clips for ``/play``) and delivers it to the sinks the job names (:meth:`Sink.deliver`).
"""

from __future__ import annotations

from typing import Any, Protocol

from dreamsampler.server.delivery import Clip


class SinkError(OSError):
    """The clip cannot be delivered; the message names the sink, folder or file and the reason."""


class Sink(Protocol):
    """One destination for clips.

    Attributes:
        name: how jobs name it (``Delivery.sinks``).
    """

    name: str

    def check(self) -> None:
        """Refuse early (before a job is queued) when this sink cannot take clips.

        Raises:
            SinkError: why (e.g. the output folder is not writable).
        """

    def offer(self, clip: Clip) -> None:
        """See every finished clip, named or not (no I/O; never raises)."""

    async def deliver(self, clip: Clip) -> Any:
        """Take the clip; returns a receipt (the folder: the WAV's path).

        Raises:
            SinkError: the clip could not be delivered; nothing is left half-done.
        """

    async def stop(self) -> None:
        """Stop what is sounding (``/stop``); a sink that does not sound does nothing."""

    async def close(self) -> None:
        """Release the sink's resources."""
