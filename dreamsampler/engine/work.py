"""What an engine does with one job, whatever the engine (local thread, process, Ray replica).

Every engine calls :func:`run_batch` (or :func:`run_takes` / :func:`run_request` for one job)
where it ran the sampler: a :class:`~dreamsampler.engine.request.GenerationRequest` is sampled
with all its takes (``count``, issue 21; several same-shape jobs as one batch:
:func:`~dreamsampler.engine.sampler.sample_batch`) and, with ``stems``, its FIRST take is
separated by the stems stage in the same job (the takes are for auditioning; send the take kept
to ``/separate`` for its stems: a separation costs about as much as the generation, so N takes
would multiply the job's time); a :class:`~dreamsampler.engine.stems.SeparationRequest` is
separated. Progress is reported as ``on_step(step, total)`` over both stages; cancellation
raises :class:`~dreamsampler.engine.sampler.Cancelled` whichever stage runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from dreamsampler import __version__
from dreamsampler.engine.audio_io import read_audio
from dreamsampler.engine.families import ModelFamily
from dreamsampler.engine.request import GenerationRequest, GenerationResult, RequestError
from dreamsampler.engine.sampler import Cancelled, ProgressCallback, sample_batch
from dreamsampler.engine.stems import SeparationRequest, StemsCancelled, StemsError, StemsStage

EngineRequest = GenerationRequest | SeparationRequest
"""The job kinds an engine runs."""


def _stage(stems: StemsStage | None) -> StemsStage:
    if stems is None:
        raise StemsError("this engine has no stems stage")
    return stems


def run_batch(model: ModelFamily, stems: StemsStage | None,
              requests: Sequence[EngineRequest], on_step: ProgressCallback | None = None,
              should_cancel: Callable[[], bool] | None = None) -> list[list[GenerationResult]]:
    """Run one batch on the engine's model and stems stage: one separation, or generation
    requests of one shape (:func:`~dreamsampler.engine.sampler.batch_key`; they share
    ``stems``), every take of each.

    Returns:
        per request, its takes in order; with ``stems`` the first take of each request carries
        the stems (:attr:`GenerationResult.stems`, ``record["stems"]``), the others none. For a
        separation, ``[[result]]``: ``audio`` is the input as read (its own rate) and ``stems``
        the sources at that rate and length.

    Raises:
        Cancelled: ``should_cancel`` said so (between two steps or two segments).
        StemsError: the stems model cannot be loaded.
        And what :func:`~dreamsampler.engine.sampler.sample_batch` raises.
    """
    if len(requests) == 1 and isinstance(requests[0], SeparationRequest):
        return [[_separate(_stage(stems), requests[0], on_step, should_cancel)]]
    generations: list[GenerationRequest] = []
    for request in requests:
        if not isinstance(request, GenerationRequest):
            raise TypeError("a separation runs alone, not in a batch")
        generations.append(request)
    staged = [i for i, request in enumerate(generations) if request.stems]
    if not staged:
        return sample_batch(model, generations, on_step=on_step, should_cancel=should_cancel)
    stage = _stage(stems)
    units = [stage.units(generations[i].duration) if generations[i].duration is not None
             else 0 for i in staged]
    seen = [0]

    def step(done: int, total: int) -> None:
        seen[0] = total
        if on_step is not None:
            on_step(done, total + sum(units))

    grouped = sample_batch(model, generations, on_step=step, should_cancel=should_cancel)
    done_units = 0
    for i, own in zip(staged, units, strict=True):
        result = grouped[i][0]
        started = time.perf_counter()

        def progress(fraction: float, before: int = done_units, own: int = own) -> None:
            if on_step is not None:
                on_step(seen[0] + before + round(fraction * own), seen[0] + sum(units))

        try:
            separated, info = stage.separate(result.audio, result.sample_rate,
                                             seed=generations[i].seed, on_progress=progress,
                                             should_cancel=should_cancel)
        except StemsCancelled:
            raise Cancelled from None
        done_units += own
        record = {**result.record, "stems": {**info.to_record(), **stage.settings(),
                                             "elapsed_s": round(time.perf_counter() - started,
                                                                4)}}
        grouped[i][0] = dataclasses.replace(result, stems=separated, record=record)
        for k, take in enumerate(grouped[i][1:], start=1):  # asked for, not made: say nothing
            grouped[i][k] = dataclasses.replace(
                take, record={key: v for key, v in take.record.items() if key != "stems"})
    return grouped


def run_takes(model: ModelFamily, stems: StemsStage | None, request: EngineRequest,
              on_step: ProgressCallback | None = None,
              should_cancel: Callable[[], bool] | None = None) -> list[GenerationResult]:
    """Every take of one job (:func:`run_batch` of one request)."""
    return run_batch(model, stems, [request], on_step, should_cancel)[0]


def run_request(model: ModelFamily, stems: StemsStage | None, request: EngineRequest,
                on_step: ProgressCallback | None = None,
                should_cancel: Callable[[], bool] | None = None) -> GenerationResult:
    """Run one job of one take on the engine's model and stems stage.

    Returns:
        the clip (with ``stems`` when asked); for a separation, ``audio`` is the input as read
        (its own rate) and ``stems`` the sources at that rate and length.

    Raises:
        RequestError: ``count`` above 1 (use :func:`run_takes`).
        As :func:`run_batch`.
    """
    if isinstance(request, GenerationRequest) and request.count != 1:
        raise RequestError(f"this engine makes one take per job; count {request.count} needs "
                           "the local or supervised engine")
    return run_takes(model, stems, request, on_step, should_cancel)[0]


def _separate(stage: StemsStage, request: SeparationRequest,
              on_step: ProgressCallback | None,
              should_cancel: Callable[[], bool] | None) -> GenerationResult:
    started = time.perf_counter()
    audio, rate = read_audio(request.input_path)
    units = stage.units(audio.shape[-1] / rate, request.model)

    def progress(fraction: float) -> None:
        if on_step is not None:
            on_step(round(fraction * units), units)

    try:
        separated, info = stage.separate(audio, rate, model_id=request.model,
                                         seed=request.seed, on_progress=progress,
                                         should_cancel=should_cancel)
    except StemsCancelled:
        raise Cancelled from None
    record = {
        "engine": f"dreamsampler {__version__}",
        "kind": "separate",
        "input": str(request.input_path),
        "seed": request.seed,
        "sample_rate": rate,
        "stems": {**info.to_record(), **stage.settings()},
        "elapsed_s": round(time.perf_counter() - started, 4),
    }
    return GenerationResult(audio=audio, sample_rate=rate, record=record, stems=separated)
