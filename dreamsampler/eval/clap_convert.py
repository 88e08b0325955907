"""Original LAION-CLAP training checkpoints (``*.pt``) → transformers' ``ClapModel``.

A LAION checkpoint (e.g. ``music_audioset_epoch_15_esc_90.14.pt``: HTSAT-base audio encoder +
RoBERTa-base text encoder) has its state dict renamed to transformers' keys
(:func:`laion_to_hf_state_dict`), its architecture inferred from the tensors
(:func:`infer_laion_config`), and is loaded with every parameter checked
(:func:`load_laion_checkpoint`).

References:
    - Wu*, Chen*, et al., "Large-scale Contrastive Language-Audio Pretraining with Feature
      Fusion and Keyword-to-Caption Augmentation", ICASSP 2023 (arXiv:2211.06687).
    - Chen et al., "HTS-AT: A Hierarchical Token-Semantic Audio Transformer", ICASSP 2022
      (arXiv:2202.00874).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import ClapConfig, ClapModel

__all__ = [
    "ClapCheckpointError",
    "infer_laion_config",
    "laion_to_hf_state_dict",
    "load_laion_checkpoint",
]

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
