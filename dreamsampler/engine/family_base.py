"""The base of every model family: what an adapter must say (:class:`ModelFamily`), the errors of
loading a model, and the device choice. Family modules (:mod:`~dreamsampler.engine.audioldm`,
:mod:`~dreamsampler.engine.audioldm2`, :mod:`~dreamsampler.engine.stable_audio`) build on this
module; the registry (:mod:`~dreamsampler.engine.families`) imports them, never the reverse.

An adapter says how to encode text, how to go between audio and latents, and what the denoiser
needs. The sampling loop (:mod:`dreamsampler.engine.sampler`) is shared by all of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from dreamsampler.engine.request import GenerationRequest

PROMPT_CACHE_SIZE = 256
"""Text conditionings kept per model (prompt strings, least recently used dropped)."""


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message names the source and the reason."""


class SilentInputError(ValueError):
    """The audio given to the front end is silent (all samples zero after removing the mean)."""


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
    #: style transfer hands :meth:`audio_to_latents` the whole input file (its front end
    #: normalises over all of it, as AudioLDM's), not the input cut or padded to the duration
    takes_whole_input: ClassVar[bool] = False
    #: (tokenizer key, text encoder key) of each text tower a textual-inversion token enters
    text_towers: ClassVar[tuple[tuple[str, str], ...]] = (("tokenizer", "text_encoder"),)
    #: component key of the denoising network (what LoRA and DreamBooth change)
    denoiser_key: ClassVar[str] = "unet"
    #: class the denoiser loads with, when not the one ``model_index.json`` names (a subclass
    #: adding diffusers' adapter methods)
    denoiser_class: ClassVar[type | None] = None
    #: LoRA target module names for this family's denoiser; ``None``: the trainer's default
    lora_targets: ClassVar[tuple[str, ...] | None] = None
    #: the family can regenerate a region of an input clip (inpainting, continuation)
    supports_inpainting: ClassVar[bool] = False
    #: the family's training captions carry tempo and key tags ("120 BPM", "A minor"): a
    #: request's ``bpm``/``key`` are added to its prompt (see docs/conform.md, issue 18)
    caption_tags: ClassVar[bool] = False

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
    def max_duration(self) -> float | None:
        """The longest clip the model makes, seconds (``None``: no limit of its own)."""
        return None

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

    def input_gain(self, waveform: torch.Tensor, duration: float) -> float:
        """Linear gain :meth:`audio_to_latents` applies to the mono ``waveform`` ``(samples,)``
        before encoding it (its level normalisation); 1.0 for a family that does none.

        Style transfer divides its output by this gain, so the clip comes back at the input's
        level (:mod:`dreamsampler.engine.level`).
        """
        return 1.0

    @abstractmethod
    def latents_to_audio(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents → waveform ``(batch, samples)`` at :attr:`sample_rate`."""

    def conditioning(self, request: GenerationRequest, guided: bool) -> Any:
        """Conditioning of one request for :meth:`denoise`; with ``guided`` (classifier-free
        guidance) the batch is ``[unconditional, conditional]``."""
        prompts = [request.negative_prompt, request.prompt] if guided else [request.prompt]
        return self.encode_prompt(prompts)

    def make_scheduler(self, name: str) -> Any | None:
        """The family's own scheduler, or ``None`` to use the request's named scheduler."""
        return None

    def initial_latents(
        self,
        scheduler: Any,
        request: GenerationRequest,
        shape: tuple[int, ...],
        clean: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(latents, timesteps)`` to start from, or ``None`` for the loop's DDPM-style start
        (noise × ``init_noise_sigma``, or SDEdit: ``add_noise`` at the strength's timestep)."""
        return None

    def inpaint_conditioning(
        self, conditioning: Any, waveform: torch.Tensor, duration: float,
        regions: list[tuple[float, float]],
    ) -> Any:
        """``conditioning`` plus what regenerates ``regions`` (``[(start, end), ...]`` seconds)
        of ``waveform`` and keeps the rest; only families that ``supports_inpainting``."""
        raise NotImplementedError(f"{self.name} cannot inpaint")

    def load_waveform(self, path: Path, n_samples: int) -> torch.Tensor:
        """An input file as the waveform :meth:`audio_to_latents` takes: ``(1, n_samples)``
        mono at :attr:`sample_rate`, cropped or zero-padded (the whole file, ``(1, samples)``,
        where :attr:`takes_whole_input`).

        Raises:
            AudioFileError: the file cannot be read.
        """
        from dreamsampler.engine.audio_io import load_audio

        if self.takes_whole_input:
            return torch.from_numpy(load_audio(path, self.sample_rate))[None]
        # read only the frames the clip needs (a long file is not decoded whole)
        waveform = torch.from_numpy(load_audio(path, self.sample_rate,
                                               duration=n_samples / self.sample_rate))
        waveform = waveform[:n_samples]
        if waveform.shape[0] < n_samples:
            waveform = F.pad(waveform, (0, n_samples - waveform.shape[0]))
        return waveform[None]

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
            if len(self._prompt_cache) > PROMPT_CACHE_SIZE:
                self._prompt_cache.popitem(last=False)
        for p in prompts:
            self._prompt_cache.move_to_end(p)
        return torch.stack([self._prompt_cache[p] for p in prompts])

    def clear_prompt_cache(self) -> None:
        self._prompt_cache.clear()


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA, then MPS, then CPU; anything else as torch names it."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)
