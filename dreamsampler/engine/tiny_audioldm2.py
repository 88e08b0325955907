"""A miniature random-weight AudioLDM 2 (``tiny:audioldm2``) of the real classes, built offline.

Same classes as ``cvssp/audioldm2``: ``RobertaTokenizer`` + ``ClapModel`` (CLAP), ``T5Tokenizer``
+ ``T5EncoderModel`` (Flan-T5), ``AudioLDM2ProjectionModel``, ``GPT2Model``,
``AudioLDM2UNet2DConditionModel`` (self-attention, then cross-attention to GPT-2's states, then
to T5's), ``AutoencoderKL``, ``SpeechT5HifiGan``, ``DDIMScheduler``; widths of 16–24 instead of
768–1024. The T5 tokenizer is a Unigram piece list (single characters, ``▁`` + lowercase letters)
so no sentencepiece file is needed. Built under the caller's RNG (see
:func:`dreamsampler.engine.tiny.build_tiny_components`).
"""

from __future__ import annotations

import string

from diffusers import (
    AudioLDM2ProjectionModel,
    AudioLDM2UNet2DConditionModel,
)
from transformers import (
    ClapConfig,
    ClapModel,
    GPT2Config,
    GPT2Model,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

SAMPLE_RATE = 16000  # Hz, as AudioLDM 2
N_MELS = 16  # the full models use 64
CLAP_DIM = 16  # CLAP projection (512 in the full model)
T5_DIM = 24  # Flan-T5-large d_model is 1024
GPT2_DIM = 16  # GPT-2 n_embd is 768
LATENT_CHANNELS = 8  # as the full model


def tiny_t5_tokenizer() -> T5Tokenizer:
    """A T5 (Unigram) tokenizer over single characters and ``▁`` + lowercase letters."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in sorted(set(string.printable.strip()))]
    pieces += [("▁" + c, -2.5) for c in string.ascii_lowercase]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=32)


def tiny_audioldm2_components() -> dict[str, object]:
    """The components of an ``AudioLDM2Pipeline`` by key (random weights, global RNG)."""
    from dreamsampler.engine.tiny_audioldm import tiny_ddim, tiny_tokenizer, tiny_vae, tiny_vocoder

    tokenizer = tiny_tokenizer()
    tokenizer_2 = tiny_t5_tokenizer()
    text_encoder = ClapModel(
        ClapConfig(
            text_config={
                "vocab_size": len(tokenizer), "hidden_size": 16, "num_hidden_layers": 1,
                "num_attention_heads": 2, "intermediate_size": 32,
                "max_position_embeddings": 80, "projection_dim": CLAP_DIM,
            },
            audio_config={
                "spec_size": 64, "num_mel_bins": 16, "patch_embeds_hidden_size": 8,
                "hidden_size": 16, "depths": [1, 1], "num_attention_heads": [1, 2],
                "window_size": 4, "projection_dim": CLAP_DIM,
            },
            projection_dim=CLAP_DIM,
        )
    )
    text_encoder_2 = T5EncoderModel(
        T5Config(vocab_size=len(tokenizer_2), d_model=T5_DIM, d_kv=8, d_ff=32, num_layers=1,
                 num_heads=2, relative_attention_num_buckets=8)
    )
    projection_model = AudioLDM2ProjectionModel(
        text_encoder_dim=CLAP_DIM, text_encoder_1_dim=T5_DIM, langauge_model_dim=GPT2_DIM
    )
    language_model = GPT2Model(
        GPT2Config(n_embd=GPT2_DIM, n_layer=1, n_head=2, n_positions=128, vocab_size=2,
                   bos_token_id=0, eos_token_id=0, max_new_tokens=8)
    )
    unet = AudioLDM2UNet2DConditionModel(
        sample_size=(64, N_MELS // 2),
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        # per block: self-attention, cross-attention to GPT-2 states, cross-attention to T5
        cross_attention_dim=([None, GPT2_DIM, T5_DIM], [None, GPT2_DIM, T5_DIM]),
        attention_head_dim=4,
    )
    vae = tiny_vae(LATENT_CHANNELS)
    vocoder = tiny_vocoder()
    scheduler = tiny_ddim()
    return {
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "projection_model": projection_model,
        "language_model": language_model,
        "vae": vae,
        "unet": unet,
        "vocoder": vocoder,
        "scheduler": scheduler,
    }
