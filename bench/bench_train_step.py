"""CPU seconds per training step for TI, LoRA and DreamBooth, on the tiny model and on a
full-size random-weight MusicLDM-shaped model (UNet block_out 128·[1, 2, 3, 5], ≈185 M parameters;
CLAP text+audio tower; built from configs in code, nothing downloaded).

Each method trains through :func:`dreamsampler.engine.training.trainer.train` (the real loop:
text encoding, denoising loss, backward, AdamW, TI row restore) for ``--steps`` optimizer steps
of batch 1 × accumulation 1 on one clip; the first step is reported apart (warm-up), the
others averaged. Clip VAE encoding and model building are not counted.

    OMP_NUM_THREADS=2 python bench/bench_train_step.py [--steps 3] [--seconds 10.24] [--skip-full]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamsampler.engine.families import MusicLDMFamily, load_model
from dreamsampler.engine.training.trainer import TrainSettings, train

METHODS = ("ti", "lora", "dreambooth")


def full_size_components() -> dict[str, Any]:
    """MusicLDM-shaped components with random weights (architecture from the public configs)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import ClapConfig, ClapModel, SpeechT5HifiGan, SpeechT5HifiGanConfig

    from dreamsampler.engine.tiny import tiny_tokenizer

    unet = UNet2DConditionModel(
        sample_size=(256, 16), in_channels=8, out_channels=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                          "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                        "UpBlock2D"),
        block_out_channels=(128, 256, 384, 640), layers_per_block=2,
        cross_attention_dim=(128, 256, 384, 640), attention_head_dim=8,
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=512,
        class_embeddings_concat=True,
    )
    vae = AutoencoderKL(
        in_channels=1, out_channels=1, latent_channels=8,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(128, 256, 512), layers_per_block=2, sample_size=512,
        scaling_factor=1.0753,
    )
    text_encoder = ClapModel(ClapConfig(text_config={"projection_dim": 512},
                                        audio_config={"projection_dim": 512},
                                        projection_dim=512))
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=64, sampling_rate=16000, upsample_initial_channel=1024,
        upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 4, 4],
        resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
        normalize_before=False,
    ))
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195,
                              beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False)
    return {"tokenizer": tiny_tokenizer(), "text_encoder": text_encoder, "vae": vae,
            "unet": unet, "vocoder": vocoder, "scheduler": scheduler}


def step_times(model: Any, method: str, seconds: float, steps: int) -> np.ndarray:
    """CPU seconds of each optimizer step of one training run."""
    clip = 0.3 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * 16000)) / 16000)
    stamps: list[float] = []
    start = [0.0]
    settings = TrainSettings(method=method, name=f"bench-{method}", steps=steps,  # type: ignore[arg-type]
                             grad_accum=1, checkpoint_every=0, lr=1e-5)

    def on_step(step: int, total: int, loss: float) -> None:
        stamps.append(time.process_time() - start[0])

    original = model.audio_to_latents

    def encode_then_start(*args: Any, **kwargs: Any) -> torch.Tensor:
        # the clock starts when the loop starts: after fingerprint and VAE encoding
        out = original(*args, **kwargs)
        start[0] = time.process_time()
        return out

    model.audio_to_latents = encode_then_start
    with tempfile.TemporaryDirectory() as scratch:
        train(model, settings, [clip.astype(np.float32)], Path(scratch), on_step=on_step)
    return np.diff([0.0, *stamps])


def bench(make_model: Any, label: str, seconds: float, steps: int) -> None:
    for method in METHODS:
        per = step_times(make_model(), method, seconds, steps)
        rest = per[1:] if len(per) > 1 else per
        print(f"{label:>10} {method:>10}: first step {per[0]:7.2f} s, then "
              f"{rest.mean():7.2f} s/step CPU ({len(rest)} steps)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.24, help="clip length")
    parser.add_argument("--skip-full", action="store_true", help="only the tiny model")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; CPU time "
          "(process_time: all threads) per optimizer step, batch 1")
    bench(lambda: load_model("tiny", "cpu"), "tiny", args.seconds, args.steps)
    if not args.skip_full:
        def full() -> MusicLDMFamily:
            torch.manual_seed(0)
            return MusicLDMFamily("full-random", full_size_components(), torch.device("cpu"),
                                  torch.float32)

        unet_params = sum(p.numel() for p in full_size_components()["unet"].parameters())
        print(f"full-size UNet: {unet_params / 1e6:.1f} M parameters")
        bench(full, "full-size", args.seconds, args.steps)


if __name__ == "__main__":
    main()
