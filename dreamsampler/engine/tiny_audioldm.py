"""Tiny random-weight MusicLDM and AudioLDM components (``tiny``, ``tiny:musicldm``,
``tiny:audioldm``): the real diffusers/transformers classes (``AutoencoderKL``,
``UNet2DConditionModel``, ``ClapModel``/``ClapTextModelWithProjection``, ``RobertaTokenizer``,
``SpeechT5HifiGan``, ``DDIMScheduler``) with a few thousand weights each. Built through
:func:`dreamsampler.engine.tiny.build_tiny_components`.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from tokenizers.pre_tokenizers import ByteLevel
from transformers import (
    ClapConfig,
    ClapModel,
    ClapTextConfig,
    ClapTextModelWithProjection,
    RobertaTokenizer,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
)

SAMPLE_RATE = 16000  # Hz, as AudioLDM/MusicLDM
HOP_LENGTH = 160  # samples per mel frame, as AudioLDM/MusicLDM (10 ms)
N_MELS = 16  # the full models use 64
PROJECTION_DIM = 16  # the full models use 512


def tiny_tokenizer() -> RobertaTokenizer:
    """A byte-level BPE tokenizer with no merges (every byte is a token), RoBERTa-style."""
    # alphabet() comes from a hash set: sort it so ids are the same in every process
    vocab = ["<s>", "<pad>", "</s>", "<unk>", *sorted(ByteLevel.alphabet()), "<mask>"]
    return RobertaTokenizer(
        vocab={tok: i for i, tok in enumerate(vocab)}, merges=[], model_max_length=77
    )


def _text_config(vocab_size: int) -> dict:
    return {
        "vocab_size": vocab_size,
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 80,
        "projection_dim": PROJECTION_DIM,
    }


def tiny_clap_components(family: str) -> dict[str, object]:
    """Components of tiny ``musicldm`` (full ``ClapModel``) or ``audioldm`` (CLAP text tower)."""
    tokenizer = tiny_tokenizer()
    if family == "musicldm":
        text_encoder: torch.nn.Module = ClapModel(
            ClapConfig(
                text_config=_text_config(len(tokenizer)),
                audio_config={
                    "spec_size": 64,
                    "num_mel_bins": 16,
                    "patch_embeds_hidden_size": 8,
                    "hidden_size": 16,
                    "depths": [1, 1],
                    "num_attention_heads": [1, 2],
                    "window_size": 4,
                    "projection_dim": PROJECTION_DIM,
                },
                projection_dim=PROJECTION_DIM,
            )
        )
    else:
        text_encoder = ClapTextModelWithProjection(ClapTextConfig(**_text_config(len(tokenizer))))
    vae = tiny_vae()
    unet = UNet2DConditionModel(
        sample_size=(64, N_MELS // 2),
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=(8, 16),
        attention_head_dim=4,
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=PROJECTION_DIM,
        class_embeddings_concat=True,
    )
    vocoder = tiny_vocoder()
    scheduler = tiny_ddim()
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "vae": vae,
        "unet": unet,
        "vocoder": vocoder,
        "scheduler": scheduler,
    }


def tiny_vae(latent_channels: int = 4) -> AutoencoderKL:
    """The mel VAE of the tiny AudioLDM-family builds (1 input channel, 4x down)."""
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=latent_channels,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=1.0,
    )


def tiny_vocoder() -> SpeechT5HifiGan:
    """The HiFi-GAN of the tiny AudioLDM-family builds (16 mels at 16 kHz, hop 160)."""
    return SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=N_MELS,
            sampling_rate=SAMPLE_RATE,
            upsample_initial_channel=16,
            upsample_rates=[10, 16],
            upsample_kernel_sizes=[20, 32],
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1, 3]],
            normalize_before=False,
            initializer_range=0.12,  # the default 0.01 gives ~1e-6 output: below 24-bit LSBs
        )
    )


def tiny_ddim() -> DDIMScheduler:
    """AudioLDM's DDIM settings."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.0015,
        beta_end=0.0195,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )
