"""Model-family adapters: what differs between diffusers audio families, and nothing else.

An adapter says how to encode text, how to go between audio and latents, and what the denoiser
needs. The sampling loop (:mod:`dreamsampler.engine.sampler`) is shared by all of them.

AudioLDM (Liu et al. 2023, arXiv 2301.12503) and MusicLDM (Chen et al. 2023, arXiv 2308.01546) share
one design: a CLAP text embedding (pooled, projected, L2-normalised) enters the UNet as
``class_labels`` (``class_embed_type="simple_projection"``, concatenated to the time embedding);
latents are a VAE encoding of a 16 kHz log-mel spectrogram; a HiFi-GAN vocoder makes the waveform.
They differ only in the text tower (``ClapTextModelWithProjection`` vs. the full ``ClapModel``).
AudioLDM2 and Stable Audio Open fit as further subclasses of :class:`ModelFamily`.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

import librosa
import numpy as np
import torch
import torch.nn.functional as F

from dreamsampler.engine.tiny import TINY_NAMES, build_tiny_components

_PROMPT_CACHE_SIZE = 256


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message names the source and the reason."""


class LogMelFrontEnd:
    """AudioLDM's log-mel front end (TacotronSTFT): magnitude STFT → mel (Slaney) → log.

    Matches AudioLDM/MusicLDM: 16 kHz, n_fft 1024, hop 160, 64 mel bands, 0–8000 Hz,
    ``log(clamp(mel, 1e-5))``. The mel filterbank comes from librosa.
    """

    def __init__(
        self, sample_rate: int, n_mels: int, hop_length: int, n_fft: int = 1024
    ) -> None:
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.n_fft = n_fft
        self.mel_basis = torch.from_numpy(
            librosa.filters.mel(
                sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sample_rate / 2
            )
        )
        self.window = torch.hann_window(n_fft)

    def __call__(self, waveform: torch.Tensor, frames: int) -> torch.Tensor:
        """Waveform ``(batch, samples)`` → log-mel ``(batch, 1, frames, n_mels)``.

        The spectrogram is cropped or padded (with the log floor) to exactly ``frames``.
        """
        pad = (self.n_fft - self.hop_length) // 2
        x = F.pad(waveform.float().unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(
            x,
            self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            center=False,
            return_complex=True,
        ).abs()
        mel = torch.log(torch.clamp(self.mel_basis @ spec, min=1e-5)).transpose(1, 2)
        if mel.shape[1] < frames:
            mel = F.pad(mel, (0, 0, 0, frames - mel.shape[1]), value=math.log(1e-5))
        return mel[:, None, :frames, :]


class ModelFamily(ABC):
    """Adapter for one diffusers model family over its loaded components.

    Attributes:
        model_id: repo id, local directory or tiny name it was loaded from.
        components: the diffusers/transformers parts by their pipeline key
            (tokenizer, text_encoder, vae, unet, vocoder, scheduler).
    """

    name: ClassVar[str]
    pipeline_class: ClassVar[str]
    component_keys: ClassVar[tuple[str, ...]]

    def __init__(
        self, model_id: str, components: dict[str, Any], device: torch.device, dtype: torch.dtype
    ) -> None:
        self.model_id = model_id
        self.components = components
        self.device = device
        self.dtype = dtype
        for module in components.values():
            if isinstance(module, torch.nn.Module):
                module.to(device=device)
                if next(module.parameters()).dtype != dtype:
                    module.to(dtype=dtype)
                module.eval()
        self._prompt_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        #: placeholder → replacement applied to every prompt before tokenizing (multi-vector
        #: textual inversion: ``<name>`` → ``<name>_0 <name>_1``); set by the concept manager.
        self.token_expansions: dict[str, str] = {}
        #: the :class:`~dreamsampler.engine.concepts.ConceptManager` that owns this model's
        #: concept state, once one is attached; ``None`` means no concepts can be activated.
        self.concepts: Any = None

    @property
    def scheduler_config(self) -> Any:
        return self.components["scheduler"].config

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Output sample rate in Hz."""

    @abstractmethod
    def _encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Uncached text conditioning for a batch of prompts."""

    @abstractmethod
    def latent_shape(self, duration: float) -> tuple[tuple[int, ...], int]:
        """``((channels, frames, bins), samples)`` for a clip of ``duration`` seconds."""

    @abstractmethod
    def denoise(
        self, latents: torch.Tensor, timestep: torch.Tensor, conditioning: torch.Tensor
    ) -> torch.Tensor:
        """Denoiser prediction for ``latents`` ``(batch, channels, frames, bins)``."""

    @abstractmethod
    def audio_to_latents(self, waveform: torch.Tensor, duration: float) -> torch.Tensor:
        """Waveform ``(batch, samples)`` at :attr:`sample_rate` → scaled latents."""

    @abstractmethod
    def latents_to_audio(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents → waveform ``(batch, samples)`` at :attr:`sample_rate`."""

    def expand_prompt(self, prompt: str) -> str:
        """The prompt with every placeholder of :attr:`token_expansions` replaced."""
        for placeholder, expansion in self.token_expansions.items():
            prompt = prompt.replace(placeholder, expansion)
        return prompt

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Uncached text conditioning ``(batch, dim)`` with placeholders expanded.

        Runs under the caller's grad mode: training (textual inversion) backpropagates through it.
        """
        return self._encode_text([self.expand_prompt(p) for p in prompts])

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Text conditioning ``(batch, dim)``, cached per prompt string.

        The cache must be cleared (:meth:`clear_prompt_cache`) whenever the tokenizer or the text
        encoder changes (a concept loaded or unloaded).
        """
        missing = [p for p in dict.fromkeys(prompts) if p not in self._prompt_cache]
        for prompt in missing:
            # one prompt per forward pass: a batched matmul can round differently from an
            # unbatched one, and the cache must not make a prompt's embedding depend on which
            # prompts happened to be encoded with it (bit-identical audio for equal requests)
            with torch.no_grad():
                self._prompt_cache[prompt] = self.encode_text([prompt])[0]
            if len(self._prompt_cache) > _PROMPT_CACHE_SIZE:
                self._prompt_cache.popitem(last=False)
        for p in prompts:
            self._prompt_cache.move_to_end(p)
        return torch.stack([self._prompt_cache[p] for p in prompts])

    def clear_prompt_cache(self) -> None:
        self._prompt_cache.clear()


class ClapLDMFamily(ModelFamily):
    """AudioLDM and MusicLDM: CLAP class-label conditioning, mel VAE, HiFi-GAN vocoder."""

    component_keys = ("tokenizer", "text_encoder", "vae", "unet", "vocoder", "scheduler")

    def __init__(
        self, model_id: str, components: dict[str, Any], device: torch.device, dtype: torch.dtype
    ) -> None:
        super().__init__(model_id, components, device, dtype)
        vae = components["vae"]
        vocoder = components["vocoder"]
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.unet_scale_factor = 2 ** (len(components["unet"].config.block_out_channels) - 1)
        self.hop_length = int(np.prod(vocoder.config.upsample_rates))
        self.n_mels = int(vocoder.config.model_in_dim)
        self.front_end = LogMelFrontEnd(self.sample_rate, self.n_mels, self.hop_length)

    @property
    def sample_rate(self) -> int:
        return int(self.components["vocoder"].config.sampling_rate)

    def _tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.components["tokenizer"](
            prompts,
            padding="max_length",
            max_length=self.components["tokenizer"].model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        return tok.input_ids.to(self.device), tok.attention_mask.to(self.device)

    def frames(self, duration: float) -> int:
        """Mel frames for ``duration`` seconds, rounded up so the VAE and UNet divide it."""
        multiple = self.vae_scale_factor * self.unet_scale_factor
        raw = math.ceil(duration * self.sample_rate / self.hop_length)
        return int(math.ceil(raw / multiple) * multiple)

    def latent_shape(self, duration: float) -> tuple[tuple[int, ...], int]:
        channels = int(self.components["vae"].config.latent_channels)
        shape = (
            channels,
            self.frames(duration) // self.vae_scale_factor,
            self.n_mels // self.vae_scale_factor,
        )
        return shape, round(duration * self.sample_rate)

    def denoise(
        self, latents: torch.Tensor, timestep: torch.Tensor, conditioning: torch.Tensor
    ) -> torch.Tensor:
        return self.components["unet"](
            latents,
            timestep,
            encoder_hidden_states=None,
            class_labels=conditioning.to(latents.dtype),
            return_dict=False,
        )[0]

    def audio_to_latents(self, waveform: torch.Tensor, duration: float) -> torch.Tensor:
        mel = self.front_end(waveform.cpu(), self.frames(duration)).to(self.device, self.dtype)
        vae = self.components["vae"]
        return vae.encode(mel).latent_dist.mode() * vae.config.scaling_factor

    def latents_to_audio(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.components["vae"]
        mel = vae.decode(latents / vae.config.scaling_factor).sample
        return self.components["vocoder"](mel.squeeze(1)).float()


class MusicLDMFamily(ClapLDMFamily):
    """MusicLDM (``ucsd-reach/musicldm``): text through the full ``ClapModel``."""

    name = "musicldm"
    pipeline_class = "MusicLDMPipeline"

    def _encode_text(self, prompts: list[str]) -> torch.Tensor:
        ids, mask = self._tokenize(prompts)
        out = self.components["text_encoder"].get_text_features(ids, attention_mask=mask)
        # transformers 5 returns an output object whose pooler_output is already L2-normalised.
        embeds = out.pooler_output if hasattr(out, "pooler_output") else out
        return F.normalize(embeds, dim=-1)


class AudioLDMFamily(ClapLDMFamily):
    """AudioLDM (``cvssp/audioldm-s-full-v2`` …): text through ``ClapTextModelWithProjection``."""

    name = "audioldm"
    pipeline_class = "AudioLDMPipeline"

    def _encode_text(self, prompts: list[str]) -> torch.Tensor:
        ids, mask = self._tokenize(prompts)
        out = self.components["text_encoder"](ids, attention_mask=mask)
        return F.normalize(out.text_embeds, dim=-1)


FAMILIES: dict[str, type[ModelFamily]] = {
    cls.pipeline_class: cls for cls in (MusicLDMFamily, AudioLDMFamily)
}


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA, then MPS, then CPU; anything else as torch names it."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def _import_class(library: str, class_name: str) -> Any:
    return getattr(importlib.import_module(library), class_name)


def _unreadable_index(model_id: str, exc: Exception) -> str:
    """Why ``model_index.json`` could not be read, in a new user's words, with the ways out."""
    from huggingface_hub import constants

    if Path(model_id).expanduser().is_dir():
        return f"{model_id}: cannot read model_index.json ({exc})"
    why = ("offline mode is on (HF_HUB_OFFLINE is set) and the model is not in the Hugging Face "
           "cache" if constants.HF_HUB_OFFLINE else f"the download from {constants.ENDPOINT} "
           "failed, or there is no such folder or repository")
    return (f"{model_id}: cannot read model_index.json: {why} ({exc}); use --model tiny (random "
            "weights, offline) or --model /path/to/folder (a local diffusers folder)")


def load_model(model_id: str, device: str = "auto", dtype: str = "float32") -> ModelFamily:
    """Load a model by Hugging Face repo id, local diffusers folder, or tiny fixture name.

    The family comes from ``model_index.json``'s ``_class_name``; each component loads with its
    class's ``from_pretrained(model_id, subfolder=key)`` (the hub cache is used when offline).

    Raises:
        ModelLoadError: unknown family, missing component, or the source cannot be read.
    """
    torch_device = resolve_device(device)
    torch_dtype = getattr(torch, dtype)
    if model_id in TINY_NAMES:
        family_name, components = build_tiny_components(model_id)
        family = next(f for f in FAMILIES.values() if f.name == family_name)
        return family(model_id, components, torch_device, torch_dtype)

    from diffusers import DiffusionPipeline

    try:
        index = DiffusionPipeline.load_config(model_id)
    except Exception as exc:
        raise ModelLoadError(_unreadable_index(model_id, exc)) from None
    class_name = index.get("_class_name", "")
    family = FAMILIES.get(class_name)
    if family is None:
        known = ", ".join(sorted(FAMILIES))
        raise ModelLoadError(
            f"{model_id}: unsupported pipeline {class_name!r} (supported: {known})"
        )
    components: dict[str, Any] = {}
    for key in family.component_keys:
        entry = index.get(key)
        if not entry or entry[0] is None:
            raise ModelLoadError(f"{model_id}: model_index.json has no component {key!r}")
        cls = _import_class(entry[0], entry[1])
        kwargs: dict[str, Any] = {"subfolder": key}
        if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
            kwargs["torch_dtype"] = torch_dtype
        try:
            source = str(Path(model_id)) if Path(model_id).is_dir() else model_id
            components[key] = cls.from_pretrained(source, **kwargs)
        except Exception as exc:
            raise ModelLoadError(f"{model_id}: cannot load {key} ({exc})") from None
    return family(model_id, components, torch_device, torch_dtype)
