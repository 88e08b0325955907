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


def resolve_input(raw: str | Path, input_dirs: Sequence[Path]) -> Path:
    """Find an input clip inside the configured input folders and check it is audio.

    A relative path is looked up in each input folder in turn.

    Raises:
        RequestError: outside the input folders, missing, not audio, or not a usable name.
    """
    path = Path(raw).expanduser()
    roots = [Path(d).resolve() for d in input_dirs]
    candidates = [path] if path.is_absolute() else [root / path for root in roots]
    for candidate in candidates:
        resolved = candidate.resolve()
        if not any(resolved.is_relative_to(root) for root in roots):
            continue
        try:
            probe_audio(resolved)
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
    steps = int(_or(params.num_inference_steps, s.num_inference_steps))
    if steps > limits.max_steps:
        raise RequestError(f"steps {steps} exceeds the limit of {limits.max_steps}")
    prompt = _or(params.prompt, s.prompt)
    if not prompt or not str(prompt).strip():
        raise RequestError("missing prompt")
    if transfer:
        raw = _or(params.input_path, s.input_path)
        if not raw:
            raise RequestError("missing input")
        input_path: Path | None = resolve_input(raw, config.input_dirs)
    else:
        input_path = None
    concept = str(_or(params.concept, s.concept) or "") or None
    if concept is not None:
        check_concept(concept, loaded)
    request = GenerationRequest(
        prompt=str(prompt),
        negative_prompt=str(_or(params.negative_prompt, s.negative_prompt)),
        seed=int(_or(params.seed, s.seed)),
        num_inference_steps=steps,
        guidance_scale=float(_or(params.guidance_scale, s.guidance_scale)),
        duration=duration,
        scheduler=str(_or(params.scheduler, s.scheduler)),
        input_path=input_path,
        strength=float(_or(params.strength, s.strength)) if transfer else 1.0,
        concept=concept,
        lora_scale=float(_or(params.lora_scale, s.lora_scale)),
    )
    return request, loop

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
