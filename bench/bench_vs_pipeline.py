"""Our loop against diffusers' own pipeline, end to end, per family, interleaved (A B A B …).

Same components (full-size random weights, or a tiny model), prompt, seed, steps, guidance and
clip length; each side's median of ``--repeats`` runs after one warm-up each, run alternately so
both see the same machine load. The ratio is ours / pipeline (≤ 1.0: ours is not slower).

* ``musicldm``: ``MusicLDMPipeline`` given ``prompt_embeds`` (its own text encoding breaks
  under transformers 5; ours is cached, so the comparison leaves the text out on both sides).
* ``sa3-small``: ``StableAudio3Pipeline`` on the SA3-small-like model (guessed DiT config).
* ``stable-audio``: ``StableAudioPipeline`` (denoises and decodes its whole 47.55 s window).

``--profile`` prints cProfile's top functions (cumulative time) of one run of each side: where
the time goes.

    OMP_NUM_THREADS=2 python bench/bench_vs_pipeline.py --families sa3-small --seconds 2 \\
        --steps 8 --repeats 3 [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_suite import FAMILIES
from dreamsampler.engine.families import ModelFamily
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample


def pipeline_call(model: ModelFamily, request: GenerationRequest) -> Callable[[], object]:
    """The diffusers pipeline of ``model``'s family over the same components, as a thunk."""
    from diffusers import MusicLDMPipeline, StableAudio3Pipeline, StableAudioPipeline

    parts = {k: v for k, v in model.components.items() if k != "scheduler"}
    scheduler = model.components["scheduler"]
    fresh = type(scheduler).from_config(scheduler.config)

    def generator() -> torch.Generator:
        return torch.Generator("cpu").manual_seed(request.seed)

    if model.name == "musicldm":
        pipe = MusicLDMPipeline(scheduler=fresh, feature_extractor=None, **parts)
        embeds = model.encode_prompt([request.negative_prompt, request.prompt])
        pipe.set_progress_bar_config(disable=True)
        return lambda: pipe(prompt_embeds=embeds[1:], negative_prompt_embeds=embeds[:1],
                            num_inference_steps=request.num_inference_steps,
                            audio_length_in_s=request.duration,
                            guidance_scale=request.guidance_scale, generator=generator(),
                            output_type="np")
    if model.name == "sa3":
        pipe3 = StableAudio3Pipeline(scheduler=fresh, **parts)
        pipe3.set_progress_bar_config(disable=True)
        return lambda: pipe3(request.prompt, duration=request.duration,
                             num_inference_steps=request.num_inference_steps,
                             guidance_scale=request.guidance_scale, generator=generator())
    pipe_open = StableAudioPipeline(scheduler=fresh, **parts)
    pipe_open.set_progress_bar_config(disable=True)
    return lambda: pipe_open(request.prompt, audio_end_in_s=request.duration,
                             num_inference_steps=request.num_inference_steps,
                             guidance_scale=request.guidance_scale, generator=generator())


def profile(label: str, fn: Callable[[], object], top: int) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(top)
    print(f"--- {label}: cProfile, cumulative ---")
    print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="musicldm,sa3-small")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (CPU)")
    with torch.inference_mode():
        for name in args.families.split(","):
            build, steps, guidance = FAMILIES[name]
            model = build("cpu")
            request = GenerationRequest("warm analog bass, tape saturation", seed=7,
                                        num_inference_steps=args.steps or steps,
                                        duration=args.seconds, guidance_scale=guidance)
            ours: Callable[[], object] = lambda m=model, r=request: sample(m, r)  # noqa: E731
            theirs = pipeline_call(model, request)
            ours()
            theirs()
            times: dict[str, list[float]] = {"ours": [], "pipeline": []}
            for _ in range(args.repeats):
                for label, fn in (("ours", ours), ("pipeline", theirs)):
                    start = time.perf_counter()
                    fn()
                    times[label].append(time.perf_counter() - start)
            a, b = statistics.median(times["ours"]), statistics.median(times["pipeline"])
            print(f"{name:<14} steps {request.num_inference_steps:3d} clip {args.seconds:g} s  "
                  f"ours {a:7.2f} s  pipeline {b:7.2f} s  ratio {a / b:.3f}  "
                  f"(runs: ours {[round(t, 2) for t in times['ours']]}, pipeline "
                  f"{[round(t, 2) for t in times['pipeline']]})", flush=True)
            if args.profile:
                profile(f"{name} ours", ours, args.top)
                profile(f"{name} pipeline", theirs, args.top)


if __name__ == "__main__":
    main()
