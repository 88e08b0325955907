"""Miniature random-weight pipelines of the real classes, built offline in code.

``tiny`` (MusicLDM-shaped) and ``tiny:audioldm`` are wiring/test fixtures: the same diffusers and
transformers classes as the full models (``AutoencoderKL``, ``UNet2DConditionModel``,
``ClapModel``/``ClapTextModelWithProjection``, ``RobertaTokenizer``, ``SpeechT5HifiGan``,
``DDIMScheduler``) with a few thousand random weights each. They produce noise, not music, but
every code path (text encoding, sampling loop, SDEdit, VAE, vocoder, concepts) runs in milliseconds
with no network. Weights are seeded, so two builds are identical.
"""

from __future__ import annotations

import json
from pathlib import Path

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

TINY_NAMES = {"tiny": "musicldm", "tiny:musicldm": "musicldm", "tiny:audioldm": "audioldm",
              "tiny:audioldm2": "audioldm2", "tiny:stable-audio": "stable-audio", "tiny:sa3": "sa3"}
_PIPELINE_CLASS = {"musicldm": "MusicLDMPipeline", "audioldm": "AudioLDMPipeline",
                   "audioldm2": "AudioLDM2Pipeline", "stable-audio": "StableAudioPipeline",
                   "sa3": "StableAudio3Pipeline"}

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


def _components(family: str) -> dict[str, object]:
    if family == "audioldm2":
        from dreamsampler.engine.tiny_audioldm2 import tiny_audioldm2_components

        return tiny_audioldm2_components()
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
    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=1.0,
    )
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
    vocoder = SpeechT5HifiGan(
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
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.0015,
        beta_end=0.0195,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "vae": vae,
        "unet": unet,
        "vocoder": vocoder,
        "scheduler": scheduler,
    }


def build_tiny_components(name: str = "tiny", seed: int = 0) -> tuple[str, dict[str, object]]:
    """Build a tiny pipeline's components in memory.

    Args:
        name: a key of :data:`TINY_NAMES`.
        seed: seeds the random weights (the global RNG is left as it was).

    Returns:
        ``(family, components)`` with keys tokenizer, text_encoder, vae, unet, vocoder, scheduler.

    Raises:
        KeyError: unknown tiny name.
    """
    family = TINY_NAMES[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family in ("stable-audio", "sa3"):  # dreamsampler.engine.tiny_stable_audio
            from dreamsampler.engine.tiny_stable_audio import build_components

            components = build_components(family)
        else:
            components = _components(family)
    for module in components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    return family, components


def save_tiny_pipeline(directory: Path, name: str = "tiny", seed: int = 0) -> Path:
    """Write a tiny pipeline in the diffusers folder layout (``model_index.json`` + subfolders).

    The result loads through the same ``from_pretrained(dir)`` code as a downloaded model.
    """
    family, components = build_tiny_components(name, seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    index: dict[str, object] = {"_class_name": _PIPELINE_CLASS[family], "_diffusers_version": ""}
    for key, component in components.items():
        component.save_pretrained(directory / key)  # type: ignore[attr-defined]
        cls = type(component)
        while not cls.__module__.startswith(("diffusers", "transformers")):
            cls = cls.__mro__[1]  # our adapter subclasses record their diffusers class
        library = "diffusers" if cls.__module__.startswith("diffusers") else "transformers"
        index[key] = [library, cls.__name__]
    (directory / "model_index.json").write_text(json.dumps(index, indent=2))
    return directory
