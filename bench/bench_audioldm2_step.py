"""CPU cost of one AudioLDM 2 UNet step with classifier-free guidance, full size, random weights.

Architecture of ``cvssp/audioldm2-music``'s UNet from the public configs (diffusers'
``scripts/convert_original_audioldm2_to_diffusers.py``, AudioLDM 2's ``DEFAULT_CONFIG``):
block_out 128·[1, 2, 3, 5], 2 ResNets per block, cross-attention in the three deeper blocks
(attention resolutions 8, 4, 2), each a self-attention layer then cross-attention to GPT-2's 8
generated states (768-d) and to Flan-T5-large's token states (1024-d), 32-channel heads,
8 latent channels. A 10.24 s clip is 1024 mel frames → latents ``(8, 256, 16)``; guidance runs a
batch of 2. Prints the parameter count and the seconds per step (median of ``--repeats``).
``--musicldm`` also times the full-size MusicLDM UNet (``bench/models.py``, conditioned on a
512-d CLAP embedding as ``class_labels``) the same way in the same run, for the ratio.

    OMP_NUM_THREADS=2 PYTHONPATH=. python bench/bench_audioldm2_step.py [--musicldm]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AudioLDM2UNet2DConditionModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GPT2_DIM, T5_DIM = 768, 1024


def audioldm2_music_unet(seed: int = 0) -> AudioLDM2UNet2DConditionModel:
    """The full-size UNet with random weights (for timing only)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AudioLDM2UNet2DConditionModel(
            sample_size=(256, 16), in_channels=8, out_channels=8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                              "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                            "UpBlock2D"),
            block_out_channels=(128, 256, 384, 640), layers_per_block=2,
            cross_attention_dim=[[None, GPT2_DIM, T5_DIM]] * 4,
            attention_head_dim=[4, 8, 12, 20],  # 32 channels per head
        ).eval()


def step_seconds(step: Callable[[], object], repeats: int) -> list[float]:
    """Seconds of ``repeats + 1`` calls of ``step`` (the first warms up)."""
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    return times


def report(label: str, times: list[float]) -> None:
    print(f"{label}: one UNet step with CFG (batch 2): {statistics.median(times[1:]):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.24)
    parser.add_argument("--t5-tokens", type=int, default=32, help="prompt length in T5 tokens")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--musicldm", action="store_true",
                        help="also time the full-size MusicLDM UNet step")
    args = parser.parse_args()
    unet = audioldm2_music_unet()
    params = sum(p.numel() for p in unet.parameters())
    frames = round(args.seconds * 100) // 4 // 8 * 8  # mel frames / VAE 4, UNet-divisible
    latents = torch.randn(2, 8, frames, 16)
    generated = torch.randn(2, 8, GPT2_DIM)
    t5 = torch.randn(2, args.t5_tokens, T5_DIM)
    mask = torch.ones(2, args.t5_tokens, dtype=torch.long)
    print(f"AudioLDM2-music-shaped UNet: {params / 1e6:.1f} M parameters, "
          f"latents {tuple(latents.shape)}, threads {torch.get_num_threads()}")
    report("AudioLDM2-music", step_seconds(
        lambda: unet(latents, torch.tensor(500), encoder_hidden_states=generated,
                     encoder_hidden_states_1=t5, encoder_attention_mask_1=mask,
                     return_dict=False), args.repeats))
    if args.musicldm:
        from bench.models import musicldm_full_size, parameter_count

        del unet
        musicldm = musicldm_full_size().components["unet"].eval()
        print(f"MusicLDM UNet: {parameter_count(musicldm) / 1e6:.1f} M parameters")
        clap = torch.randn(2, 512)  # the pipeline passes the CLAP text embedding as class_labels
        report("MusicLDM", step_seconds(
            lambda: musicldm(latents, torch.tensor(500), encoder_hidden_states=None,
                             class_labels=clap, return_dict=False), args.repeats))


if __name__ == "__main__":
    main()
