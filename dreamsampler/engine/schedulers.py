"""The named schedulers a request may ask for, and the SDEdit start on a diffusers scheduler.

Kept apart from :mod:`dreamsampler.engine.sampler` so the family adapters
(:mod:`dreamsampler.engine.families`) can build their default scheduler and start without
importing the loop.
"""

from __future__ import annotations

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

SCHEDULERS: dict[str, Any] = {
    "ddim": DDIMScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "pndm": PNDMScheduler,
    "euler": EulerDiscreteScheduler,
    "lms": LMSDiscreteScheduler,
    "heun": HeunDiscreteScheduler,
}

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
