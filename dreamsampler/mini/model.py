"""The ``mini`` model's components: the MusicLDM classes at a size that trains on one CPU thread.

Same classes and wiring as MusicLDM (Chen et al. 2023, arXiv 2308.01546) and :mod:`dreamsampler.
engine.tiny`: a ``ClapModel`` text tower whose pooled, projected, L2-normalised embedding enters a
``UNet2DConditionModel`` as ``class_labels`` (``class_embed_type="simple_projection"``), an
``AutoencoderKL`` on the 16 kHz, 64-band log-mel of AudioLDM's front end, a vocoder with
``SpeechT5HifiGan``'s config (Griffin-Lim, :mod:`dreamsampler.mini.vocoder`) and a
``DDIMScheduler``. Sizes are chosen for the mini world (0.96 s clips, 96 mel frames): the VAE
quarters time and frequency (8 × 24 × 16 latents), the UNet has three levels.
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from tokenizers import AddedToken
from transformers import ClapConfig, ClapModel, RobertaTokenizer

from dreamsampler.engine.tiny import tiny_tokenizer
from dreamsampler.mini import data
from dreamsampler.mini.vocoder import build_vocoder

SAMPLE_RATE = 16000
HOP_LENGTH = 160
N_MELS = 64
PROJECTION_DIM = 64
LATENT_SHAPE = (8, data.FRAMES // 4, N_MELS // 4)


def vocabulary() -> list[str]:
    """Whole-word tokens of the mini world's captions (added to the byte-level tokenizer, so
    any other text still tokenizes byte by byte)."""
    words = {"a", "an", "playing", "chord", "major", "minor", "drum", "beat", "at", "BPM"}
    for instrument in data.TRAINED + data.HELD_OUT:
        words.update(instrument.words.split())
    words.update(str(t) for t in data.TEMPOS)
    words.update(f"{n}{o}" for n in data.NOTE_NAMES for o in range(1, 8))
    words.update(data.NOTE_NAMES)
    return sorted(words)


def tokenizer() -> RobertaTokenizer:
    tok = tiny_tokenizer()
    tok.add_tokens([AddedToken(w, single_word=True) for w in vocabulary()])
    return tok


UNET_CHANNELS = (32, 64, 64)


PREDICTION_TYPE = "v_prediction"


def build_components(vocab_size: int, unet_channels: tuple[int, ...] = UNET_CHANNELS,
                     prediction_type: str = PREDICTION_TYPE) -> dict[str, object]:
    """Freshly initialised components (seed the global RNG first for reproducible weights).

    ``unet_channels``: the UNet's ``block_out_channels`` (three levels); the mid block's
    attention width follows the last one (its "cross" attention attends to itself, as in
    MusicLDM, which passes no ``encoder_hidden_states``).

    ``prediction_type``: the denoiser's target, ``v_prediction`` (Salimans & Ho 2022, sec. 4;
    as AudioLDM 2 and Stable Diffusion 2) by default, or ``epsilon`` (MusicLDM's): see
    :mod:`dreamsampler.mini.train` for why."""
    text = {
        "vocab_size": vocab_size, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 128, "max_position_embeddings": 80,
        "projection_dim": PROJECTION_DIM, "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    audio = {
        "spec_size": 64, "num_mel_bins": 16, "patch_embeds_hidden_size": 8, "hidden_size": 16,
        "depths": [1, 1], "num_attention_heads": [1, 2], "window_size": 4,
        "projection_dim": PROJECTION_DIM,
    }
    text_encoder = ClapModel(ClapConfig(text_config=text, audio_config=audio,
                                        projection_dim=PROJECTION_DIM))
    vae = AutoencoderKL(
        in_channels=1, out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 16, 32), latent_channels=LATENT_SHAPE[0], layers_per_block=1,
        norm_num_groups=8, sample_size=data.FRAMES, scaling_factor=1.0,
        mid_block_add_attention=False,
    )
    unet = UNet2DConditionModel(
        sample_size=LATENT_SHAPE[1:], in_channels=LATENT_SHAPE[0], out_channels=LATENT_SHAPE[0],
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
        block_out_channels=tuple(unet_channels), layers_per_block=1, norm_num_groups=8,
        cross_attention_dim=unet_channels[-1], attention_head_dim=8,
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=PROJECTION_DIM,
        class_embeddings_concat=True,
    )
    vocoder = build_vocoder(SAMPLE_RATE, N_MELS, HOP_LENGTH)
    scheduler = DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195,
        beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
        prediction_type=prediction_type,
    )
    return {"text_encoder": text_encoder, "vae": vae, "unet": unet, "vocoder": vocoder,
            "scheduler": scheduler}
