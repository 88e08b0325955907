"""The engine's request and result types: what crosses the job interface, local or remote."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamsampler import schema

SCHEDULER_NAMES = schema.SCHEDULER_NAMES
SIDES = schema.SIDES
#: most takes one request may ask for (``count``, issue 21)
MAX_COUNT = schema.MAX_COUNT


class RequestError(ValueError):
    """A request value is out of its domain; the message names the parameter."""


@dataclass(frozen=True)
class GenerationRequest:
    """One text→audio, style-transfer (SDEdit), inpainting or continuation generation.

    Types and ranges are the schema's (:mod:`dreamsampler.schema`, checked by
    :func:`~dreamsampler.schema.check`); the rules across fields are checked here.

    Attributes:
        prompt: text prompt; may hold placeholder tokens of loaded concepts (``<my-rhodes>``).
        negative_prompt: text for the unconditional branch of classifier-free guidance.
        seed: seeds the initial noise (a CPU ``torch.Generator``), so outputs are reproducible;
            0..2**31-1 (the edges resolve ``seed -1`` to a fresh seed before a request).
        num_inference_steps: scheduler steps for a full denoise.
        guidance_scale: classifier-free guidance weight; ``<= 1`` disables the unconditional pass.
        duration: clip length in seconds; ``None`` only for a style transfer: as long as the
            input, up to the model's limit (``ModelFamily.max_duration``).
        scheduler: one of :data:`SCHEDULER_NAMES`.
        input_path: audio file to style-transfer; ``None`` for text→audio.
        strength: SDEdit noise level in [0, 1] (Meng et al. 2022, arXiv 2108.01073): the input's
            latent is noised to the timestep at ``strength`` of the schedule, then denoised for
            ``int(num_inference_steps * strength)`` steps. 0 returns the input's reconstruction.
        concept: name of a loaded DreamBooth/LoRA concept to activate for this request.
        lora_scale: LoRA adapter weight for ``concept``.
        loras: a blend of loaded LoRA concepts, ``((name, weight), ...)``, active together
            (with ``concept`` at ``lora_scale`` when it is a LoRA too); names unique.
        mask_start, mask_end: inpainting: the region ``[mask_start, mask_end)`` of
            ``input_path``, in seconds of the output, is regenerated from ``prompt``; the rest is
            kept (through the model's own conditioning, e.g. SA3's local-additive input, so it
            is re-synthesised, not pasted). ``mask_end`` may pass the input's end (up to
            ``duration``): the input is padded with silence there. Both or neither; needs
            ``input_path``; ``strength`` does not apply.
        continuation: seconds of new audio after the end of ``input_path`` (continue a clip):
            the output is the input followed by its continuation, so its duration is the
            input's length plus ``continuation`` and replaces ``duration``. Needs
            ``input_path``; excludes ``mask_start``/``mask_end``.
        side: where a continuation's new audio goes: ``after`` the input, ``before`` it, or
            ``both`` (``continuation`` seconds on each side). The output holds the input's
            own samples outside the new audio (see :mod:`dreamsampler.engine.extend`).
        bpm, key: tempo (BPM) and key name the clip is asked in; families trained on such
            caption tags add them to the prompt (:meth:`ModelFamily.tagged_prompt`).
        process: a no-model job: the name of a processing function
            (:data:`dreamsampler.engine.processing.PROCESSES`, e.g. ``conform``) the engine runs
            on ``input_path`` instead of sampling; ``prompt`` may be empty.
        stems: 1: also separate the finished clip into its sources (the engine's stems stage,
            :mod:`dreamsampler.engine.stems`) in the same job: the result carries ``stems``;
            0: the clip only.
    """

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    num_inference_steps: int = 25
    guidance_scale: float = 2.5
    duration: float | None = 10.0
    scheduler: str = "ddim"
    input_path: Path | None = None
    strength: float = 1.0
    concept: str | None = None
    lora_scale: float = 1.0
    loras: tuple[tuple[str, float], ...] = ()
    mask_start: float | None = None
    mask_end: float | None = None
    continuation: float | None = None
    side: str = "after"
    bpm: float | None = None
    key: str | None = None
    process: str | None = None
    stems: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise RequestError("prompt must be a string")
        try:  # types, ranges and choices: one declaration each (dreamsampler.schema)
            schema.check({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        except schema.ParamError as exc:
            raise RequestError(str(exc)) from None
        if self.seed + self.count - 1 > schema.SEED_MAX:
            raise RequestError(f"seed + count - 1 must be <= {schema.SEED_MAX}, got "
                               f"{self.seed} + {self.count} - 1")
        if self.duration is None and (self.input_path is None or self.mask_start is not None
                                      or self.continuation is not None):
            raise RequestError("duration is needed (only a style transfer may leave it out: "
                               "then it is as long as its input)")
        names = [name for name, _ in self.loras]
        if len(set(names)) != len(names) or self.concept in names:
            raise RequestError(f"loras must name each concept once, got {names}")
        for name, weight in self.loras:
            if not isinstance(name, str) or not math.isfinite(weight):
                raise RequestError(f"loras entries are (name, finite weight), got {(name, weight)}")
        if (self.mask_start is None) != (self.mask_end is None):
            raise RequestError("mask_start and mask_end must be given together (seconds)")
        if self.mask_start is not None and self.mask_end is not None:
            if self.input_path is None:
                raise RequestError("inpainting (mask_start/mask_end) needs an input file")
            if not 0.0 <= self.mask_start < self.mask_end <= (self.duration or 0.0):
                raise RequestError(
                    f"mask region must satisfy 0 <= mask_start < mask_end <= duration "
                    f"({self.duration} s), got [{self.mask_start}, {self.mask_end})")
        if self.continuation is not None:
            if self.input_path is None:
                raise RequestError("continuation needs an input file")
            if self.mask_start is not None:
                raise RequestError("give either continuation or mask_start/mask_end, not both")
            if not self.continuation > 0:
                raise RequestError(f"continuation must be > 0 seconds, got {self.continuation}")
        if self.side != "after" and self.continuation is None:
            raise RequestError("side before/both needs a continuation")
        if self.process is not None and self.input_path is None:
            raise RequestError(f"the {self.process} job needs an input file")

    @property
    def is_inpaint(self) -> bool:
        """Inpainting or continuation (a region of the input is regenerated)."""
        return self.mask_start is not None or self.continuation is not None

    @property
    def is_transfer(self) -> bool:
        """Style transfer (SDEdit) of ``input_path`` at ``strength``."""
        return self.input_path is not None and not self.is_inpaint

    def takes(self) -> list[GenerationRequest]:
        """The ``count`` single-take requests this one stands for: seeds ``seed`` …
        ``seed + count - 1``, each with ``count = 1``, in take order."""
        return [dataclasses.replace(self, seed=self.seed + k, count=1) for k in range(self.count)]

    def to_record(self) -> dict[str, Any]:
        """JSON-ready parameters (paths as strings; ``count`` only when above 1)."""
        data = dataclasses.asdict(self)
        if self.count == 1:
            data.pop("count")
        data["input_path"] = str(self.input_path) if self.input_path else None
        if not self.is_transfer:
            data.pop("strength")
        for key in ("mask_start", "mask_end", "continuation", "bpm", "key", "process"):
            if data[key] is None:
                data.pop(key)
        if self.continuation is None:
            data.pop("side")
        if not self.stems:
            data.pop("stems")
        if self.loras:
            data["loras"] = [[name, weight] for name, weight in self.loras]
        else:
            data.pop("loras")
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
        stems: source name → float32 ``(channels, samples)`` at ``sample_rate``, as long as
            ``audio`` (a ``stems`` request or ``/separate``), else ``None``; ``record["stems"]``
            then names the separation model.
    """

    audio: np.ndarray
    sample_rate: int
    record: dict[str, Any] = field(default_factory=dict)
    latents: Any = None
    stems: dict[str, np.ndarray] | None = None

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.audio.shape[-1] / self.sample_rate
