"""The job builders: what an edge asks for (generation parameters, a preset name, the session)
becomes one typed :class:`~dreamsampler.server.delivery.Delivery`, validated over the session
defaults with its bar length resolved at the session tempo (once, here). A part of the service;
edges reach it through ``Service.job``, ``Service.session_job`` and ``Service.preset_job``."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from dreamsampler.engine.request import RequestError
from dreamsampler.server.delivery import DEVICE, FOLDER, Delivery, GenerationParams, Listener
from dreamsampler.server.preset_book import PresetBook
from dreamsampler.server.session import SessionParams


class JobBuilder:
    """Builds typed jobs.

    Args:
        params: the session defaults and request building.
        presets: the preset book.
        sinks: returns the names of the sinks a job may name.
    """

    def __init__(self, params: SessionParams, presets: PresetBook,
                 sinks: Callable[[], Collection[str]]) -> None:
        self.params = params
        self.presets = presets
        self._sinks = sinks

    def job(self, params: GenerationParams, *, transfer: bool = False, job_id: int | None = None,
            name: str | None = None, sinks: tuple[str, ...] = (FOLDER,),
            quantum: float | None = None, jam: bool = False,
            extra: dict[str, Any] | None = None, reply: Listener | None = None) -> Delivery:
        """A job for ``params`` over the session defaults, validated, bars resolved.

        Raises:
            RequestError: a value out of range, beyond the limits, a missing input, an unloaded
                concept, an unknown sink.
        """
        known = self._sinks()
        for sink in sinks:
            if sink not in known:
                raise RequestError(f"unknown sink {sink!r} (known: {', '.join(known)})")
        request, loop = self.params.build(params, transfer)
        return Delivery(request, job_id=job_id, name=name, loop=loop, sinks=sinks,
                        quantum=quantum, jam=jam, extra=dict(extra or {}), reply=reply)

    def session_job(self, *, seed_offset: int = 0, sinks: tuple[str, ...] = (FOLDER,),
                    jam: bool = False, reply: Listener | None = None) -> Delivery:
        """A job from the session parameters (``/trigger``, jam without presets): a locked
        seed advanced by ``seed_offset``, else a fresh one; a set input makes it a transfer.
        Raises ``RequestError`` (see :meth:`job`)."""
        params, transfer = self.params.trigger_params(seed_offset)
        return self.job(params, transfer=transfer, sinks=sinks, jam=jam, reply=reply)

    def preset_job(self, name: str, overrides: GenerationParams | None = None, *,
                   jam: bool = False, reply: Listener | None = None) -> Delivery:
        """A job from preset ``name`` (its seed policy, file name and sinks); ``overrides``
        (MIDI velocity, say) win. The preset's seed policy advances once the job is built.

        Raises:
            PresetRequestError: unknown preset. RequestError: see :meth:`job`.
        """
        spec = self.presets.job(name, overrides)
        sinks = (FOLDER, DEVICE) if jam else spec.sinks
        job = self.job(spec.params, transfer=spec.transfer, name=spec.name, sinks=sinks,
                       jam=jam, extra=spec.extra, reply=reply)
        self.presets.accepted(spec)
        return job
