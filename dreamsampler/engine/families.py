"""Model-family adapters: what differs between diffusers audio families, and nothing else.

An adapter says how to encode text, how to go between audio and latents, and what the denoiser
needs. The sampling loop (:mod:`dreamsampler.engine.sampler`) is shared by all of them.

AudioLDM (Liu et al. 2023, arXiv 2301.12503) and MusicLDM (Chen et al. 2023, arXiv 2308.01546) share
one design: a CLAP text embedding (pooled, projected, L2-normalised) enters the UNet as
``class_labels`` (``class_embed_type="simple_projection"``, concatenated to the time embedding);
latents are a VAE encoding of a 16 kHz log-mel spectrogram; a HiFi-GAN vocoder makes the waveform.
They differ only in the text tower (``ClapTextModelWithProjection`` vs. the full ``ClapModel``).
Stable Audio Open 1.0 and Stable Audio 3 are in :mod:`dreamsampler.engine.stable_audio`.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import librosa
import numpy as np
import torch
import torch.nn.functional as F

from dreamsampler.engine.schedulers import make_scheduler, sdedit_timesteps
from dreamsampler.engine.tiny import TINY_NAMES, build_tiny_components

if TYPE_CHECKING:
    from dreamsampler.engine.request import GenerationRequest

_PROMPT_CACHE_SIZE = 256
#: dtype of every component but the denoiser, and of the latents between steps
FLOAT32 = torch.float32


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message names the source and the reason."""


class SilentInputError(ValueError):
    """The audio given to the front end is silent (all samples zero after removing the mean)."""


class LogMelFrontEnd:
    """AudioLDM's front end: waveform normalisation and log-mel (TacotronSTFT), as the reference.

    Matches AudioLDM's own code (``audioldm`` 0.1.1, Liu et al. 2023; the package DreamSound and
    Plitsis et al. 2023 built on), which MusicLDM shares: :meth:`normalize` is
    ``audio/tools.py`` ``read_wav_file`` after resampling (mean removed, peak 0.5, cut or
    zero-padded to the segment, peak 0.5 again) and :meth:`__call__` is ``audio/stft.py``
    ``TacotronSTFT.mel_spectrogram`` (reflect padding of ``n_fft / 2`` so frame ``i`` is centred
    on sample ``hop * i``, periodic Hann window, magnitude, Slaney mel 0 Hz to ``sample_rate / 2``
    from librosa, ``log(clamp(mel, 1e-5))``) followed by ``_pad_spec`` (the first ``frames``
    frames). ``tests/engine/fixtures/make_audioldm_mel_ref.py`` imports both reference files and
    the tests compare with its output.

    Differences upstream of the front end: the input is mixed to mono (AudioLDM takes the first
    channel) and resampled with soxr (AudioLDM: torchaudio's sinc resampler).
    """

    #: peak AudioLDM normalises its input to (linear, = -6.02 dBFS)
    PEAK = 0.5

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

    def normalize(self, waveform: torch.Tensor, frames: int) -> torch.Tensor:
        """AudioLDM's waveform normalisation for ``frames`` mel frames, per row of
        ``(batch, samples)``.

        As ``read_wav_file``: subtract the mean of the whole row, scale to a peak of
        :attr:`PEAK` (0.5), zero-pad to ``frames * hop_length`` samples if shorter, scale to
        peak 0.5 again. A longer row is not cut before the normalisation (the reference's
        ``pad_wav`` slices rows, not samples, so mean and peak are those of the whole input);
        the result keeps only the samples the first ``frames`` frames see,
        ``max((frames - 1) * hop_length + n_fft // 2, frames * hop_length)``.

        Raises:
            SilentInputError: a row has no signal once its mean is removed.
        """
        x = waveform.double()
        x = x - x.mean(dim=-1, keepdim=True)
        x = x / (x.abs().amax(dim=-1, keepdim=True) + 1e-8) * self.PEAK
        if x.shape[-1] < frames * self.hop_length:
            x = F.pad(x, (0, frames * self.hop_length - x.shape[-1]))
        peak = x.abs().amax(dim=-1, keepdim=True)
        if bool((peak == 0).any()):
            raise SilentInputError("the input is silent (no signal once its mean is removed)")
        keep = max((frames - 1) * self.hop_length + self.n_fft // 2, frames * self.hop_length)
        return (x[:, :keep] / peak * self.PEAK).float()

    def __call__(self, waveform: torch.Tensor, frames: int) -> torch.Tensor:
        """Normalised waveform ``(batch, samples)`` → log-mel ``(batch, 1, frames, n_mels)``.

        ``waveform`` is what :meth:`normalize` returns (or any audio in [-1, 1]). The
        spectrogram is cropped, or padded with zeros as the reference's ``_pad_spec``, to
        exactly ``frames``.
        """
        pad = self.n_fft // 2
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
            mel = F.pad(mel, (0, 0, 0, frames - mel.shape[1]))
        return mel[:, None, :frames, :]


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
            if len(self._prompt_cache) > _PROMPT_CACHE_SIZE:
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


class ClapLDMFamily(ModelFamily):
    """AudioLDM and MusicLDM: CLAP class-label conditioning, mel VAE, HiFi-GAN vocoder."""

    component_keys = ("tokenizer", "text_encoder", "vae", "unet", "vocoder", "scheduler")
    takes_whole_input = True

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

    @property
    def latent_frame_rate(self) -> float:
        """Latent frames per second: 25 for AudioLDM/MusicLDM (16 kHz, hop 160, VAE 4)."""
        return self.sample_rate / self.hop_length / self.vae_scale_factor

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
        """Waveform ``(batch, samples)`` at 16 kHz → scaled VAE latents, via AudioLDM's front end.

        Pass the whole input, not a cut: as the reference, the mean and peak of the whole row
        set the normalisation (:meth:`LogMelFrontEnd.normalize`).

        Raises:
            SilentInputError: a row has no signal once its mean is removed.
        """
        frames = self.frames(duration)
        wave = self.front_end.normalize(waveform.cpu(), frames)
        mel = self.front_end(wave, frames).to(self.device, FLOAT32)
        vae = self.components["vae"]
        return vae.encode(mel).latent_dist.mode() * vae.config.scaling_factor

    def input_gain(self, waveform: torch.Tensor, duration: float) -> float:
        """``0.5 / peak`` of the mean-removed ``waveform`` ``(samples,)``: AudioLDM's normalisation.

        Raises:
            SilentInputError: no signal once the mean is removed.
        """
        x = waveform.double()
        peak = float((x - x.mean()).abs().max())
        if peak == 0.0:
            raise SilentInputError("the input is silent (no signal once its mean is removed)")
        return LogMelFrontEnd.PEAK / peak

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


def families() -> dict[str, type[ModelFamily]]:
    """Every family by its diffusers pipeline class name (:data:`FAMILIES` plus the Stable Audio
    families, imported here: their module builds on this one)."""
    from dreamsampler.engine.stable_audio import StableAudio3Family, StableAudioOpenFamily

    return {**FAMILIES, **{cls.pipeline_class: cls
                           for cls in (StableAudioOpenFamily, StableAudio3Family)}}


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
    try:
        module = importlib.import_module(library)
    except ModuleNotFoundError:
        # model_index.json names pipeline-local classes by their pipeline folder
        # ("stable_audio", "StableAudioProjectionModel"), as diffusers resolves them
        module = importlib.import_module(f"diffusers.pipelines.{library}")
    return getattr(module, class_name)


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


def load_model(model_id: str, device: str = "auto", dtype: str = "float32",
               compile: bool = False) -> ModelFamily:
    """Load a model by Hugging Face repo id, local diffusers folder, or tiny fixture name.

    ``dtype`` is the denoiser's (the rest stays float32: :class:`ModelFamily`); ``compile``
    compiles the denoiser (:meth:`ModelFamily.compile`).

    The family comes from ``model_index.json``'s ``_class_name``; each component loads with its
    class's ``from_pretrained(model_id, subfolder=key)`` (the hub cache is used when offline).

    Raises:
        ModelLoadError: unknown family, missing component, or the source cannot be read.
    """
    import dreamsampler.engine.audioldm2  # noqa: F401  (registers AudioLDM2Pipeline)

    torch_device = resolve_device(device)
    torch_dtype = getattr(torch, dtype)
    if model_id in TINY_NAMES:
        family_name, components = build_tiny_components(model_id)
        family = next(f for f in families().values() if f.name == family_name)
        return _compiled(family(model_id, components, torch_device, torch_dtype), compile)

    from diffusers import DiffusionPipeline

    try:
        index = DiffusionPipeline.load_config(model_id)
    except Exception as exc:
        raise ModelLoadError(_unreadable_index(model_id, exc)) from None
    class_name = index.get("_class_name", "")
    family = families().get(class_name)
    if family is None:
        known = ", ".join(sorted(families()))
        raise ModelLoadError(
            f"{model_id}: unsupported pipeline {class_name!r} (supported: {known})"
        )
    components: dict[str, Any] = {}
    for key in family.component_keys:
        entry = index.get(key)
        if not entry or entry[0] is None:
            raise ModelLoadError(f"{model_id}: model_index.json has no component {key!r}")
        try:
            cls = _import_class(entry[0], entry[1])
        except (ImportError, AttributeError) as exc:
            raise ModelLoadError(f"{model_id}: unknown class {entry[0]}.{entry[1]} for {key!r} "
                                 f"({exc}); is diffusers/transformers too old?") from None
        if key == family.denoiser_key and family.denoiser_class is not None:
            cls = family.denoiser_class
        kwargs: dict[str, Any] = {"subfolder": key}
        if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
            # half precision for the denoiser only (see ModelFamily)
            kwargs["torch_dtype"] = torch_dtype if key == family.denoiser_key else FLOAT32
        try:
            source = str(Path(model_id)) if Path(model_id).is_dir() else model_id
            components[key] = cls.from_pretrained(source, **kwargs)
        except Exception as exc:
            raise ModelLoadError(f"{model_id}: cannot load {key} ({exc})") from None
    return _compiled(family(model_id, components, torch_device, torch_dtype), compile)


def _compiled(model: ModelFamily, compile: bool) -> ModelFamily:
    if compile:
        model.compile()
    return model
