"""The one sampling loop every feature passes through.

encode prompt → prepare latents (noise, or SDEdit: noised input latent) → for t in timesteps:
denoise, classifier-free guidance, scheduler step (progress callback, cancellation check) → decode.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
)
from diffusers.utils.torch_utils import randn_tensor

from dreamsampler import __version__
from dreamsampler.engine.audio_io import AudioFileError, probe_audio
from dreamsampler.engine.concepts import activate
from dreamsampler.engine.extend import crossfade_samples, keep_original, layout, read_input
from dreamsampler.engine.families import ModelFamily, SilentInputError
from dreamsampler.engine.level import finish
from dreamsampler.engine.request import GenerationRequest, GenerationResult, RequestError

SCHEDULERS: dict[str, Any] = {
    "ddim": DDIMScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "pndm": PNDMScheduler,
    "euler": EulerDiscreteScheduler,
    "lms": LMSDiscreteScheduler,
    "heun": HeunDiscreteScheduler,
}

ProgressCallback = Callable[[int, int], None]


class Cancelled(Exception):
    """The job was cancelled between two denoising steps."""


_SCHEDULER_OVERRIDES: dict[str, dict[str, Any]] = {
    # PRK warm-up steps break at small step counts; diffusers' pipelines skip them too.
    "pndm": {"skip_prk_steps": True},
}


def make_scheduler(name: str, base_config: Any) -> Any:
    """A fresh scheduler of the named kind built from the model's scheduler config."""
    return SCHEDULERS[name].from_config(base_config, **_SCHEDULER_OVERRIDES.get(name, {}))


def sdedit_timesteps(scheduler: Any, steps: int, strength: float) -> torch.Tensor:
    """Timesteps for SDEdit at ``strength`` (Meng et al. 2022): the last ``int(steps*strength)``.

    Sets the scheduler's begin index where it has one, as diffusers' img2img pipelines do.
    """
    start = steps - int(steps * strength)
    timesteps = scheduler.timesteps[start * scheduler.order :]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start * scheduler.order)
    return timesteps


def _step_kwargs(scheduler: Any, generator: torch.Generator) -> dict[str, Any]:
    params = inspect.signature(scheduler.step).parameters
    kwargs: dict[str, Any] = {}
    if "generator" in params:
        kwargs["generator"] = generator
    if "eta" in params:
        kwargs["eta"] = 0.0
    return kwargs


@torch.no_grad()
def sample(
    model: ModelFamily,
    request: GenerationRequest,
    on_step: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    return_latents: bool = False,
) -> GenerationResult:
    """Run one generation, style transfer, inpainting or continuation through the model.

    Transfer (SDEdit) maps ``request.strength`` onto the family's noise schedule
    (:meth:`~dreamsampler.engine.families.ModelFamily.initial_latents`). Inpainting and
    continuation (``mask_start``/``mask_end``, ``continuation``) need a family that
    ``supports_inpainting`` (Stable Audio 3); a continuation's duration is the input's length plus
    ``continuation`` seconds, and the record holds that duration.

    The request's concept (``request.concept``, LoRA at ``request.lora_scale``, or a DreamBooth
    UNet) and its LoRA blend (``request.loras``) are active for the whole call and only for it
    (:func:`~dreamsampler.engine.concepts.activate`); textual-inversion tokens work in any prompt
    once loaded.

    Args:
        model: a loaded family adapter.
        request: the generation parameters.
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
        RequestError: inpainting or continuation on a family that cannot do it.
        ConceptNotLoadedError: the request names a concept the model has not loaded.
    """
    if request.process is not None:  # a no-model job (/conform): no sampling
        from dreamsampler.engine.processing import run_process

        return run_process(request)
    with activate(model, request.concept, request.lora_scale, request.loras):
        return _sample(model, request, on_step, should_cancel, return_latents)


def _sample(
    model: ModelFamily,
    request: GenerationRequest,
    on_step: ProgressCallback | None,
    should_cancel: Callable[[], bool] | None,
    return_latents: bool,
) -> GenerationResult:
    started = time.perf_counter()
    generator = torch.Generator("cpu").manual_seed(request.seed)
    own_scheduler = model.make_scheduler(request.scheduler)
    scheduler = (make_scheduler(request.scheduler, model.scheduler_config)
                 if own_scheduler is None else own_scheduler)
    guided = request.guidance_scale > 1.0

    if request.duration is None:  # a transfer as long as its input, up to the model's limit
        assert request.input_path is not None  # checked by GenerationRequest
        length = probe_audio(request.input_path)
        limit = model.max_duration
        request = dataclasses.replace(request, duration=length if limit is None else min(
            length, limit))
    duration = request.duration
    assert duration is not None
    input_seconds = 0.0
    if request.continuation is not None:
        assert request.input_path is not None  # checked by GenerationRequest
        input_seconds = probe_audio(request.input_path)
        duration = input_seconds + request.continuation * (2 if request.side == "both" else 1)
        request = dataclasses.replace(request, duration=duration)
    if request.is_inpaint and not model.supports_inpainting:
        raise RequestError(f"model family {model.name!r} cannot inpaint or continue audio "
                           "(Stable Audio 3 can)")
    prompt = request.prompt
    if model.caption_tags and (request.bpm is not None or request.key):
        from dreamsampler.engine.conform import tag_prompt

        prompt = tag_prompt(request.prompt, request.bpm, request.key)
    conditioning = model.conditioning(dataclasses.replace(request, prompt=prompt), guided)
    shape, n_samples = model.latent_shape(duration)

    clean = None
    input_gain = 1.0
    if request.input_path is not None:
        waveform = model.load_waveform(request.input_path, n_samples)
        if request.is_inpaint:
            offset, regions = layout(
                input_seconds, request.continuation, request.side,
                None if request.mask_start is None else (request.mask_start, request.mask_end))
            if offset:  # extend before: the input sits after the new audio
                shift = round(offset * model.sample_rate)
                waveform = torch.nn.functional.pad(waveform, (shift, 0))[..., :n_samples]
            conditioning = model.inpaint_conditioning(conditioning, waveform, duration, regions)
        else:
            try:
                clean = model.audio_to_latents(waveform, duration)
                input_gain = model.input_gain(waveform[0], duration)
            except SilentInputError:
                raise AudioFileError(request.input_path,
                                     "is silent (nothing to transfer)") from None
    start = model.initial_latents(scheduler, request, shape, clean, generator)
    if start is not None:
        latents, timesteps = start
    else:
        scheduler.set_timesteps(request.num_inference_steps, device=model.device)
        if clean is not None:
            timesteps = sdedit_timesteps(scheduler, request.num_inference_steps,
                                         request.strength)
            noise = randn_tensor(clean.shape, generator=generator, device=model.device,
                                 dtype=model.dtype)
            latents = (
                scheduler.add_noise(clean, noise, timesteps[:1]) if len(timesteps) else clean
            )
        else:
            timesteps = scheduler.timesteps
            latents = randn_tensor(
                (1, *shape), generator=generator, device=model.device, dtype=model.dtype
            ) * scheduler.init_noise_sigma

    step_kwargs = _step_kwargs(scheduler, generator)
    total = len(timesteps)
    for i, t in enumerate(timesteps):
        if should_cancel is not None and should_cancel():
            raise Cancelled
        model_input = torch.cat([latents] * 2) if guided else latents
        if hasattr(scheduler, "scale_model_input"):  # flow-matching schedulers have none
            model_input = scheduler.scale_model_input(model_input, t)
        prediction = model.denoise(model_input, t, conditioning)
        if guided:
            uncond, cond = prediction.chunk(2)
            prediction = uncond + request.guidance_scale * (cond - uncond)
        latents = scheduler.step(prediction, t, latents, **step_kwargs).prev_sample
        if on_step is not None:
            on_step(i + 1, total)
    if should_cancel is not None and should_cancel():
        raise Cancelled

    audio = model.latents_to_audio(latents)[..., :n_samples].cpu().numpy()
    audio = audio.reshape(-1, audio.shape[-1])  # (channels, samples): mono families give (1, n)
    audio, level = finish(audio, f"the model's output (seed {request.seed})", input_gain)
    if request.is_inpaint:  # the input's own samples outside the new audio (issue 18)
        assert request.input_path is not None
        sr = model.sample_rate
        original = read_input(request.input_path, sr, audio.shape[0])
        fade = crossfade_samples(original.shape[1], sr)
        audio = keep_original(audio, original, round(offset * sr),
                              [(round(a * sr), round(b * sr)) for a, b in regions], fade)
        kept: dict[str, Any] = {"kept_input": True, "input_offset_s": offset,
                                "crossfade_s": round(fade / sr, 5)}
    else:
        kept = {}
    if request.input_path is not None:
        level["input_gain_db"] = round(20.0 * math.log10(input_gain), 3)
    record = {
        "engine": f"dreamsampler {__version__}",
        "model": model.model_id,
        "family": model.name,
        **request.to_record(),
        **({"prompt_sent": prompt} if prompt != request.prompt else {}),
        **kept,
        "sample_rate": model.sample_rate,
        **level,
        **({} if own_scheduler is None else {"scheduler": type(scheduler).__name__}),
        "elapsed_s": round(time.perf_counter() - started, 4),
    }
    return GenerationResult(
        audio=audio.astype("float32"),
        sample_rate=model.sample_rate,
        record=record,
        latents=latents.float().cpu() if return_latents else None,
    )
