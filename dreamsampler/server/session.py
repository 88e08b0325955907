"""The session (the defaults a request falls back on) and how a request is built from
generation parameters: session defaults, limits, input folders, loaded concepts, bar length.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamsampler.config import Config
from dreamsampler.engine.audio_io import AudioFileError, probe_audio
from dreamsampler.engine.request import GenerationRequest, RequestError
from dreamsampler.server.clock import TempoClock, bars_to_seconds
from dreamsampler.server.delivery import GenerationParams, LoopSpec


@dataclass
class Session:
    """The session defaults used by ``/trigger`` and by requests that omit a value."""

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    strength: float = 0.5
    num_inference_steps: int = 25
    guidance_scale: float = 2.5
    duration: float = 10.0
    scheduler: str = "ddim"
    input_path: str = ""
    concept: str = ""
    bars: int = 0
    lora_scale: float = 1.0

    @classmethod
    def from_config(cls, config: Config) -> Session:
        d = config.defaults
        return cls(
            prompt=d.prompt,
            negative_prompt=d.negative_prompt,
            seed=d.seed,
            strength=d.strength,
            num_inference_steps=d.num_inference_steps,
            guidance_scale=d.guidance_scale,
            duration=d.duration,
            scheduler=d.scheduler,
        )

    def params(self) -> GenerationParams:
        """The session as generation parameters (every field set)."""
        return GenerationParams(**{k: v for k, v in dataclasses.asdict(self).items()})


def max_input_bytes(config: Config) -> int:
    """``limits.max_input_mb`` in bytes."""
    return int(config.limits.max_input_mb * 2**20)


def resolve_input(raw: str | Path, input_dirs: Sequence[Path],
                  max_bytes: int | None = None) -> Path:
    """Find an input clip inside the configured input folders and check it is audio.

    A relative path is looked up in each input folder in turn (the first that holds it wins).
    Only the file's header is read.

    Raises:
        RequestError: outside the input folders, missing, not audio, not a usable name, or
            larger than ``max_bytes`` (``limits.max_input_mb``).
    """
    path = Path(raw).expanduser()
    roots = [Path(d).resolve() for d in input_dirs]
    candidates = [path] if path.is_absolute() else [root / path for root in roots]
    for candidate in candidates:
        resolved = candidate.resolve()
        if not any(resolved.is_relative_to(root) for root in roots):
            continue
        if len(candidates) > 1 and not resolved.exists():
            continue  # look in the next folder
        try:
            probe_audio(resolved, max_bytes=max_bytes)
        except AudioFileError as exc:
            raise RequestError(f"input {exc}") from None
        except OSError as exc:  # e.g. a name longer than the file system allows
            raise RequestError(f"input {str(path)[:120]}: {exc.strerror or exc}") from None
        return resolved
    folders = ", ".join(str(r) for r in roots) or "(none configured)"
    if path.is_absolute():
        raise RequestError(f"input {path}: outside the input folders ({folders})")
    raise RequestError(f"input {path}: no such file in the input folders ({folders})")


def check_concept(name: str, loaded: Collection[str]) -> None:
    """Refuse a concept that is not loaded.

    Raises:
        RequestError: names the concept and the loaded ones.
    """
    if name not in loaded:
        shown = ", ".join(loaded) or "none"
        raise RequestError(f"concept {name!r} is not loaded (loaded: {shown}); "
                           f"send /concept/load {name}")


def build_request(params: GenerationParams, transfer: bool, session: Session, config: Config,
                  clock: TempoClock, loaded: Collection[str]
                  ) -> tuple[GenerationRequest, LoopSpec | None]:
    """The request for ``params`` over the ``session`` defaults, checked against the limits of
    ``config``, with its bar length at the ``clock``'s tempo (or None for seconds).

    Raises:
        RequestError: a value out of range or beyond the limits, a missing prompt or input, an
            input outside the input folders, a concept not in ``loaded``.
    """
    s = session
    limits = config.limits
    if params.continuation is not None or params.mask_start is not None:
        return _region_request(params, s, config, clock, loaded), None
    loop = loop_spec(params, s, clock)
    if loop is not None:
        seconds = bars_to_seconds(loop.bars, loop.bpm, loop.beats_per_bar)
        # generate whole milliseconds at least as long as the bars; fit_to_bars cuts
        duration = math.ceil(seconds * 1000.0) / 1000.0
        if duration > limits.max_duration:
            raise RequestError(
                f"{loop.bars} bars at {loop.bpm:g} BPM last {seconds:.2f} s: more than the "
                f"limit of {limits.max_duration:g} s"
            )
    else:
        duration = float(_or(params.duration, s.duration))
    if duration > limits.max_duration:
        raise RequestError(
            f"duration {duration:g} s exceeds the limit of {limits.max_duration:g} s"
        )
    steps = _steps(params, s, config)
    prompt = _or(params.prompt, s.prompt)
    if not prompt or not str(prompt).strip():
        raise RequestError("missing prompt")
    if transfer:
        raw = _or(params.input_path, s.input_path)
        if not raw:
            raise RequestError("missing input")
        input_path: Path | None = resolve_input(raw, config.input_dirs, max_input_bytes(config))
    else:
        input_path = None
    request = GenerationRequest(
        prompt=str(prompt),
        duration=duration,
        input_path=input_path,
        strength=float(_or(params.strength, s.strength)) if transfer else 1.0,
        **_common(params, s, steps, loaded),
    )
    return request, loop


def _steps(params: GenerationParams, session: Session, config: Config) -> int:
    """``num_inference_steps`` of the request.

    Raises:
        RequestError: beyond ``limits.max_steps``.
    """
    steps = int(_or(params.num_inference_steps, session.num_inference_steps))
    if steps > config.limits.max_steps:
        raise RequestError(f"steps {steps} exceeds the limit of {config.limits.max_steps}")
    return steps


def _common(params: GenerationParams, session: Session, steps: int,
            loaded: Collection[str]) -> dict[str, Any]:
    """The request fields every kind of job takes from the message, else the session: negative
    prompt, seed, ``steps``, guidance scale, scheduler, LoRA scale, and ``concept`` and
    ``loras``, each checked to be loaded.

    Raises:
        RequestError: a concept or LoRA that is not loaded.
    """
    concept = str(_or(params.concept, session.concept) or "") or None
    if concept is not None:
        check_concept(concept, loaded)
    loras = tuple((str(n), float(w)) for n, w in (params.loras or ()))
    for name, _ in loras:
        check_concept(name, loaded)
    return {
        "negative_prompt": str(_or(params.negative_prompt, session.negative_prompt)),
        "seed": int(_or(params.seed, session.seed)),
        "num_inference_steps": steps,
        "guidance_scale": float(_or(params.guidance_scale, session.guidance_scale)),
        "scheduler": str(_or(params.scheduler, session.scheduler)),
        "lora_scale": float(_or(params.lora_scale, session.lora_scale)),
        "concept": concept,
        "loras": loras,
        "count": int(params.count or 1),  # issue 21: takes (not a session parameter)
    }


UNITS = ("seconds", "bars")


def _seconds(value: float, unit: str, clock: TempoClock) -> float:
    """``value`` in ``unit`` (seconds, or bars at the clock's tempo) as seconds."""
    if unit == "seconds":
        return float(value)
    return bars_to_seconds(value, clock.bpm, clock.beats_per_bar)


def _region_request(params: GenerationParams, s: Session, config: Config, clock: TempoClock,
                    loaded: Collection[str]) -> GenerationRequest:
    """The continuation or inpainting request for ``params``: the input is looked up in the
    input folders, then the output folder (clips the server made); times in ``params.unit``
    become seconds; the length follows the input (continuation: input + new audio; inpainting:
    the input, or up to ``mask_end`` when it passes the input's end).

    Raises:
        RequestError: unknown unit, missing prompt or input, an input outside those folders or
            not audio, a region out of range, a length beyond ``limits.max_duration``, a
            concept or LoRA not loaded.
    """
    limits = config.limits
    unit = (params.unit or "seconds").strip().lower()
    if unit not in UNITS:
        raise RequestError(f"unit must be seconds or bars, got {params.unit!r}")
    steps = _steps(params, s, config)
    prompt = _or(params.prompt, s.prompt)
    if not prompt or not str(prompt).strip():
        raise RequestError("missing prompt (give one, or set /param/prompt)")
    if not params.input_path:
        raise RequestError("missing input")
    input_path = resolve_input(params.input_path, [*config.input_dirs, config.output.dir],
                               max_input_bytes(config))
    input_seconds = probe_audio(input_path)
    region: dict[str, float] = {}
    if params.continuation is not None:
        region["continuation"] = _seconds(params.continuation, unit, clock)
        if not region["continuation"] > 0:
            raise RequestError(f"continuation must be > 0, got {params.continuation:g} {unit}")
        duration = input_seconds + region["continuation"]
    else:
        if params.mask_end is None:
            raise RequestError("inpainting needs start and end")
        region["mask_start"] = _seconds(float(params.mask_start or 0.0), unit, clock)
        region["mask_end"] = _seconds(params.mask_end, unit, clock)
        if not region["mask_start"] < region["mask_end"]:
            raise RequestError(f"inpainting needs start < end, got {params.mask_start:g} and "
                               f"{params.mask_end:g} {unit}")
        duration = max(input_seconds, region["mask_end"])
    if duration > limits.max_duration:
        raise RequestError(f"the output would last {duration:.2f} s: more than the limit of "
                           f"{limits.max_duration:g} s")
    return GenerationRequest(prompt=str(prompt), duration=duration, input_path=input_path,
                             **_common(params, s, steps, loaded), **region)

def loop_spec(params: GenerationParams, session: Session, clock: TempoClock) -> LoopSpec | None:
    """The bar length asked for at the session tempo (rounded to 0.01 BPM), or None.

    Raises:
        RequestError: negative bars.
    """
    if params.bars is not None:
        bars = int(params.bars)
    elif params.duration is not None:
        bars = 0
    else:
        bars = session.bars
    if bars < 0:
        raise RequestError(f"bars must be >= 0, got {bars}")
    if bars == 0:
        return None
    return LoopSpec(round(clock.bpm, 2), bars, clock.beats_per_bar)

def _or(value: Any, default: Any) -> Any:
    return default if value is None else value
