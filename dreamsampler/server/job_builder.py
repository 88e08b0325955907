"""The job builders: what an edge asks for (generation parameters, a preset name, the session)
becomes one typed :class:`~dreamsampler.server.delivery.Delivery`, validated over the session
defaults with its bar length resolved at the session tempo (once, here). A part of the service;
edges reach it through ``Service.job``, ``Service.session_job``, ``Service.preset_job`` and
``Service.separate_job``."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from dreamsampler.engine import catalog
from dreamsampler.engine.request import GenerationRequest, RequestError
from dreamsampler.server.delivery import DEVICE, FOLDER, Delivery, GenerationParams, Listener
from dreamsampler.server.preset_book import PresetBook
from dreamsampler.server.session import SessionParams, conform_request


class JobBuilder:
    """Builds typed jobs.

    Args:
        params: the session defaults and request building.
        presets: the preset book.
        sinks: returns the names of the sinks a job may name.
        family: returns the loaded model family's name (``EngineStatus.family``).
    """

    def __init__(self, params: SessionParams, presets: PresetBook,
                 sinks: Callable[[], Collection[str]],
                 family: Callable[[], str] = lambda: "") -> None:
        self.params = params
        self.presets = presets
        self._sinks = sinks
        self._family = family

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
        self._check_family(request)
        if getattr(request, "stems", 0) and loop is not None and loop.conform:
            raise RequestError("stems 1 with a conformed clip (bpm or key) is not supported yet: "
                               "the stems are separated before the conform; send conform 0, or "
                               "/separate the conformed clip")
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

    def _check_family(self, request: GenerationRequest) -> None:
        """Refuse, before queuing, a continuation (any side) or inpainting that the loaded
        model family cannot do (issue 18). Raises ``RequestError``."""
        family = self._family()
        if (request.is_inpaint and family in catalog.FAMILY_NAMES
                and family not in catalog.INPAINTING_FAMILIES):
            what = (f"continue a clip (side {request.side})" if request.continuation is not None
                    else "inpaint a clip")
            raise RequestError(f"model family {family!r} cannot {what}: it has no inpainting "
                               "(Stable Audio 3 can)")

    def conform_job(self, params: GenerationParams, *, job_id: int | None = None,
                    name: str | None = None, reply: Listener | None = None) -> Delivery:
        """A no-model conform job (``/conform``, issue 18): the engine reads the input, the
        delivery step conforms it (:func:`~dreamsampler.server.fanout.fit`, in a worker
        thread) and the folder sink writes the loop.

        Raises:
            RequestError: see :func:`~dreamsampler.server.session.conform_request`.
        """
        request, loop = conform_request(params, self.params.config, self.params.clock())
        stem = name or (f"{request.input_path.stem}_conformed" if request.input_path else None)
        return Delivery(request, job_id=job_id, name=stem, loop=loop, reply=reply)

    def separate_job(self, input_path: str, *, model: str | None = None,
                     job_id: int | None = None, name: str | None = None,
                     reply: Listener | None = None) -> Delivery:
        """A ``/separate`` job (issue 19): the request is
        :meth:`~dreamsampler.server.session.SessionParams.separation`'s; only the folder sink
        takes it (it writes the stems folder).

        Raises:
            RequestError: a missing input, one outside the input and output folders, not
                audio, or too large.
        """
        request = self.params.separation(input_path, model)
        return Delivery(request, job_id=job_id, name=name, sinks=(FOLDER,), reply=reply)
