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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F

from dreamsampler.engine.schedulers import make_scheduler, sdedit_timesteps

if TYPE_CHECKING:
    from dreamsampler.engine.request import GenerationRequest

PROMPT_CACHE_SIZE = 256
"""Text conditionings kept per model (prompt strings, least recently used dropped)."""
FLOAT32 = torch.float32
"""dtype of every component but the denoiser, and of the latents between steps (issue 21)."""


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message names the source and the reason."""


class SilentInputError(ValueError):
    """The audio given to the front end is silent (all samples zero after removing the mean)."""


class ModelFamily(ABC):
    """Adapter for one diffusers model family over its loaded components.

    Precision: only the denoiser (:attr:`denoiser_key`) runs at :attr:`dtype` (``float16`` or
    ``bfloat16`` when asked); every other component (text encoders, projections, VAE, vocoder)
    and the latents between steps stay float32 (:data:`FLOAT32`): they run once per job or per
    prompt, so half precision would save little, and they are where fp16 overflows are known:
    diffusers' ``AutoencoderKL`` (the AudioLDM/MusicLDM/AudioLDM 2 VAE) defaults to
    ``force_upcast=True`` ("the VAE … should be run in float32", the SD/SDXL VAE overflows in
    fp16), transformers keeps T5's feed-forward ``wo`` in float32 (``T5PreTrainedModel.
    _keep_in_fp32_modules``; T5 activations overflow fp16), AudioLDM's own code fixed NaN VAE
    output (haoheliu/AudioLDM pull request 42), and ``StableAudioDiTModel`` lists its
    ``preprocess_conv``/``postprocess_conv``/``proj_in``/``proj_out``/``norm`` layers in
    ``_skip_layerwise_casting_patterns`` (kept out of low-precision storage). The sampler casts
    the denoiser's input to :attr:`dtype` and its prediction back to float32.

    Attributes:
        model_id: repo id, local directory or tiny name it was loaded from.
        components: the diffusers/transformers parts by their pipeline key
            (tokenizer, text_encoder, vae, unet, vocoder, scheduler).
        dtype: the denoiser's dtype.
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
        for key, module in components.items():
            if isinstance(module, torch.nn.Module):
                module.to(device=device)
                wanted = dtype if key == self.denoiser_key else FLOAT32
                if next(module.parameters()).dtype != wanted:
                    module.to(dtype=wanted)
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
        return self.batch_conditioning([request], guided)

    def batch_conditioning(self, requests: Sequence[GenerationRequest], guided: bool) -> Any:
        """Conditioning of a batch of requests (one row each, same duration); with ``guided``
        the batch is ``[unconditional × B, conditional × B]`` (diffusers' layout: the loop
        doubles the latents with ``cat([latents, latents])``). Every row's embedding is the one
        its prompt gets alone (:meth:`encode_prompt` encodes one prompt per pass)."""
        negatives = [r.negative_prompt for r in requests] if guided else []
        return self.encode_prompt([*negatives, *(r.prompt for r in requests)])

    def make_scheduler(self, name: str) -> Any:
        """A fresh scheduler for a request that names ``name`` (:data:`SCHEDULER_NAMES`)."""
        return make_scheduler(name, self.scheduler_config)

    def scheduler_name(self, name: str) -> str:
        """The scheduler a request naming ``name`` runs with (for the generation record)."""
        return name

    def start(
        self,
        scheduler: Any,
        request: GenerationRequest,
        clean: torch.Tensor | None,
        noise: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latents, timesteps)`` the loop starts from, for a batch sharing ``request``'s
        steps and strength.

        DDPM-style start (diffusers' text-to-audio and img2img pipelines): text→audio starts
        from ``noise × init_noise_sigma`` over every timestep; SDEdit (Meng et al. 2022) noises
        the input latents ``clean`` to the strength's first timestep (``add_noise``) and runs the
        last ``int(steps × strength)`` steps.

        Args:
            scheduler: a fresh scheduler (:meth:`make_scheduler`); its timesteps are set here.
            request: steps and strength.
            clean: input latents ``(batch, ...)`` for SDEdit, else ``None``.
            noise: standard normal ``(batch, ...)`` (one generator per row).
        """
        steps = request.num_inference_steps
        scheduler.set_timesteps(steps, device=self.device)
        if clean is None:
            return noise * scheduler.init_noise_sigma, scheduler.timesteps
        timesteps = sdedit_timesteps(scheduler, steps, request.strength)
        if not len(timesteps):
            return clean, timesteps
        return scheduler.add_noise(clean, noise, timesteps[:1]), timesteps

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

    def compile(self, **options: Any) -> None:
        """Compile the denoiser's forward with ``torch.compile`` (``nn.Module.compile``: in
        place, so its class, adapter methods and weights stay; the first steps of each new
        shape pay the compilation). ``options`` go to ``torch.compile``."""
        self.components[self.denoiser_key].compile(**options)


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA, then MPS, then CPU; anything else as torch names it."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)
