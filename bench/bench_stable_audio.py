"""CPU seconds per denoising step and per decode for full-size random-weight Stable Audio models:
our loop (latents sized to the clip) against the stock ``StableAudioPipeline`` window (it always
denoises and decodes ``sample_size`` = 1024 latent frames, 47.55 s, then crops).

* **Open 1.0**: ``StableAudioDiTModel`` at its public config (24 layers, 24 heads × 64, 1.06 B
  parameters), ``AutoencoderOobleck`` (2048 samples per frame, 64 latent channels), one step =
  one DiT forward of batch 2 (classifier-free guidance) through the family's ``denoise``.
* **SA3-small-like**: ``StableAudio3DiTModel`` with a guessed small config (embed 1024, depth 16,
  16 heads; the published small configs are not in diffusers), ``AutoencoderSAME`` at its
  default (SAME-S, 4096 samples per frame); one step = one DiT forward of batch 1 (the distilled
  models need no guidance). SA3 has no fixed window: the stock pipeline also sizes to the clip.

Weights are random (built from configs in code, nothing downloaded): timing only. Each figure is
the median of ``--repeats`` runs after ``--warmup`` untimed ones. Printed, never asserted.

    OMP_NUM_THREADS=2 python bench/bench_stable_audio.py [--seconds 10] [--repeats 1]
        [--warmup 1] [--skip-window-decode] [--skip-sa3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.models import parameter_count
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.stable_audio import (
    StableAudio3DiT,
    StableAudio3Family,
    StableAudioDiT,
    StableAudioOpenFamily,
)
from dreamsampler.engine.tiny_stable_audio import tiny_gemma_tokenizer, tiny_t5_tokenizer


def open_full_size() -> StableAudioOpenFamily:
    """Stable Audio Open 1.0's architecture with random weights (t5-base text tower)."""
    from diffusers import AutoencoderOobleck, CosineDPMSolverMultistepScheduler
    from diffusers.pipelines.stable_audio.modeling_stable_audio import (
        StableAudioProjectionModel,
    )
    from transformers import T5Config, T5EncoderModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        components = {
            "tokenizer": tiny_t5_tokenizer(),
            "text_encoder": T5EncoderModel(T5Config(vocab_size=32128, d_model=768, d_ff=3072,
                                                    num_layers=12, num_heads=12)),
            "projection_model": StableAudioProjectionModel(768, 768, 0, 512),
            "transformer": StableAudioDiT(),
            "vae": AutoencoderOobleck(),
            "scheduler": CosineDPMSolverMultistepScheduler(prediction_type="v_prediction"),
        }
    return StableAudioOpenFamily("stable-audio-open-full-size-random", components,
                                 torch.device("cpu"), torch.float32)


def sa3_small_like() -> StableAudio3Family:
    """An SA3-small-like model with random weights (guessed DiT size, SAME-S VAE)."""
    from diffusers import AutoencoderSAME, FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.stable_audio_3.modeling_stable_audio_3 import (
        StableAudio3DurationEmbedder,
    )
    from transformers import T5GemmaConfig, T5GemmaEncoderModel, T5GemmaModuleConfig

    tokenizer = tiny_gemma_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = T5GemmaModuleConfig(vocab_size=len(tokenizer), hidden_size=768,
                                     intermediate_size=2048, num_hidden_layers=12,
                                     num_attention_heads=12, num_key_value_heads=12,
                                     head_dim=64).to_dict()
        components = {
            "tokenizer": tokenizer,
            "text_encoder": T5GemmaEncoderModel(T5GemmaConfig(
                encoder=module, decoder=module, vocab_size=len(tokenizer),
                is_encoder_decoder=False)),
            "duration_embedder": StableAudio3DurationEmbedder(),
            "transformer": StableAudio3DiT(embed_dim=1024, depth=16, num_heads=16),
            "vae": AutoencoderSAME(),
            "scheduler": FlowMatchEulerDiscreteScheduler(num_train_timesteps=1,
                                                         stochastic_sampling=True),
        }
    return StableAudio3Family("sa3-small-like-random", components, torch.device("cpu"),
                              torch.float32)


WARMUP = 1


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls after :data:`WARMUP` warm-up calls."""
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _row(rows: list[tuple[str, str, float]], label: str, what: str, seconds: float) -> None:
    rows.append((label, what, seconds))
    print(f"  {label}: {what}: {seconds:.2f} s", flush=True)


def bench_family(model: StableAudioOpenFamily | StableAudio3Family, label: str, seconds: float,
                 guided: bool, window_frames: int | None, repeats: int,
                 window_decode: bool) -> list[tuple[str, str, float]]:
    rows: list[tuple[str, str, float]] = []
    request = GenerationRequest(prompt="warm analog pad", duration=seconds,
                                guidance_scale=7.0 if guided else 1.0)
    cond = model.conditioning(request, guided)
    batch = 2 if guided else 1
    t = torch.tensor(0.5)
    sizes = [("ours", model.frames(seconds))]
    if window_frames is not None:
        sizes.append(("stock window", window_frames))
    with torch.inference_mode():
        for name, frames in sizes:
            x = torch.randn(batch, model.latent_channels, frames)
            _row(rows, label, f"DiT step ({name}, {frames} frames, batch {batch})",
                 timed(lambda x=x: model.denoise(x, t, cond), repeats))
        for name, frames in sizes:
            if name != "ours" and not window_decode:
                continue
            z = torch.randn(1, model.latent_channels, frames)
            _row(rows, label, f"VAE decode ({name}, {frames} frames)",
                 timed(lambda z=z: model.latents_to_audio(z), repeats))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-window-decode", action="store_true",
                        help="do not time the stock 47.55 s window decode (the slowest part)")
    parser.add_argument("--skip-sa3", action="store_true")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before each")
    args = parser.parse_args()
    global WARMUP
    WARMUP = args.warmup
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"clip {args.seconds} s, random weights, float32 on CPU")
    rows: list[tuple[str, str, float]] = []
    model = open_full_size()
    print(f"Open 1.0: DiT {parameter_count(model.components['transformer']) / 1e9:.2f} B, "
          f"VAE {parameter_count(model.components['vae']) / 1e6:.0f} M parameters")
    rows += bench_family(model, "Open 1.0", args.seconds, True,
                         int(model.components["transformer"].config.sample_size), args.repeats,
                         not args.skip_window_decode)
    del model
    if not args.skip_sa3:
        sa3 = sa3_small_like()
        print(f"SA3-small-like: DiT {parameter_count(sa3.components['transformer']) / 1e6:.0f} M,"
              f" VAE {parameter_count(sa3.components['vae']) / 1e6:.0f} M parameters")
        rows += bench_family(sa3, "SA3-small-like", args.seconds, False, None, args.repeats,
                             False)
    print()
    print("| model | what | seconds |\n|---|---|---:|")
    for label, what, seconds in rows:
        print(f"| {label} | {what} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
