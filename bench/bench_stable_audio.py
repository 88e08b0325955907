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
* **SA3-medium-like** (``--sa3-medium``): the same with a guessed medium DiT, the
  ``StableAudio3DiTModel`` class defaults (embed 1536, depth 24, 24 heads, the Open 1.0 DiT's
  width and depth); same text tower and SAME-S VAE (the medium's VAE size is not known here).
* **Training step** (``--train``): one LoRA optimizer step at batch 1 on a ``--seconds`` clip
  through the trainer's own pieces (:class:`~dreamsampler.engine.training.trainer.LoRA` on the
  family's targets, rank 4; :func:`~dreamsampler.engine.training.trainer.denoising_loss`: the
  family's v-objective (Open 1.0) or rectified flow (SA3); backward; AdamW step). The latents
  are random (no VAE encode) and the text is encoded outside the timed step, as the trainer
  does for LoRA (no text gradient).

Weights are random (built from configs in code, nothing downloaded): timing only. Each figure is
the median of ``--repeats`` runs after ``--warmup`` untimed ones. Printed, never asserted.

    OMP_NUM_THREADS=2 python bench/bench_stable_audio.py [--seconds 10] [--repeats 1]
        [--warmup 1] [--skip-window-decode] [--skip-decode] [--skip-sa3] [--sa3-medium]
        [--train]
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
from dreamsampler.engine.training.trainer import LoRA, TrainSettings, denoising_loss


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


#: guessed DiT sizes (the published SA3 configs are not in diffusers); medium = class defaults
SA3_SMALL_DIT = {"embed_dim": 1024, "depth": 16, "num_heads": 16}
SA3_MEDIUM_DIT = {"embed_dim": 1536, "depth": 24, "num_heads": 24}


def sa3_like(dit: dict[str, int], name: str) -> StableAudio3Family:
    """An SA3-like model with random weights (guessed DiT size ``dit``, SAME-S VAE)."""
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
            "transformer": StableAudio3DiT(**dit),
            "vae": AutoencoderSAME(),
            "scheduler": FlowMatchEulerDiscreteScheduler(num_train_timesteps=1,
                                                         stochastic_sampling=True),
        }
    return StableAudio3Family(name, components, torch.device("cpu"), torch.float32)


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
                 window_decode: bool, decode: bool = True) -> list[tuple[str, str, float]]:
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
            if not decode or (name != "ours" and not window_decode):
                continue
            z = torch.randn(1, model.latent_channels, frames)
            _row(rows, label, f"VAE decode ({name}, {frames} frames)",
                 timed(lambda z=z: model.latents_to_audio(z), repeats))
    return rows


def bench_train_step(model: StableAudioOpenFamily | StableAudio3Family, label: str,
                     seconds: float, repeats: int) -> list[tuple[str, str, float]]:
    """Seconds of one LoRA optimizer step (forward + backward + AdamW), batch 1 (changes
    ``model``: run it last)."""
    settings = TrainSettings(method="lora", name="bench-lora", steps=1, grad_accum=1).resolved()
    settings.lora_targets = model.lora_targets  # as train() does for the Stable Audio DiTs
    for module in model.components.values():
        if isinstance(module, torch.nn.Module):
            module.requires_grad_(False).eval()
    params = LoRA(model, settings).prepare()
    optimizer = torch.optim.AdamW(params, lr=settings.effective_lr,
                                  weight_decay=settings.weight_decay)
    frames = model.frames(seconds)
    z0 = torch.randn(1, model.latent_channels, frames)
    with torch.no_grad():
        cond = model.encode_text(["warm analog pad"])
    generator = torch.Generator("cpu").manual_seed(0)

    def step() -> None:
        loss = denoising_loss(model, None, z0, cond, generator)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rows: list[tuple[str, str, float]] = []
    _row(rows, label, f"LoRA training step ({frames} frames, batch 1, "
         f"{sum(p.numel() for p in params) / 1e6:.2f} M trained)", timed(step, repeats))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-window-decode", action="store_true",
                        help="do not time the stock 47.55 s window decode (the slowest part)")
    parser.add_argument("--skip-decode", action="store_true", help="time no VAE decode")
    parser.add_argument("--skip-open", action="store_true")
    parser.add_argument("--skip-sa3", action="store_true")
    parser.add_argument("--sa3-medium", action="store_true",
                        help="also an SA3-medium-like model (guessed config)")
    parser.add_argument("--train", action="store_true", help="also one LoRA training step")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before each")
    args = parser.parse_args()
    global WARMUP
    WARMUP = args.warmup
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"clip {args.seconds} s, random weights, float32 on CPU")
    rows: list[tuple[str, str, float]] = []
    decode = not args.skip_decode
    if not args.skip_open:
        model = open_full_size()
        print(f"Open 1.0: DiT {parameter_count(model.components['transformer']) / 1e9:.2f} B, "
              f"VAE {parameter_count(model.components['vae']) / 1e6:.0f} M parameters")
        rows += bench_family(model, "Open 1.0", args.seconds, True,
                             int(model.components["transformer"].config.sample_size),
                             args.repeats, not args.skip_window_decode, decode)
        if args.train:
            rows += bench_train_step(model, "Open 1.0", args.seconds, args.repeats)
        del model
    sa3_sizes = [] if args.skip_sa3 else [("SA3-small-like", SA3_SMALL_DIT)]
    if args.sa3_medium:
        sa3_sizes.append(("SA3-medium-like", SA3_MEDIUM_DIT))
    for label, dit in sa3_sizes:
        sa3 = sa3_like(dit, f"{label.lower()}-random")
        print(f"{label}: DiT {parameter_count(sa3.components['transformer']) / 1e6:.0f} M "
              f"({dit}), VAE {parameter_count(sa3.components['vae']) / 1e6:.0f} M parameters")
        rows += bench_family(sa3, label, args.seconds, False, None, args.repeats, False, decode)
        if args.train:
            rows += bench_train_step(sa3, label, args.seconds, args.repeats)
        del sa3
    print()
    print("| model | what | seconds |\n|---|---|---:|")
    for label, what, seconds in rows:
        print(f"| {label} | {what} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
