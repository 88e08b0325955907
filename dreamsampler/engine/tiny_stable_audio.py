"""Miniature random-weight Stable Audio pipelines of the real classes, built offline in code.

``tiny:stable-audio`` has the components of ``StableAudioPipeline`` (Stable Audio Open 1.0):
``T5Tokenizer`` + ``T5EncoderModel``, ``StableAudioProjectionModel``, ``StableAudioDiTModel``
(as :class:`~dreamsampler.engine.stable_audio.StableAudioDiT`, which adds diffusers' LoRA
methods), ``AutoencoderOobleck`` and ``CosineDPMSolverMultistepScheduler``. ``tiny:sa3`` has those
of ``StableAudio3Pipeline``: ``GemmaTokenizer`` + ``T5GemmaEncoderModel``,
``StableAudio3DurationEmbedder``, ``StableAudio3DiTModel`` (as
:class:`~dreamsampler.engine.stable_audio.StableAudio3DiT`), ``AutoencoderSAME`` and
``FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, stochastic_sampling=True)``.

Widths are tiny, but the audio side keeps the real rates: 44.1 kHz stereo, 2048 samples per
Oobleck latent frame, 4096 per SAME latent frame. Like the full t5-base (32,100 tokens, 32,128
rows), the tiny T5's embedding table has never-used spare rows beyond its vocabulary.
"""

from __future__ import annotations

import string

import torch
from diffusers import (
    AutoencoderOobleck,
    AutoencoderSAME,
    CosineDPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
)
from diffusers.pipelines.stable_audio.modeling_stable_audio import StableAudioProjectionModel
from diffusers.pipelines.stable_audio_3.modeling_stable_audio_3 import StableAudio3DurationEmbedder
from transformers import (
    GemmaTokenizer,
    T5Config,
    T5EncoderModel,
    T5GemmaConfig,
    T5GemmaEncoderModel,
    T5GemmaModuleConfig,
    T5Tokenizer,
)

SAMPLE_RATE = 44100  # Hz, as Stable Audio
TEXT_DIM = 16  # t5-base and T5Gemma-b use 768
MAX_TOKENS = 32  # Open 1.0 uses 128, SA3 256
T5_SPARE_ROWS = 4  # t5-base has 28 rows beyond its 32,100 tokens
#: latent frames of the tiny Open 1.0 DiT's window (``sample_size``): 64 × 2048 / 44100 ≈ 2.97 s
OPEN_WINDOW_FRAMES = 64

_CHARS = string.ascii_lowercase + string.digits + ".,'-!?"


def tiny_t5_tokenizer() -> T5Tokenizer:
    """A Unigram T5 tokenizer over single characters (with and without the ``▁`` word mark)."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in _CHARS] + [("▁" + c, -3.5) for c in _CHARS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=MAX_TOKENS)


def tiny_gemma_tokenizer() -> GemmaTokenizer:
    """A Gemma (BPE, no merges) tokenizer over single characters, padding on the right."""
    vocab: dict[str, int] = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, "▁": 5}
    for c in _CHARS:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault("▁" + c, len(vocab))
    return GemmaTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS,
                          padding_side="right")


def _unzero(module: torch.nn.Module, std: float = 0.2) -> None:
    """Give random weights to what SA3 initialises to zero or near it (attention/feed-forward
    output projections, residual convs, SAME's 1e-5 resampling tokens): otherwise a random
    model's output hardly depends on its input, and a test could not see a broken path."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("new_tokens"):
                torch.nn.init.normal_(param, std=0.5)
            elif param.ndim >= 2 and not param.any():
                torch.nn.init.normal_(param, std=std)


def _unit_latents(vae: AutoencoderOobleck) -> None:
    """Scale the encoder's output layer so the latent means of loud noise have unit standard
    deviation, as a trained Oobleck's have (a random one gives ~0.09: diffusion on such small
    latents learns little in a few toy steps)."""
    noise = 0.3 * torch.randn(1, 2, 8 * vae.hop_length)
    with torch.no_grad():
        std = float(vae.encode(noise).latent_dist.mode().std())
        vae.encoder.conv2.weight_g /= std
        vae.encoder.conv2.bias /= std


def _open_components() -> dict[str, object]:
    tokenizer = tiny_t5_tokenizer()
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer) + T5_SPARE_ROWS, d_model=TEXT_DIM, d_kv=8, d_ff=32,
        num_layers=1, num_heads=2, relative_attention_num_buckets=8,
    ))
    projection_model = StableAudioProjectionModel(
        text_encoder_dim=TEXT_DIM, conditioning_dim=TEXT_DIM, min_value=0, max_value=512)
    from dreamsampler.engine.stable_audio import StableAudioDiT

    transformer = StableAudioDiT(
        sample_size=OPEN_WINDOW_FRAMES, in_channels=8, num_layers=1, attention_head_dim=8,
        num_attention_heads=2, num_key_value_attention_heads=1, out_channels=8,
        cross_attention_dim=16, time_proj_dim=16, global_states_input_dim=2 * TEXT_DIM,
        cross_attention_input_dim=TEXT_DIM,
    )
    vae = AutoencoderOobleck(
        encoder_hidden_size=16, downsampling_ratios=[2, 4, 4, 8, 8],
        channel_multiples=[1, 1, 1, 1, 1], decoder_channels=4, decoder_input_channels=8,
        audio_channels=2, sampling_rate=SAMPLE_RATE,
    )
    _unit_latents(vae)
    scheduler = CosineDPMSolverMultistepScheduler(
        sigma_min=0.3, sigma_max=500, sigma_data=1.0, sigma_schedule="exponential",
        solver_order=2, prediction_type="v_prediction", rho=7.0, final_sigmas_type="zero",
    )
    return {"tokenizer": tokenizer, "text_encoder": text_encoder,
            "projection_model": projection_model, "transformer": transformer, "vae": vae,
            "scheduler": scheduler}


def _sa3_components() -> dict[str, object]:
    tokenizer = tiny_gemma_tokenizer()
    module = T5GemmaModuleConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_DIM, intermediate_size=32,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
    ).to_dict()
    text_encoder = T5GemmaEncoderModel(T5GemmaConfig(
        encoder=module, decoder=module, vocab_size=len(tokenizer), is_encoder_decoder=False))
    duration_embedder = StableAudio3DurationEmbedder(output_dim=TEXT_DIM, fourier_dim=16)
    from dreamsampler.engine.stable_audio import StableAudio3DiT

    latent_dim = 8
    transformer = StableAudio3DiT(
        io_channels=latent_dim, embed_dim=16, depth=1, num_heads=2, cond_token_dim=TEXT_DIM,
        global_cond_dim=TEXT_DIM, local_add_cond_dim=latent_dim + 1, timestep_features_dim=16,
        ff_mult=2.0, num_memory_tokens=2,
    )
    vae = AutoencoderSAME(
        audio_channels=2, patch_size=256, encoder_channels=8, encoder_c_mults=(1,),
        encoder_strides=(16,), encoder_transformer_depths=(1,), latent_dim=latent_dim,
        dim_heads=8, ff_mult=2, sampling_rate=SAMPLE_RATE,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, stochastic_sampling=True)
    for module in (transformer, vae):
        _unzero(module)
    return {"tokenizer": tokenizer, "text_encoder": text_encoder,
            "duration_embedder": duration_embedder, "transformer": transformer, "vae": vae,
            "scheduler": scheduler}


def build_components(family: str) -> dict[str, object]:
    """The tiny components of ``family`` (``stable-audio`` or ``sa3``), seeded by the caller.

    Raises:
        KeyError: unknown family.
    """
    return {"stable-audio": _open_components, "sa3": _sa3_components}[family]()
