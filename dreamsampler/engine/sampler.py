"""The one sampling loop every feature passes through, run on a batch of takes.

A call is three stages, as diffusers' pipelines (``check_inputs`` / ``prepare_latents`` /
denoising loop / decode):

1. **check and read inputs** (:func:`_read_inputs`), before any model work: the batch shares one
   shape (:func:`batch_key`), the family can do the mode, the input file is read (a continuation's
   length sets the duration);
2. **prepare**, one small function per mode (:data:`_PREPARE`): text→audio, style transfer
   (SDEdit) and region (inpainting, continuation) each build the conditioning
   (``[unconditional × B, conditional × B]`` under guidance) and the start latents from one CPU
   ``torch.Generator`` per take, so every take's noise is what its seed gives alone;
3. **denoise** (:func:`_denoise`: the same loop for every mode: guidance, scheduler step,
   progress, cancellation) and **decode** (:func:`_decode`: audio per take, level guard, record).

Takes of one request (``count``) and requests of the same shape from several jobs
(:func:`sample_batch`) go through the model's batch dimension together: the text of each distinct
prompt is encoded once, the denoiser runs at batch ``2N`` with guidance.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from dreamsampler import __version__
from dreamsampler.engine.audio_io import AudioFileError, probe_audio
from dreamsampler.engine.concepts import activate
from dreamsampler.engine.extend import crossfade_samples, keep_original, layout, read_input
from dreamsampler.engine.families import ModelFamily, SilentInputError
from dreamsampler.engine.level import finish
from dreamsampler.engine.request import GenerationRequest, GenerationResult, RequestError
from dreamsampler.engine.schedulers import SCHEDULERS, make_scheduler, sdedit_timesteps

__all__ = ["SCHEDULERS", "Cancelled", "ProgressCallback", "batch_key", "make_scheduler",
           "sample", "sample_batch", "sample_takes", "sdedit_timesteps"]

ProgressCallback = Callable[[int, int], None]


class Cancelled(Exception):
    """The job was cancelled between two denoising steps."""


def batch_key(request: GenerationRequest) -> GenerationRequest:
    """What requests must share to run as one batch: everything but prompt, negative prompt,
    seed and count (family-wide: duration, steps, scheduler, guidance, strength, input, region,
    concept and LoRA blend)."""
    return dataclasses.replace(request, prompt="", negative_prompt="", seed=0, count=1)


@dataclass(frozen=True)
class _Inputs:
    """What the batch's input file and duration give, read before any model work.

    Attributes:
        mode: ``text``, ``transfer`` (SDEdit) or ``region`` (inpainting, continuation).
        duration: output seconds (a continuation's: input length + continuation).
        shape: one take's latent shape (without the batch axis).
        n_samples: output samples per channel.
        waveform: the input as :meth:`ModelFamily.load_waveform` gives it, else ``None``.
        regions: seconds to regenerate (region mode).
        offset: seconds where the input starts in the output (a continuation ``before`` or
            ``both`` puts new audio first; issue 18).
    """

    mode: str
    duration: float
    shape: tuple[int, ...]
    n_samples: int
    waveform: torch.Tensor | None = None
    regions: tuple[tuple[float, float], ...] = ()
    offset: float = 0.0


@dataclass
class _Batch:
    """A prepared batch: everything the denoising loop and the decoder need."""

    rows: list[GenerationRequest]
    scheduler: Any
    timesteps: torch.Tensor
    latents: torch.Tensor
    conditioning: Any
    generators: list[torch.Generator]
    n_samples: int
    input_gain: float = 1.0
    inputs: _Inputs | None = None

    @property
    def guidance_scale(self) -> float:
        return self.rows[0].guidance_scale

    @property
    def guided(self) -> bool:
        return self.guidance_scale > 1.0


def _check_batch(requests: Sequence[GenerationRequest]) -> None:
    if not requests:
        raise RequestError("a batch needs at least one request")
    key = batch_key(requests[0])
    for other in requests[1:]:
        if batch_key(other) != key:
            raise RequestError("requests of one batch must share every parameter but prompt, "
                               "negative prompt, seed and count")


def _read_inputs(model: ModelFamily, request: GenerationRequest) -> _Inputs:
    """Check the mode against the family and read the input file (one request stands for the
    batch: they share it)."""
    if request.is_inpaint and not model.supports_inpainting:
        raise RequestError(f"model family {model.name!r} cannot inpaint or continue audio "
                           "(Stable Audio 3 can)")
    if request.input_path is None:
        assert request.duration is not None  # checked by GenerationRequest
        shape, n_samples = model.latent_shape(request.duration)
        return _Inputs("text", request.duration, shape, n_samples)
    path: Path = request.input_path
    duration = request.duration
    if duration is None:  # a transfer as long as its input, up to the model's limit
        length = probe_audio(path)
        limit = model.max_duration
        duration = length if limit is None else min(length, limit)
    if not request.is_inpaint:
        shape, n_samples = model.latent_shape(duration)
        return _Inputs("transfer", duration, shape, n_samples,
                       model.load_waveform(path, n_samples))
    input_seconds = 0.0
    if request.continuation is not None:
        input_seconds = probe_audio(path)
        duration = input_seconds + request.continuation * (2 if request.side == "both" else 1)
    offset, regions = layout(
        input_seconds, request.continuation, request.side,
        None if request.mask_start is None else (request.mask_start, request.mask_end))
    shape, n_samples = model.latent_shape(duration)
    waveform = model.load_waveform(path, n_samples)
    if offset:  # extend before: the input sits after the new audio
        shift = round(offset * model.sample_rate)
        waveform = torch.nn.functional.pad(waveform, (shift, 0))[..., :n_samples]
    return _Inputs("region", duration, shape, n_samples, waveform, tuple(regions), offset)


def _sent_prompt(model: ModelFamily, request: GenerationRequest) -> str:
    """The prompt the text encoder gets: with the family's caption tags (Stable Audio is trained
    on captions ending in ", 120 BPM, A minor"; issue 18) when the request has a bpm or key."""
    if model.caption_tags and (request.bpm is not None or request.key):
        from dreamsampler.engine.conform import tag_prompt

        return tag_prompt(request.prompt, request.bpm, request.key)
    return request.prompt


def _conditioning(model: ModelFamily, rows: list[GenerationRequest]) -> Any:
    """The batch's conditioning (:meth:`ModelFamily.batch_conditioning`) on the sent prompts."""
    sent = [dataclasses.replace(row, prompt=_sent_prompt(model, row)) for row in rows]
    return model.batch_conditioning(sent, rows[0].guidance_scale > 1.0)


def _noise(model: ModelFamily, generators: list[torch.Generator],
           shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal ``(batch, *shape)``, row ``k`` from ``generators[k]`` alone (drawn in
    float32 on the CPU, so every dtype and device starts from the same noise; latents stay
    float32 between steps whatever the denoiser's dtype)."""
    noise = randn_tensor((len(generators), *shape), generator=generators,
                         device=torch.device("cpu"), dtype=torch.float32)
    return noise.to(model.device)


def _prepare_text(model: ModelFamily, rows: list[GenerationRequest], inputs: _Inputs,
                  generators: list[torch.Generator]) -> _Batch:
    """Text→audio: noise per take, the family's start (:meth:`ModelFamily.start`)."""
    request = rows[0]
    conditioning = _conditioning(model, rows)
    scheduler = model.make_scheduler(request.scheduler)
    latents, timesteps = model.start(scheduler, request, None,
                                     _noise(model, generators, inputs.shape))
    return _Batch(rows, scheduler, timesteps, latents, conditioning, generators,
                  inputs.n_samples)


def _prepare_transfer(model: ModelFamily, rows: list[GenerationRequest], inputs: _Inputs,
                      generators: list[torch.Generator]) -> _Batch:
    """Style transfer (SDEdit at ``strength``): the input's latents, noised per take.

    Raises:
        AudioFileError: the input is silent.
    """
    request = rows[0]
    assert inputs.waveform is not None and request.input_path is not None
    try:
        clean = model.audio_to_latents(inputs.waveform, inputs.duration)
        input_gain = model.input_gain(inputs.waveform[0], inputs.duration)
    except SilentInputError:
        raise AudioFileError(request.input_path, "is silent (nothing to transfer)") from None
    clean = clean.expand(len(rows), *clean.shape[1:])
    conditioning = _conditioning(model, rows)
    scheduler = model.make_scheduler(request.scheduler)
    noise = _noise(model, generators, tuple(clean.shape[1:]))
    latents, timesteps = model.start(scheduler, request, clean, noise)
    return _Batch(rows, scheduler, timesteps, latents, conditioning, generators,
                  inputs.n_samples, input_gain)


def _prepare_region(model: ModelFamily, rows: list[GenerationRequest], inputs: _Inputs,
                    generators: list[torch.Generator]) -> _Batch:
    """Inpainting and continuation: text→audio conditioned on the kept part of the input."""
    request = rows[0]
    assert inputs.waveform is not None
    conditioning = _conditioning(model, rows)
    conditioning = model.inpaint_conditioning(conditioning, inputs.waveform, inputs.duration,
                                              list(inputs.regions))
    scheduler = model.make_scheduler(request.scheduler)
    latents, timesteps = model.start(scheduler, request, None,
                                     _noise(model, generators, inputs.shape))
    return _Batch(rows, scheduler, timesteps, latents, conditioning, generators,
                  inputs.n_samples)


_PREPARE: dict[str, Callable[[ModelFamily, list[GenerationRequest], _Inputs,
                              list[torch.Generator]], _Batch]] = {
    "text": _prepare_text, "transfer": _prepare_transfer, "region": _prepare_region,
}


def _step_kwargs(scheduler: Any, generators: list[torch.Generator]) -> dict[str, Any]:
    """``scheduler.step`` extras: the generators (one per row, so a stochastic step, e.g. the
    Brownian tree of ``CosineDPMSolverMultistepScheduler``, draws per take) and ``eta = 0``."""
    params = inspect.signature(scheduler.step).parameters
    kwargs: dict[str, Any] = {}
    if "generator" in params:
        kwargs["generator"] = generators[0] if len(generators) == 1 else generators
    if "eta" in params:
        kwargs["eta"] = 0.0
    return kwargs


def _denoise(model: ModelFamily, batch: _Batch, on_step: ProgressCallback | None,
             should_cancel: Callable[[], bool] | None) -> torch.Tensor:
    """The loop: for t in timesteps: denoise (batch ``2B`` under guidance), classifier-free
    guidance (Ho & Salimans 2022), scheduler step, progress. Returns the final latents."""
    scheduler, latents = batch.scheduler, batch.latents
    step_kwargs = _step_kwargs(scheduler, batch.generators)
    scale_input = hasattr(scheduler, "scale_model_input")  # flow-matching schedulers have none
    total = len(batch.timesteps)
    for i, t in enumerate(batch.timesteps):
        if should_cancel is not None and should_cancel():
            raise Cancelled
        model_input = torch.cat([latents, latents]) if batch.guided else latents
        if scale_input:
            model_input = scheduler.scale_model_input(model_input, t)
        # the denoiser at the model's dtype; guidance and the scheduler in float32
        prediction = model.denoise(model_input.to(model.dtype), t, batch.conditioning).float()
        if batch.guided:
            uncond, cond = prediction.chunk(2)
            prediction = uncond + batch.guidance_scale * (cond - uncond)
        latents = scheduler.step(prediction, t, latents, **step_kwargs).prev_sample
        if on_step is not None:
            on_step(i + 1, total)
    if should_cancel is not None and should_cancel():
        raise Cancelled
    return latents


def _decode(model: ModelFamily, batch: _Batch, latents: torch.Tensor, return_latents: bool,
            started: float, counts: list[int]) -> list[GenerationResult]:
    """Latents → one :class:`GenerationResult` per row (level guard and record per take)."""
    n = batch.n_samples
    audio = model.latents_to_audio(latents)[..., :n].cpu().numpy()
    elapsed = round(time.perf_counter() - started, 4)
    take_of = [(k, count) for count in counts for k in range(count)]
    results = []
    for row, request in enumerate(batch.rows):
        clip = audio[row].reshape(-1, n)  # (channels, samples): mono families give (1, n)
        clip, level = finish(clip, f"the model's output (seed {request.seed})",
                             batch.input_gain)
        if request.input_path is not None:
            level["input_gain_db"] = round(20.0 * math.log10(batch.input_gain), 3)
        kept: dict[str, Any] = {}
        inputs = batch.inputs
        if inputs is not None and inputs.mode == "region":
            # the input's own samples outside the new audio (issue 18)
            assert request.input_path is not None
            sr = model.sample_rate
            original = read_input(request.input_path, sr, clip.shape[0])
            fade = crossfade_samples(original.shape[1], sr)
            clip = keep_original(clip, original, round(inputs.offset * sr),
                                 [(round(a * sr), round(b * sr)) for a, b in inputs.regions],
                                 fade)
            kept = {"kept_input": True, "input_offset_s": inputs.offset,
                    "crossfade_s": round(fade / sr, 5)}
        sent = _sent_prompt(model, request)
        take, count = take_of[row]
        record = {
            "engine": f"dreamsampler {__version__}",
            "model": model.model_id,
            "family": model.name,
            **request.to_record(),
            **({"prompt_sent": sent} if sent != request.prompt else {}),
            **kept,
            "scheduler": model.scheduler_name(request.scheduler),
            **({"take": take + 1, "takes": count} if count > 1 else {}),
            **({"batch": len(batch.rows)} if len(batch.rows) > 1 else {}),
            "sample_rate": model.sample_rate,
            **level,
            "elapsed_s": elapsed,
        }
        results.append(GenerationResult(
            audio=clip.astype("float32"),
            sample_rate=model.sample_rate,
            record=record,
            latents=latents[row:row + 1].float().cpu() if return_latents else None,
        ))
    return results


@torch.no_grad()
def sample_batch(
    model: ModelFamily,
    requests: Sequence[GenerationRequest],
    on_step: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    return_latents: bool = False,
) -> list[list[GenerationResult]]:
    """Run requests of one shape (:func:`batch_key`), every take of each, as one batch.

    Each request stands for its ``count`` takes (:meth:`GenerationRequest.takes`: seeds
    ``seed … seed + count − 1``); all rows go through the denoiser together (batch ``2B`` with
    guidance). Row ``k``'s initial noise comes from its own ``torch.Generator`` seeded with its
    seed, so a take equals the same seed run alone up to the rounding of batched kernels (on
    CPU float32: max abs difference of the audio below 1e-4 on the tiny models; see
    ``tests/engine/test_takes.py``); a batch of one is bit-identical to :func:`sample`.

    Args:
        model: a loaded family adapter.
        requests: one or more requests; they must share everything but prompt, negative
            prompt, seed and count.
        on_step: called as ``on_step(done, total)`` after every scheduler step of the batch.
        should_cancel: polled before every step; when it returns True the loop stops.
        return_latents: also return each take's final latents (see :func:`sample`).

    Returns:
        Per request, its takes in order (see :func:`sample` for one result). A take's record
        adds ``take`` (1-based) and ``takes`` when ``count > 1``, and ``batch`` (rows run
        together) when above 1.

    Raises:
        As :func:`sample`; RequestError also when the requests differ in shape.
    """
    _check_batch(requests)
    first = requests[0]
    if first.process is not None:  # a no-model job (/conform): no sampling
        from dreamsampler.engine.processing import run_process

        return [[run_process(request)] for request in requests]
    with activate(model, first.concept, first.lora_scale, first.loras):
        started = time.perf_counter()
        inputs = _read_inputs(model, first)
        rows = [dataclasses.replace(take, duration=inputs.duration)
                for request in requests for take in request.takes()]
        generators = [torch.Generator("cpu").manual_seed(row.seed) for row in rows]
        batch = _PREPARE[inputs.mode](model, rows, inputs, generators)
        batch.inputs = inputs
        latents = _denoise(model, batch, on_step, should_cancel)
        counts = [request.count for request in requests]
        flat = _decode(model, batch, latents, return_latents, started, counts)
    grouped: list[list[GenerationResult]] = []
    for count in counts:
        grouped.append(flat[:count])
        flat = flat[count:]
    return grouped


def sample_takes(
    model: ModelFamily,
    request: GenerationRequest,
    on_step: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    return_latents: bool = False,
) -> list[GenerationResult]:
    """Every take of ``request`` (``count`` of them) from one batched call
    (:func:`sample_batch`)."""
    return sample_batch(model, [request], on_step, should_cancel, return_latents)[0]


def sample(
    model: ModelFamily,
    request: GenerationRequest,
    on_step: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    return_latents: bool = False,
) -> GenerationResult:
    """Run one generation, style transfer, inpainting or continuation through the model.

    Transfer (SDEdit) maps ``request.strength`` onto the family's noise schedule
    (:meth:`~dreamsampler.engine.families.ModelFamily.start`). Inpainting and continuation
    (``mask_start``/``mask_end``, ``continuation``) need a family that ``supports_inpainting``
    (Stable Audio 3); a continuation's duration is the input's length plus ``continuation``
    seconds, and the record holds that duration.

    The request's concept (``request.concept``, LoRA at ``request.lora_scale``, or a DreamBooth
    UNet) and its LoRA blend (``request.loras``) are active for the whole call and only for it
    (:func:`~dreamsampler.engine.concepts.activate`); textual-inversion tokens work in any prompt
    once loaded.

    Args:
        model: a loaded family adapter.
        request: the generation parameters (``count`` 1; several takes: :func:`sample_takes`).
        on_step: called as ``on_step(done, total)`` after every scheduler step.
        should_cancel: polled before every step; when it returns True the loop stops.
        return_latents: also return the final (denoised, scaled) latents
            ``(1, channels, frames, bins)`` in :attr:`GenerationResult.latents` (for evaluation
            and prior-preservation data; the audio is decoded as always).

    Returns:
        The clip ``(channels, samples)`` (1 channel for AudioLDM/MusicLDM, 2 for Stable Audio)
        at the model's sample rate with its generation record and the final latents
        ``(1, channels, frames, bins)`` (``(1, channels, frames)`` for Stable Audio).
        Equal (model, request) give bit-identical audio on the same device.

        Level (:mod:`dreamsampler.engine.level`): a style transfer's output is divided by the
        gain the model's front end applied to the input (``ModelFamily.input_gain``; AudioLDM
        normalises to peak 0.5), so it comes back at the input's level; then any clip whose
        peak is above 0 dBFS is scaled to a -1 dBFS peak. The record holds ``peak_dbfs`` (after),
        ``gain_db`` (total engine gain), ``overs_gain_db`` (the 0 dBFS normalisation, 0.0 when
        none) and, for a transfer, ``input_gain_db`` (the front end's gain that was undone).

    Raises:
        Cancelled: ``should_cancel`` returned True.
        AudioFileError: the input file cannot be read or is silent.
        NonFiniteAudioError: the model produced NaN or infinite samples.
        RequestError: inpainting or continuation on a family that cannot do it; ``count > 1``.
        ConceptNotLoadedError: the request names a concept the model has not loaded.
    """
    if request.count != 1:
        raise RequestError(f"sample() makes one take; use sample_takes() for count "
                           f"{request.count}")
    return sample_batch(model, [request], on_step, should_cancel, return_latents)[0][0]
