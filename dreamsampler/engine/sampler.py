"""The one sampling loop every feature passes through.

encode prompt → prepare latents (noise, or SDEdit: noised input latent) → for t in timesteps:
denoise, classifier-free guidance, scheduler step (progress callback, cancellation check) → decode.
"""

from __future__ import annotations

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
from dreamsampler.engine.audio_io import AudioFileError, load_audio
from dreamsampler.engine.concepts import activate
from dreamsampler.engine.families import ModelFamily, SilentInputError
from dreamsampler.engine.level import finish
from dreamsampler.engine.request import GenerationRequest, GenerationResult

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
    """Run one generation or style transfer through the model's components.

    The request's concept (``request.concept``, LoRA at ``request.lora_scale``, or a DreamBooth
    UNet) is active for the whole call and only for it (:func:`~dreamsampler.engine.concepts.
    activate`); textual-inversion tokens work in any prompt once loaded.

    Args:
        model: a loaded family adapter.
        request: the generation parameters.
        on_step: called as ``on_step(done, total)`` after every scheduler step.
        should_cancel: polled before every step; when it returns True the loop stops.
        return_latents: also return the final (denoised, scaled) latents
            ``(1, channels, frames, bins)`` in :attr:`GenerationResult.latents` (for evaluation
            and prior-preservation data; the audio is decoded as always).

    Returns:
        The clip ``(1, samples)`` at the model's sample rate with its generation record and the
        final latents ``(1, channels, frames, bins)``.
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
        ConceptNotLoadedError: the request names a concept the model has not loaded.
    """
    with activate(model, request.concept, request.lora_scale):
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
    scheduler = make_scheduler(request.scheduler, model.scheduler_config)
    scheduler.set_timesteps(request.num_inference_steps, device=model.device)
    guided = request.guidance_scale > 1.0

    prompts = [request.negative_prompt, request.prompt] if guided else [request.prompt]
    conditioning = model.encode_prompt(prompts)
    shape, n_samples = model.latent_shape(request.duration)

    input_gain = 1.0
    if request.input_path is not None:
        # a family that normalises by the whole input reads it all (bounded by the input size
        # limit); the others read only the frames needed, so memory follows the request
        needed = None if model.takes_whole_input else n_samples / model.sample_rate
        waveform = torch.from_numpy(load_audio(request.input_path, model.sample_rate,
                                               duration=needed))
        if not model.takes_whole_input:
            waveform = waveform[:n_samples]
            if waveform.shape[0] < n_samples:
                waveform = torch.nn.functional.pad(waveform, (0, n_samples - waveform.shape[0]))
        try:
            clean = model.audio_to_latents(waveform[None], request.duration)
            input_gain = model.input_gain(waveform, request.duration)
        except SilentInputError:
            raise AudioFileError(request.input_path, "is silent (nothing to transfer)") from None
        timesteps = sdedit_timesteps(scheduler, request.num_inference_steps, request.strength)
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

    audio = model.latents_to_audio(latents)[:, :n_samples].cpu().numpy()
    audio, level = finish(audio, f"the model's output (seed {request.seed})", input_gain)
    if request.input_path is not None:
        level["input_gain_db"] = round(20.0 * math.log10(input_gain), 3)
    record = {
        "engine": f"dreamsampler {__version__}",
        "model": model.model_id,
        "family": model.name,
        **request.to_record(),
        "sample_rate": model.sample_rate,
        **level,
        "elapsed_s": round(time.perf_counter() - started, 4),
    }
    return GenerationResult(
        audio=audio.astype("float32"),
        sample_rate=model.sample_rate,
        record=record,
        latents=latents.float().cpu() if return_latents else None,
    )
