"""The engine's request and result types: what crosses the job interface, local or remote."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEDULER_NAMES = ("ddim", "dpm++", "pndm", "euler", "lms", "heun")


class RequestError(ValueError):
    """A request value is out of its domain; the message names the parameter."""


@dataclass(frozen=True)
class GenerationRequest:
    """One text→audio or style-transfer (SDEdit) generation.

    Attributes:
        prompt: text prompt; may hold placeholder tokens of loaded concepts (``<my-rhodes>``).
        negative_prompt: text for the unconditional branch of classifier-free guidance.
        seed: seeds the initial noise (a CPU ``torch.Generator``), so outputs are reproducible.
        num_inference_steps: scheduler steps for a full denoise.
        guidance_scale: classifier-free guidance weight; ``<= 1`` disables the unconditional pass.
        duration: clip length in seconds.
        scheduler: one of :data:`SCHEDULER_NAMES`.
        input_path: audio file to style-transfer; ``None`` for text→audio.
        strength: SDEdit noise level in [0, 1] (Meng et al. 2022, arXiv 2108.01073): the input's
            latent is noised to the timestep at ``strength`` of the schedule, then denoised for
            ``int(num_inference_steps * strength)`` steps. 0 returns the input's reconstruction.
        concept: name of a loaded DreamBooth/LoRA concept to activate for this request.
        lora_scale: LoRA adapter weight for ``concept``.
    """

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    num_inference_steps: int = 25
    guidance_scale: float = 2.5
    duration: float = 10.0
    scheduler: str = "ddim"
    input_path: Path | None = None
    strength: float = 1.0
    concept: str | None = None
    lora_scale: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise RequestError("prompt must be a string")
        if self.seed < 0 or self.seed >= 2**63:
            raise RequestError(f"seed must be in [0, 2^63), got {self.seed}")
        if self.num_inference_steps < 1:
            raise RequestError(f"steps must be >= 1, got {self.num_inference_steps}")
        if not self.duration > 0:
            raise RequestError(f"duration must be > 0 seconds, got {self.duration}")
        if not 0.0 <= self.strength <= 1.0:
            raise RequestError(f"strength must be in [0, 1], got {self.strength}")
        if self.guidance_scale < 0:
            raise RequestError(f"guidance must be >= 0, got {self.guidance_scale}")
        if self.scheduler not in SCHEDULER_NAMES:
            raise RequestError(
                f"scheduler must be one of {', '.join(SCHEDULER_NAMES)}, got {self.scheduler!r}"
            )

    @property
    def is_transfer(self) -> bool:
        return self.input_path is not None

    def to_record(self) -> dict[str, Any]:
        """JSON-ready parameters (paths as strings)."""
        data = dataclasses.asdict(self)
        data["input_path"] = str(self.input_path) if self.input_path else None
        if self.input_path is None:
            data.pop("strength")
        return data


@dataclass(frozen=True)
class GenerationResult:
    """A finished clip and everything needed to regenerate it.

    Attributes:
        audio: float32 array ``(channels, samples)`` in [-1, 1], all finite (the engine
            refuses non-finite output and normalises peaks above 0 dBFS to -1 dBFS:
            :mod:`dreamsampler.engine.level`).
        sample_rate: Hz.
        record: generation record: model, family, every request parameter, engine version,
            elapsed seconds.
        latents: the final denoised latents ``(1, channels, frames, bins)`` (CPU tensor) when
            ``sample(..., return_latents=True)`` asked for them, else ``None``.
    """

    audio: np.ndarray
    sample_rate: int
    record: dict[str, Any] = field(default_factory=dict)
    latents: Any = None

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.audio.shape[-1] / self.sample_rate
