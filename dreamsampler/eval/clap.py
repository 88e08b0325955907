"""CLAP audio/text embeddings through transformers' ``ClapModel``.

Two sources of weights:

* a Hugging Face model directory or repo id (``ClapModel.from_pretrained`` plus the
  directory's tokenizer and ``ClapFeatureExtractor``), e.g. a converted ``laion/clap-htsat-*``;
* an original LAION-CLAP training checkpoint (``*.pt``, e.g.
  ``music_audioset_epoch_15_esc_90.14.pt``), converted by
  :mod:`dreamsampler.eval.clap_convert`.

Audio is embedded from log-mel features computed exactly as LAION-CLAP computes them
(:mod:`dreamsampler.eval.clap_frontend`), so that numbers agree with papers that used the LAION
code. This module keeps the public API of all three: the front end and the conversion are
re-exported here.

References:
    - Wu*, Chen*, et al., "Large-scale Contrastive Language-Audio Pretraining with Feature
      Fusion and Keyword-to-Caption Augmentation", ICASSP 2023 (arXiv:2211.06687).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from transformers import (
    AutoTokenizer,
    ClapFeatureExtractor,
    ClapModel,
    PreTrainedTokenizerBase,
)

from dreamsampler.eval.audio import resample, to_mono
from dreamsampler.eval.clap_convert import (
    ClapCheckpointError,
    infer_laion_config,
    laion_to_hf_state_dict,
    load_laion_checkpoint,
)
from dreamsampler.eval.clap_frontend import (
    LAION_MEL,
    LaionMelParams,
    laion_log_mel,
    laion_waveform,
)

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
