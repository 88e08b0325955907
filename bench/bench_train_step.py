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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.models import musicldm_full_size, parameter_count
from dreamsampler.engine.families import load_model
from dreamsampler.engine.training.trainer import TrainSettings, train

METHODS = ("ti", "lora", "dreambooth")


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
        model = make_model()  # training changes the model: a fresh one per method
        if method == METHODS[0]:
            print(f"{label}: UNet {parameter_count(model.components['unet']) / 1e6:.1f} M "
                  "parameters")
        per = step_times(model, method, seconds, steps)
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
        bench(musicldm_full_size, "full-size", args.seconds, args.steps)


if __name__ == "__main__":
    main()
