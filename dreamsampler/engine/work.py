"""What an engine does with one job, whatever the engine (local thread, process, Ray replica).

Every engine calls :func:`run_request` where it ran the sampler: a
:class:`~dreamsampler.engine.request.GenerationRequest` is sampled (and, with ``stems``, its clip
separated by the stems stage in the same job), a
:class:`~dreamsampler.engine.stems.SeparationRequest` is separated. Progress is reported as
``on_step(step, total)`` over both stages; cancellation raises
:class:`~dreamsampler.engine.sampler.Cancelled` whichever stage runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from dreamsampler import __version__
from dreamsampler.engine.audio_io import read_audio
from dreamsampler.engine.families import ModelFamily
from dreamsampler.engine.request import GenerationRequest, GenerationResult
from dreamsampler.engine.sampler import Cancelled, ProgressCallback, sample
from dreamsampler.engine.stems import SeparationRequest, StemsCancelled, StemsError, StemsStage

EngineRequest = GenerationRequest | SeparationRequest
"""The job kinds an engine runs."""


def _stage(stems: StemsStage | None) -> StemsStage:
    if stems is None:
        raise StemsError("this engine has no stems stage")
    return stems


def run_request(model: ModelFamily, stems: StemsStage | None, request: EngineRequest,
                on_step: ProgressCallback | None = None,
                should_cancel: Callable[[], bool] | None = None) -> GenerationResult:
    """Run one job on the engine's model and stems stage.

    Returns:
        the clip (with ``stems`` when asked); for a separation, ``audio`` is the input as read
        (its own rate) and ``stems`` the sources at that rate and length.

    Raises:
        Cancelled: ``should_cancel`` said so (between two steps or two segments).
        StemsError: the stems model cannot be loaded.
        And what :func:`~dreamsampler.engine.sampler.sample` raises.
    """
    if isinstance(request, SeparationRequest):
        return _separate(_stage(stems), request, on_step, should_cancel)
    if not request.stems:
        return sample(model, request, on_step=on_step, should_cancel=should_cancel)
    stage = _stage(stems)
    units = stage.units(request.duration)
    seen = [0]

    def step(done: int, total: int) -> None:
        seen[0] = total
        if on_step is not None:
            on_step(done, total + units)

    result = sample(model, request, on_step=step, should_cancel=should_cancel)
    started = time.perf_counter()

    def progress(fraction: float) -> None:
        if on_step is not None:
            on_step(seen[0] + round(fraction * units), seen[0] + units)

    try:
        separated, info = stage.separate(result.audio, result.sample_rate, seed=request.seed,
                                         on_progress=progress, should_cancel=should_cancel)
    except StemsCancelled:
        raise Cancelled from None
    record = {**result.record, "stems": {**info.to_record(), **stage.settings(),
                                         "elapsed_s": round(time.perf_counter() - started, 4)}}
    return dataclasses.replace(result, stems=separated, record=record)


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
