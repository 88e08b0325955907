"""CLAP audio/text embeddings through transformers' ``ClapModel``.

Two sources of weights:

* a Hugging Face model directory or repo id (``ClapModel.from_pretrained`` plus the
  directory's tokenizer and ``ClapFeatureExtractor``), e.g. a converted ``laion/clap-htsat-*``;
* an original LAION-CLAP training checkpoint (``*.pt``, e.g.
  ``music_audioset_epoch_15_esc_90.14.pt``: HTSAT-base audio encoder + RoBERTa-base text
  encoder), whose state dict is renamed to transformers' keys by :func:`laion_to_hf_state_dict`.

Audio is embedded from log-mel features computed exactly as LAION-CLAP computes them
(:func:`laion_log_mel`), so that numbers agree with papers that used the LAION code. The
``laion-clap`` package itself is not used (it needs numpy<2 and the hub at import time).

References:
    - Wu*, Chen*, et al., "Large-scale Contrastive Language-Audio Pretraining with Feature
      Fusion and Keyword-to-Caption Augmentation", ICASSP 2023 (arXiv:2211.06687).
    - Chen et al., "HTS-AT: A Hierarchical Token-Semantic Audio Transformer", ICASSP 2022
      (arXiv:2202.00874).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import librosa
import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from transformers import (
    AutoTokenizer,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    PreTrainedTokenizerBase,
)

from dreamsampler.eval.audio import resample, to_mono

__all__ = [
    "LAION_MEL",
    "ClapCheckpointError",
    "ClapEmbedder",
    "LaionMelParams",
    "infer_laion_config",
    "laion_log_mel",
    "laion_to_hf_state_dict",
    "laion_waveform",
    "load_clap",
    "load_laion_checkpoint",
]


# --------------------------------------------------------------------------------------------
# LAION front end
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaionMelParams:
    """LAION-CLAP's audio front end (``audio_cfg`` of its HTSAT model configs).

    Attributes:
        sample_rate: Hz.
        n_fft: STFT size and window length, samples (periodic Hann, centred, reflect padding).
        hop_length: samples.
        n_mels: mel bands (librosa Slaney mel scale and area normalisation).
        fmin: lowest mel edge, Hz.
        fmax: highest mel edge, Hz.
        max_samples: model input length, samples (10 s at 48 kHz).
    """

    sample_rate: int = 48000
    n_fft: int = 1024
    hop_length: int = 480
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0
    max_samples: int = 480000

    @property
    def frames(self) -> int:
        """Mel frames per model input (1001 for the defaults)."""
        return self.max_samples // self.hop_length + 1

    @classmethod
    def from_feature_extractor(cls, fe: ClapFeatureExtractor) -> LaionMelParams:
        """The same front end described by a transformers ``ClapFeatureExtractor``."""
        return cls(
            sample_rate=int(fe.sampling_rate),
            n_fft=int(fe.fft_window_size),
            hop_length=int(fe.hop_length),
            n_mels=int(fe.feature_size),
            fmin=float(fe.frequency_min),
            fmax=float(fe.frequency_max),
            max_samples=int(fe.nb_max_samples),
        )


#: The front end of every public LAION-CLAP HTSAT checkpoint.
LAION_MEL = LaionMelParams()


def laion_waveform(
    audio: ArrayLike,
    params: LaionMelParams = LAION_MEL,
    rng: np.random.Generator | None = None,
    quantize: bool = True,
) -> NDArray[np.float32]:
    """Fit a 48 kHz clip to the model input the way LAION-CLAP does for unfused models.

    * ``quantize``: round-trip through int16 (``clip(x, -1, 1) * 32767`` → int16 → ``/ 32767``),
      as LAION's ``get_audio_embedding_from_data`` does before feature extraction;
    * longer than ``max_samples``: ``rand_trunc``, a random contiguous crop;
    * shorter: ``repeatpad``, tile ``floor(max / len)`` times, then zero-pad.

    Args:
        audio: mono clip at ``params.sample_rate``, shape ``(samples,)``.
        params: front-end parameters.
        rng: crop position generator (default: ``np.random.default_rng(0)``, deterministic).
        quantize: apply the int16 round-trip.

    Returns:
        Shape ``(params.max_samples,)``, float32.

    Raises:
        ValueError: not 1-D or empty.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"expected a non-empty mono clip of shape (samples,); got {x.shape}")
    if quantize:
        x = (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16).astype(np.float64) / 32767.0
    n = params.max_samples
    if x.size > n:
        gen = rng if rng is not None else np.random.default_rng(0)
        start = int(gen.integers(0, x.size - n + 1))
        x = x[start : start + n]
    elif x.size < n:
        x = np.tile(x, n // x.size)
        x = np.pad(x, (0, n - x.size))
    return x.astype(np.float32)


def laion_log_mel(waveform: ArrayLike, params: LaionMelParams = LAION_MEL) -> NDArray[np.float32]:
    """LAION-CLAP's log-mel spectrogram (torchlibrosa ``Spectrogram`` + ``LogmelFilterBank``).

    Power STFT (periodic Hann of ``n_fft`` samples, hop ``hop_length``, centred with reflect
    padding), librosa Slaney mel filters between ``fmin`` and ``fmax``, then
    ``10 log10(max(mel, 1e-10))`` (ref 1.0, no top-dB clipping).

    transformers' ``ClapFeatureExtractor`` computes the same values only when built with
    ``frequency_min=50`` (its default is 0 Hz, which changes the lowest bands by up to ~17 dB)
    and it skips LAION's int16 round-trip (see :func:`laion_waveform`).

    Args:
        waveform: shape ``(samples,)`` at ``params.sample_rate``; normally the output of
            :func:`laion_waveform`.
        params: front-end parameters.

    Returns:
        Log-mel in dB, shape ``(frames, n_mels)`` (``(1001, 64)`` for a 10 s input), float32.
    """
    y = np.asarray(waveform, dtype=np.float64)
    spec = (
        np.abs(
            librosa.stft(
                y,
                n_fft=params.n_fft,
                hop_length=params.hop_length,
                win_length=params.n_fft,
                window="hann",
                center=True,
                pad_mode="reflect",
            )
        )
        ** 2
    )
    mel_fb = librosa.filters.mel(
        sr=params.sample_rate,
        n_fft=params.n_fft,
        n_mels=params.n_mels,
        fmin=params.fmin,
        fmax=params.fmax,
    )
    mel = mel_fb @ spec
    return (10.0 * np.log10(np.maximum(mel, 1e-10))).T.astype(np.float32)


# --------------------------------------------------------------------------------------------
# LAION checkpoint → transformers
# --------------------------------------------------------------------------------------------

_EXPECTED_ARCH = (
    "a LAION-CLAP checkpoint with an HTSAT (Swin) audio encoder and a RoBERTa text encoder "
    "(e.g. HTSAT-base + roberta-base: music_audioset_epoch_15_esc_90.14.pt)"
)

# LAION modules that have no counterpart in ClapModel (front end, classification head,
# unused MLP "transform" heads, precomputed attention masks).
_IGNORED = (
    re.compile(r"^audio_branch\.(spectrogram_extractor|logmel_extractor)\."),
    re.compile(r"^audio_branch\.(tscam_conv|head)\."),
    re.compile(r"^(text|audio)_transform\."),
    re.compile(r"^audio_branch\.layers\.\d+\.blocks\.\d+\.attn_mask$"),
    re.compile(r"^text_branch\.embeddings\.position_ids$"),
)

# Buffers ClapModel derives itself; a checkpoint need not provide them.
_DERIVED = (
    re.compile(r"^text_model\.embeddings\.(position_ids|token_type_ids)$"),
    re.compile(r"\.relative_position_index$"),
)

_BLOCK_RENAMES = (
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
    ("attn.proj.", "attention.output.dense."),
    ("attn.relative_position_bias_table", "attention.self.relative_position_bias_table"),
    ("attn.relative_position_index", "attention.self.relative_position_index"),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
)

_BLOCK_RE = re.compile(r"^(layers\.\d+\.blocks\.\d+\.)(.+)$")
_PROJ_RE = re.compile(r"^(text|audio)_projection\.(\d+)\.(weight|bias)$")


class ClapCheckpointError(ValueError):
    """A checkpoint does not fit the expected CLAP architecture."""


def _strip_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _rename_audio(rest: str) -> str | None:
    """Rename a key below ``audio_branch.``; None when it is not a known HTSAT parameter."""
    if rest.startswith("bn0."):
        return "batch_norm." + rest[len("bn0.") :]
    if rest.startswith(("patch_embed.", "norm.")) or re.match(r"^layers\.\d+\.downsample\.", rest):
        return rest
    m = _BLOCK_RE.match(rest)
    if m is None:
        return None
    prefix, tail = m.groups()
    for old, new in _BLOCK_RENAMES:
        if tail.startswith(old):
            return prefix + new + tail[len(old) :]
    if tail in ("attn.qkv.weight", "attn.qkv.bias"):
        return prefix + tail  # split by the caller
    return None


def laion_to_hf_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Rename a LAION-CLAP (HTSAT + RoBERTa) state dict to ``ClapModel`` keys.

    Rules (after transformers' ``convert_clap_original_pytorch_to_hf.py``):

    * a leading ``module.`` (DDP) is dropped;
    * ``text_branch.*`` → ``text_model.*`` (same RoBERTa names);
    * ``audio_branch.*`` → ``audio_model.audio_encoder.*`` with ``bn0`` → ``batch_norm`` and,
      inside ``layers.i.blocks.j``: ``norm1/norm2`` → ``layernorm_before/after``,
      ``attn.qkv`` → split in thirds into ``attention.self.{query,key,value}``,
      ``attn.proj`` → ``attention.output.dense``, ``attn.relative_position_*`` →
      ``attention.self.relative_position_*``, ``mlp.fc1/fc2`` → ``intermediate.dense`` /
      ``output.dense``;
    * ``{text,audio}_projection.0/.2`` (``nn.Sequential``) → ``linear1/linear2``;
    * ``logit_scale_a``/``logit_scale_t`` unchanged;
    * ignored: the torchlibrosa front end, ``tscam_conv``/``head`` (AudioSet classifier),
      ``text_transform``/``audio_transform``, ``attn_mask`` buffers, ``position_ids``.

    Args:
        state_dict: LAION state dict (the checkpoint's ``"state_dict"`` entry).

    Returns:
        ``(mapped, ignored, unknown)``: the renamed tensors, the LAION keys deliberately
        dropped, and LAION keys no rule knows (an architecture mismatch when non-empty).
    """
    mapped: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    unknown: list[str] = []
    for key, value in _strip_prefix(state_dict).items():
        if any(p.search(key) for p in _IGNORED):
            ignored.append(key)
            continue
        new: str | None
        if key.startswith("text_branch."):
            new = "text_model." + key[len("text_branch.") :]
        elif key.startswith("audio_branch."):
            rest = _rename_audio(key[len("audio_branch.") :])
            new = None if rest is None else "audio_model.audio_encoder." + rest
        elif key in ("logit_scale_a", "logit_scale_t"):
            new = key
        elif (m := _PROJ_RE.match(key)) is not None and m.group(2) in ("0", "2"):
            which, index, kind = m.groups()
            new = f"{which}_projection.linear{1 if index == '0' else 2}.{kind}"
        else:
            new = None
        if new is None:
            unknown.append(key)
            continue
        if ".attn.qkv." in new:
            base, kind = new.rsplit(".attn.qkv.", 1)
            if value.shape[0] % 3:
                unknown.append(key)
                continue
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                mapped[f"{base}.attention.self.{name}.{kind}"] = part.clone()
        else:
            mapped[new] = value
    return mapped, ignored, unknown


def _count(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.match(k))})


def infer_laion_config(
    state_dict: Mapping[str, torch.Tensor],
    source: str = "checkpoint",
    spec_size: int = 256,
    text_num_attention_heads: int | None = None,
) -> ClapConfig:
    """Build the ``ClapConfig`` that a LAION-CLAP state dict describes.

    Sizes are read from tensor shapes: HTSAT embed dim, depths, heads per stage (from the
    relative-position tables), window size, mel bins, MLP ratio, fusion; RoBERTa hidden size,
    layers, intermediate size, vocabulary and positions; projection dim. Not recoverable from
    shapes and taken from LAION's configs: ``spec_size`` 256, patch stride = patch size, RoBERTa
    heads = hidden / 64, layer-norm eps 1e-5, ReLU projection activation.

    Args:
        state_dict: LAION state dict (``module.`` prefix allowed).
        source: name used in error messages (the file).
        spec_size: HTSAT input image size.
        text_num_attention_heads: override the RoBERTa head count.

    Returns:
        A ``ClapConfig``.

    Raises:
        ClapCheckpointError: the audio branch is not HTSAT or the text branch is not RoBERTa.
    """
    sd = _strip_prefix(state_dict)
    if "audio_branch.patch_embed.proj.weight" not in sd:
        sample = sorted(k for k in sd if k.startswith("audio_branch."))[:3]
        raise ClapCheckpointError(
            f"{source}: audio branch is not HTSAT (no audio_branch.patch_embed.proj.weight; "
            f"found e.g. {sample}); expected {_EXPECTED_ARCH}. PANN (CNN14) LAION models are "
            "not supported by transformers' ClapModel."
        )
    if "text_branch.embeddings.word_embeddings.weight" not in sd or not any(
        k.startswith("text_branch.encoder.layer.") for k in sd
    ):
        sample = sorted(k for k in sd if k.startswith("text_branch."))[:3]
        raise ClapCheckpointError(
            f"{source}: text branch is not RoBERTa (found e.g. {sample}); expected {_EXPECTED_ARCH}"
        )
    proj = sd["audio_branch.patch_embed.proj.weight"]
    embed_dim, in_chans, patch = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[2])
    n_stages = _count(sd, r"^audio_branch\.layers\.(\d+)\.")
    depths = [_count(sd, rf"^audio_branch\.layers\.{i}\.blocks\.(\d+)\.") for i in range(n_stages)]
    heads = [
        int(sd[f"audio_branch.layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1])
        for i in range(n_stages)
    ]
    table = int(sd["audio_branch.layers.0.blocks.0.attn.relative_position_bias_table"].shape[0])
    window = (math.isqrt(table) + 1) // 2
    fc1 = sd["audio_branch.layers.0.blocks.0.mlp.fc1.weight"]
    audio_cfg: dict[str, Any] = {
        "patch_embeds_hidden_size": embed_dim,
        "patch_embed_input_channels": in_chans,
        "patch_size": patch,
        "patch_stride": (patch, patch),
        "depths": depths,
        "num_attention_heads": heads,
        "window_size": window,
        "spec_size": spec_size,
        "num_mel_bins": int(sd["audio_branch.bn0.weight"].shape[0]),
        "hidden_size": embed_dim * 2 ** (n_stages - 1),
        "mlp_ratio": float(fc1.shape[0]) / embed_dim,
        "qkv_bias": "audio_branch.layers.0.blocks.0.attn.qkv.bias" in sd,
        "enable_patch_layer_norm": "audio_branch.patch_embed.norm.weight" in sd,
        "enable_fusion": any(".fusion_model." in k for k in sd),
        "num_hidden_layers": n_stages,
    }
    if audio_cfg["enable_fusion"]:
        audio_cfg["fusion_type"] = "aff_2d"
    words = sd["text_branch.embeddings.word_embeddings.weight"]
    hidden = int(words.shape[1])
    text_cfg: dict[str, Any] = {
        "vocab_size": int(words.shape[0]),
        "hidden_size": hidden,
        "num_hidden_layers": _count(sd, r"^text_branch\.encoder\.layer\.(\d+)\."),
        "num_attention_heads": text_num_attention_heads or max(1, hidden // 64),
        "intermediate_size": int(
            sd["text_branch.encoder.layer.0.intermediate.dense.weight"].shape[0]
        ),
        "max_position_embeddings": int(
            sd["text_branch.embeddings.position_embeddings.weight"].shape[0]
        ),
        "type_vocab_size": int(sd["text_branch.embeddings.token_type_embeddings.weight"].shape[0]),
        "layer_norm_eps": 1e-5,
    }
    projection_dim = (
        int(sd["text_projection.0.weight"].shape[0]) if "text_projection.0.weight" in sd else 512
    )
    return ClapConfig(text_config=text_cfg, audio_config=audio_cfg, projection_dim=projection_dim)


def _describe(config: ClapConfig) -> str:
    a: Any = config.audio_config
    t: Any = config.text_config
    return (
        f"HTSAT(embed_dim={a.patch_embeds_hidden_size}, depths={list(a.depths)}, "
        f"heads={list(a.num_attention_heads)}, window={a.window_size}, mels={a.num_mel_bins}, "
        f"fusion={a.enable_fusion}) + RoBERTa(hidden={t.hidden_size}, "
        f"layers={t.num_hidden_layers}, vocab={t.vocab_size}), "
        f"projection_dim={config.projection_dim}"
    )


def _read_checkpoint(path: Path, weights_only: bool) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=weights_only)
    except FileNotFoundError:
        raise
    except Exception as exc:
        hint = " (if you trust the file, retry with weights_only=False)" if weights_only else ""
        raise ClapCheckpointError(f"{path}: cannot read checkpoint: {exc}{hint}") from exc
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ClapCheckpointError(
            f"{path}: no state dict of tensors found (expected a dict, optionally under "
            f"'state_dict'); expected {_EXPECTED_ARCH}"
        )
    return state


def load_laion_checkpoint(
    path: str | Path,
    config: ClapConfig | None = None,
    weights_only: bool = True,
) -> ClapModel:
    """Load an original LAION-CLAP ``.pt`` checkpoint into a transformers ``ClapModel``.

    Args:
        path: checkpoint file (a dict with ``"state_dict"`` or a bare state dict).
        config: expected architecture; default inferred by :func:`infer_laion_config`.
        weights_only: passed to ``torch.load`` (keep ``True`` for untrusted files).

    Returns:
        ``ClapModel`` in eval mode with every parameter taken from the checkpoint.

    Raises:
        FileNotFoundError: no such file.
        ClapCheckpointError: unreadable file, a branch of another architecture, keys no rule
            knows, keys missing for the expected architecture, or shape mismatches; the message
            names the file and the expected architecture.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such checkpoint file")
    raw = _read_checkpoint(p, weights_only)
    cfg = config if config is not None else infer_laion_config(raw, source=str(p))
    mapped, _ignored, unknown = laion_to_hf_state_dict(raw)
    model = ClapModel(cfg).eval()
    target = model.state_dict()
    missing = [k for k in target if k not in mapped and not any(r.search(k) for r in _DERIVED)]
    unexpected = [k for k in mapped if k not in target]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in mapped.items()
        if k in target and v.shape != target[k].shape
    ]
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown LAION keys, e.g. {unknown[:4]}")
    if unexpected:
        problems.append(f"{len(unexpected)} keys not in the model, e.g. {unexpected[:4]}")
    if missing:
        problems.append(f"{len(missing)} model keys missing from the file, e.g. {missing[:4]}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches, e.g. {shapes[:3]}")
    if problems:
        raise ClapCheckpointError(
            f"{p}: does not match the expected architecture {_describe(cfg)} "
            f"({_EXPECTED_ARCH}): " + "; ".join(problems)
        )
    model.load_state_dict(mapped, strict=False)
    return model


# --------------------------------------------------------------------------------------------
# Embedder
# --------------------------------------------------------------------------------------------


def _features(out: Any) -> torch.Tensor:
    """Accept both transformers 4 (tensor) and 5 (output object) feature returns."""
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(out, tuple) and len(out) > 1 and isinstance(out[1], torch.Tensor):
        return out[1]
    raise TypeError(f"unexpected CLAP feature output of type {type(out).__name__}")


class ClapEmbedder:
    """L2-normalised CLAP embeddings of audio clips and texts.

    Args:
        model: a ``ClapModel``.
        tokenizer: the text tokenizer (RoBERTa for LAION models), or ``None`` for audio only.
        feature_extractor: the model's ``ClapFeatureExtractor``; used for fused models and for
            ``mel="hf"``; its parameters also define the LAION front end (default: LAION's).
        mel: ``"laion"`` (default): :func:`laion_waveform` + :func:`laion_log_mel`, matching
            LAION-CLAP's numbers; ``"hf"``: transformers' feature extractor. Fused models always
            use the feature extractor with ``truncation="fusion"``.
        quantize: LAION's int16 round-trip of the input (``mel="laion"`` only).
        device: torch device for the model.
        batch_size: clips/texts per forward pass.
        seed: seed of the random crop for clips longer than 10 s (per ``embed_audio`` call).
        max_text_length: tokens per text (LAION pads/truncates to 77).
    """

    def __init__(
        self,
        model: ClapModel,
        tokenizer: PreTrainedTokenizerBase | None = None,
        feature_extractor: ClapFeatureExtractor | None = None,
        mel: Literal["laion", "hf"] = "laion",
        quantize: bool = True,
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        seed: int = 0,
        max_text_length: int = 77,
    ) -> None:
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor or ClapFeatureExtractor(
            frequency_min=LAION_MEL.fmin, frequency_max=LAION_MEL.fmax, truncation="rand_trunc"
        )
        self.mel = mel
        self.quantize = quantize
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.seed = seed
        self.max_text_length = max_text_length
        self.params = LaionMelParams.from_feature_extractor(self.feature_extractor)

    @property
    def sample_rate(self) -> int:
        """Model input rate in Hz (48000 for LAION models)."""
        return self.params.sample_rate

    @property
    def dim(self) -> int:
        """Embedding dimension (``projection_dim``)."""
        return int(self.model.config.projection_dim)

    @property
    def fused(self) -> bool:
        """Whether the audio encoder uses feature fusion."""
        return bool(self.model.config.audio_config.enable_fusion)

    def _audio_inputs(
        self, clips: Sequence[NDArray[np.float64]], rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        if self.fused or self.mel == "hf":
            truncation = "fusion" if self.fused else "rand_trunc"
            feats = self.feature_extractor(
                [c.astype(np.float32) for c in clips],
                sampling_rate=self.sample_rate,
                truncation=truncation,
                padding="repeatpad",
                return_tensors="pt",
            )
            return {"input_features": feats["input_features"], "is_longer": feats["is_longer"]}
        mels = [
            laion_log_mel(laion_waveform(c, self.params, rng, self.quantize), self.params)
            for c in clips
        ]
        x = torch.from_numpy(np.stack(mels))[:, None]  # (batch, 1, frames, n_mels)
        return {"input_features": x, "is_longer": torch.zeros(len(clips), 1, dtype=torch.bool)}

    @torch.no_grad()
    def embed_audio(self, clips: Sequence[ArrayLike], sr: int) -> NDArray[np.float32]:
        """Embed audio clips.

        Args:
            clips: clips of shape ``(samples,)`` (or ``(channels, samples)``, averaged to mono),
                at ``sr``; resampled with soxr to 48 kHz.
            sr: sample rate of the clips in Hz.

        Returns:
            Shape ``(n, dim)``, float32, rows of unit L2 norm.

        Raises:
            ValueError: no clips; AudioError: a clip with bad layout or non-finite samples.
        """
        if len(clips) == 0:
            raise ValueError("no clips to embed")
        mono = [to_mono(c, f"clip {i}") for i, c in enumerate(clips)]
        mono = [resample(m, sr, self.sample_rate) for m in mono]
        rng = np.random.default_rng(self.seed)
        out = []
        for i in range(0, len(mono), self.batch_size):
            inputs = self._audio_inputs(mono[i : i + self.batch_size], rng)
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            feats = _features(self.model.get_audio_features(**inputs))
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out).numpy()

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed texts.

        Args:
            texts: prompts; each is padded/truncated to ``max_text_length`` tokens.

        Returns:
            Shape ``(n, dim)``, float32, rows of unit L2 norm.

        Raises:
            ValueError: no texts; RuntimeError: the embedder has no tokenizer.
        """
        if self.tokenizer is None:
            raise RuntimeError(
                "this CLAP embedder has no tokenizer: pass tokenizer= to load_clap "
                "(a RoBERTa tokenizer directory such as a local copy of roberta-base)"
            )
        if len(texts) == 0:
            raise ValueError("no texts to embed")
        out = []
        for i in range(0, len(texts), self.batch_size):
            tok = self.tokenizer(
                list(texts[i : i + self.batch_size]),
                padding="max_length",
                truncation=True,
                max_length=self.max_text_length,
                return_tensors="pt",
            )
            feats = _features(
                self.model.get_text_features(
                    input_ids=tok["input_ids"].to(self.device),
                    attention_mask=tok["attention_mask"].to(self.device),
                )
            )
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out).numpy()

    def save_pretrained(self, out_dir: str | Path) -> Path:
        """Save model, tokenizer and feature extractor as a transformers directory.

        A LAION checkpoint converted once can then be loaded with ``load_clap(out_dir)``.
        """
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(d)
        self.feature_extractor.save_pretrained(d)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(d)
        return d


_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


def _resolve_tokenizer(
    tokenizer: str | Path | PreTrainedTokenizerBase | None, local_files_only: bool
) -> PreTrainedTokenizerBase | None:
    if tokenizer is None or isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    return AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=local_files_only)


def load_clap(
    path_or_repo: str | Path,
    tokenizer: str | Path | PreTrainedTokenizerBase | None = None,
    device: str | torch.device = "cpu",
    mel: Literal["laion", "hf"] = "laion",
    local_files_only: bool = True,
    weights_only: bool = True,
    **embedder_kwargs: Any,
) -> ClapEmbedder:
    """Load a CLAP model as a :class:`ClapEmbedder`.

    Args:
        path_or_repo: a transformers model directory or repo id (``ClapModel.from_pretrained``
            with its tokenizer and feature extractor), or a LAION-CLAP checkpoint file
            (``.pt``/``.pth``/``.ckpt``/``.bin``) converted with :func:`load_laion_checkpoint`.
        tokenizer: tokenizer object or directory/repo; default: the model directory's own, or
            for a LAION file a locally cached ``roberta-base`` if there is one (else audio only).
        device: torch device.
        mel: front end, see :class:`ClapEmbedder`.
        local_files_only: never contact the hub (the default).
        weights_only: ``torch.load`` safety flag for LAION files.
        **embedder_kwargs: further :class:`ClapEmbedder` arguments.

    Returns:
        A :class:`ClapEmbedder`.

    Raises:
        FileNotFoundError / OSError: no such file, directory or cached repo.
        ClapCheckpointError: a LAION file that does not fit (see :func:`load_laion_checkpoint`).
    """
    p = Path(path_or_repo)
    if p.suffix.lower() in _CHECKPOINT_SUFFIXES or p.is_file():
        model = load_laion_checkpoint(p, weights_only=weights_only)
        tok = _resolve_tokenizer(tokenizer, local_files_only)
        if tok is None:
            try:
                tok = AutoTokenizer.from_pretrained("roberta-base", local_files_only=True)
            except OSError:
                tok = None
        return ClapEmbedder(model, tok, None, mel=mel, device=device, **embedder_kwargs)
    model = ClapModel.from_pretrained(str(path_or_repo), local_files_only=local_files_only)
    tok = _resolve_tokenizer(tokenizer, local_files_only)
    if tok is None:
        try:
            tok = AutoTokenizer.from_pretrained(
                str(path_or_repo), local_files_only=local_files_only
            )
        except (OSError, ValueError):
            tok = None
    try:
        fe = ClapFeatureExtractor.from_pretrained(
            str(path_or_repo), local_files_only=local_files_only
        )
    except OSError:
        fe = None
    return ClapEmbedder(model, tok, fe, mel=mel, device=device, **embedder_kwargs)
