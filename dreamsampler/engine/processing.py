"""No-model jobs: processing functions the engine runs on an input file instead of sampling.

A request with ``process`` set (``/conform``; ``/separate`` can register here too) rides the same
job path as a generation — edge → typed job → queue → engine → result → sinks — and
:func:`dreamsampler.engine.sampler.sample` routes it here, so the local, supervised and Ray
engines run it with no change of their own. A processing function takes the request and returns
a :class:`~dreamsampler.engine.request.GenerationResult`; it raises ``RequestError`` or
``AudioFileError`` for a bad input (the job fails with the reason).

``conform`` only reads the input here (at its own rate and channels): the conform itself runs in
the delivery step (:func:`dreamsampler.server.fanout.fit`, in a worker thread), the
same place that conforms generated clips, so one code path serves ``/gen … bpm`` and
``/conform``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dreamsampler import __version__
from dreamsampler.engine.audio_io import read_audio
from dreamsampler.engine.request import GenerationRequest, GenerationResult, RequestError


def read_input(request: GenerationRequest) -> GenerationResult:
    """The input file as it is: ``(channels, samples)`` float32 at its own rate.

    Raises:
        AudioFileError: unreadable, empty or non-finite.
    """
    assert request.input_path is not None  # checked by GenerationRequest
    started = time.perf_counter()
    audio, rate = read_audio(request.input_path)
    record = {"engine": f"dreamsampler {__version__}", "process": request.process,
              "input_path": str(request.input_path), "sample_rate": rate,
              "elapsed_s": round(time.perf_counter() - started, 4)}
    return GenerationResult(audio=audio, sample_rate=rate, record=record)


PROCESSES: dict[str, Callable[[GenerationRequest], GenerationResult]] = {
    "conform": read_input,
}
"""Processing functions by the name a request's ``process`` gives."""


def run_process(request: GenerationRequest) -> GenerationResult:
    """Run the request's processing function.

    Raises:
        RequestError: unknown process. And what the function raises.
    """
    fn = PROCESSES.get(str(request.process))
    if fn is None:
        raise RequestError(f"unknown process {request.process!r} (known: "
                           f"{', '.join(PROCESSES)})")
    return fn(request)
