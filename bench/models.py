"""Full-size random-weight pipelines of the real classes, built in code (no download).

Architectures from the public configs (see ../shared/README.md): MusicLDM's UNet has block_out
128·[1, 2, 3, 5] (185 M parameters), 8 latent channels, CLAP HTSAT-base + RoBERTa-base text tower,
64-mel 16 kHz HiFi-GAN with upsample rates [5, 4, 2, 2, 2].
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import ClapConfig, ClapModel, SpeechT5HifiGan, SpeechT5HifiGanConfig

from dreamsampler.engine.families import MusicLDMFamily
from dreamsampler.engine.tiny import tiny_tokenizer


def musicldm_full_size(device: str = "cpu", seed: int = 0) -> MusicLDMFamily:
    """A MusicLDM-shaped model with random weights (produces noise; for timing only)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = ClapModel(ClapConfig(projection_dim=512))
        vae = AutoencoderKL(
            in_channels=1, out_channels=1,
            down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
            block_out_channels=(128, 256, 512), latent_channels=8, layers_per_block=2,
            sample_size=1024, scaling_factor=1.0753,
        )
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
        vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
            model_in_dim=64, sampling_rate=16000, upsample_initial_channel=1024,
            upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 4, 4],
            resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
            normalize_before=False,
        ))
    scheduler = DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    components = {"tokenizer": tiny_tokenizer(), "text_encoder": text_encoder, "vae": vae,
                  "unet": unet, "vocoder": vocoder, "scheduler": scheduler}
    return MusicLDMFamily("musicldm-full-size-random", components, torch.device(device),
                          torch.float32)


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
