"""Stable Audio model families: Stable Audio Open 1.0 and Stable Audio 3, 44.1 kHz stereo.

Both are latent diffusion transformers over a 1-D waveform autoencoder, conditioned on a T5-family
text encoder (cross-attention) and on timing (``seconds_start``/``seconds_total``). They run through
the same sampling loop as the other families (:mod:`dreamsampler.engine.sampler`); the adapters say
how text and timing become conditioning, how audio becomes latents, and which noise schedule the
model was trained with.

* **Stable Audio Open 1.0** (Evans et al. 2024, arXiv 2407.14358; ``StableAudioPipeline``):
  ``AutoencoderOobleck`` (2048 samples per latent frame), t5-base + ``StableAudioProjectionModel``
  (text projection; ``seconds_start``/``seconds_total`` become two cross-attention tokens and the
  global conditioning), ``StableAudioDiTModel`` with rotary positions, v-prediction on the cosine
  ("v-diffusion") schedule sampled by ``CosineDPMSolverMultistepScheduler``. Unlike the stock
  pipeline, which always denoises and decodes the full 47.55 s window and then crops, latents are
  sized to the requested duration.
* **Stable Audio 3** (diffusers ``StableAudio3Pipeline`` and its audio-to-audio and inpainting
  pipelines): ``AutoencoderSAME`` (4096 samples per latent frame), T5Gemma encoder,
  ``StableAudio3DurationEmbedder`` (``seconds_total`` as global conditioning and as one extra
  cross-attention token), ``StableAudio3DiTModel``: rectified flow (velocity prediction),
  ``FlowMatchEulerDiscreteScheduler`` over the log-SNR-warped sigma schedule; inpainting and
  continuation through the DiT's local-additive conditioning ``cat([mask, masked latent])``.

Neither diffusers DiT has LoRA methods: :class:`StableAudioDiT` and :class:`StableAudio3DiT` add
diffusers' ``PeftAdapterMixin`` (``add_adapter``, ``set_adapters`` with weights,
``save_lora_adapter``/``load_lora_adapter``) and are what the families load.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from diffusers import StableAudio3DiTModel, StableAudioDiTModel
from diffusers.loaders.peft import PeftAdapterMixin
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.pipelines.stable_audio_3.pipeline_stable_audio_3 import logsnr_sigma_schedule

from dreamsampler.engine.audio_io import read_audio, resample
from dreamsampler.engine.family_base import FLOAT32, ModelFamily
from dreamsampler.engine.request import RequestError

if TYPE_CHECKING:
    from dreamsampler.engine.request import GenerationRequest

#: output samples read beyond the clip's end so the resampler's filter sees real signal there
RESAMPLE_MARGIN = 4096
#: SA3's text encoder context (``model_config.json`` of the reference checkpoints)
SA3_MAX_TOKENS = 256
#: SA3's log-SNR range of the sampling schedule (the pipelines' defaults)
SA3_LOGSNR_MIN = -6.2
SA3_LOGSNR_MAX = 2.0


class StableAudioDiT(StableAudioDiTModel, PeftAdapterMixin):
    """``StableAudioDiTModel`` with diffusers' LoRA adapter methods (``PeftAdapterMixin``)."""


class StableAudio3DiT(StableAudio3DiTModel, PeftAdapterMixin):
    """``StableAudio3DiTModel`` with diffusers' LoRA adapter methods (``PeftAdapterMixin``)."""


@dataclass(frozen=True)
class StableAudioConditioning:
    """Text and timing conditioning of a Stable Audio DiT for one batch.

    Attributes:
        text: text encoder output ``(batch, tokens, d)`` (before Open 1.0's projection).
        mask: attention mask ``(batch, tokens)``, 1 for real tokens.
        seconds_start: timing conditioning, seconds (Open 1.0 only).
        seconds_total: timing conditioning, seconds; ``None`` takes it from the latent length
            (training clips: frames × samples per frame / sample rate).
        null: ``(batch,)`` bool, rows whose whole cross-attention context is zero: Open 1.0's
            unconditional branch of classifier-free guidance without a negative prompt.
        local: SA3 local-additive (inpainting) conditioning ``(batch, 1 + latent channels,
            frames)``: the keep-mask (1 keep, 0 regenerate) and the masked input latents.
    """

    text: torch.Tensor
    mask: torch.Tensor
    seconds_start: float = 0.0
    seconds_total: float | None = None
    null: torch.Tensor | None = None
    local: torch.Tensor | None = None

    @property
    def batch(self) -> int:
        return int(self.text.shape[0])


class StableAudioFamilyBase(ModelFamily):
    """What Stable Audio Open 1.0 and Stable Audio 3 share: T5-family text, stereo waveform VAE,
    a DiT under the ``transformer`` key, the model's own scheduler."""

    #: Freesound-derived captions carry tempo tags (model card: "128 BPM tech house drum loop")
    caption_tags: ClassVar[bool] = True

    denoiser_key: ClassVar[str] = "transformer"
    max_tokens: ClassVar[int | None] = None
    supports_inpainting: ClassVar[bool] = False

    def __init__(
        self, model_id: str, components: dict[str, Any], device: torch.device, dtype: torch.dtype
    ) -> None:
        super().__init__(model_id, components, device, dtype)
        self._text_cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    # -- audio ----------------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return int(self.components["vae"].config.sampling_rate)

    @property
    def channels(self) -> int:
        """Audio channels (2: stereo)."""
        return int(self.components["vae"].config.audio_channels)

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame."""
        raise NotImplementedError

    @property
    def latent_channels(self) -> int:
        raise NotImplementedError

    def frames(self, duration: float) -> int:
        """Latent frames covering ``duration`` seconds (rounded up)."""
        return math.ceil(duration * self.sample_rate / self.hop_length - 1e-9)

    def latent_shape(self, duration: float) -> tuple[tuple[int, ...], int]:
        """``((latent channels, frames), samples)`` for ``duration`` seconds."""
        return (self.latent_channels, self.frames(duration)), int(duration * self.sample_rate)

    def load_waveform(self, path: Path, n_samples: int) -> torch.Tensor:
        """An audio file as ``(1, channels, n_samples)`` at :attr:`sample_rate` (cropped or
        zero-padded; mono is duplicated, other channel counts are mixed to mono first).

        Only the frames the clip needs are decoded (plus a few for the resampler's filter):
        memory follows ``n_samples``, not the file.

        Raises:
            AudioFileError: the file cannot be read (or claims an implausible sample rate).
        """
        audio, rate = read_audio(path, duration=(n_samples + RESAMPLE_MARGIN) / self.sample_rate)
        if audio.shape[0] != self.channels:
            audio = np.repeat(audio.mean(axis=0, keepdims=True), self.channels, axis=0)
        audio = resample(np.ascontiguousarray(audio), rate, self.sample_rate)[:, :n_samples]
        wave = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        if wave.shape[-1] < n_samples:
            wave = torch.nn.functional.pad(wave, (0, n_samples - wave.shape[-1]))
        return wave[None]

    def _stereo(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.ndim == 2:
            waveform = waveform[:, None].expand(-1, self.channels, -1)
        return waveform.to(self.device, FLOAT32)

    def _fit_frames(self, latents: torch.Tensor, frames: int) -> torch.Tensor:
        if latents.shape[-1] < frames:
            return torch.nn.functional.pad(latents, (0, frames - latents.shape[-1]))
        return latents[..., :frames]

    # -- text -----------------------------------------------------------------------------------

    def _tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokenizer = self.components["tokenizer"]
        length = tokenizer.model_max_length
        if self.max_tokens is not None:
            length = min(length, self.max_tokens)
        tok = tokenizer(prompts, padding="max_length", max_length=length, truncation=True,
                        return_tensors="pt")
        return tok.input_ids.to(self.device), tok.attention_mask.to(self.device)

    def _encode_text(self, prompts: list[str]) -> StableAudioConditioning:  # type: ignore[override]
        ids, mask = self._tokenize(prompts)
        text = self.components["text_encoder"](ids, attention_mask=mask)[0]
        return StableAudioConditioning(text=text, mask=mask)

    def encode_prompt(self, prompts: list[str]) -> StableAudioConditioning:  # type: ignore[override]
        """Text conditioning of ``prompts`` (cached per prompt string, like the base class)."""
        for prompt in dict.fromkeys(prompts):
            if prompt not in self._text_cache:
                with torch.no_grad():
                    cond = self.encode_text([prompt])
                self._text_cache[prompt] = (cond.text[0], cond.mask[0])
                if len(self._text_cache) > 256:
                    self._text_cache.popitem(last=False)
        for p in prompts:
            self._text_cache.move_to_end(p)
        return StableAudioConditioning(
            text=torch.stack([self._text_cache[p][0] for p in prompts]),
            mask=torch.stack([self._text_cache[p][1] for p in prompts]),
        )

    def clear_prompt_cache(self) -> None:
        super().clear_prompt_cache()
        self._text_cache.clear()

    # -- sampling hooks -------------------------------------------------------------------------

    def make_scheduler(self, name: str) -> Any:
        """The model's own scheduler (Stable Audio models are sampled with the scheduler they
        ship; the request's scheduler name does not apply)."""
        scheduler = self.components["scheduler"]
        return type(scheduler).from_config(scheduler.config)

    def scheduler_name(self, name: str) -> str:
        return type(self.components["scheduler"]).__name__

    def latents_to_audio(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(batch, channels, frames)`` → waveform ``(batch, audio channels, samples)``."""
        return self.components["vae"].decode(latents).sample.float()


class StableAudioOpenFamily(StableAudioFamilyBase):
    """Stable Audio Open 1.0 (``stabilityai/stable-audio-open-1.0``)."""

    name = "stable-audio"
    pipeline_class = "StableAudioPipeline"
    component_keys = ("tokenizer", "text_encoder", "projection_model", "transformer", "vae",
                      "scheduler")
    denoiser_class: ClassVar[type] = StableAudioDiT
    #: LoRA on the DiT's self- and cross-attention projections
    lora_targets: ClassVar[tuple[str, ...]] = ("to_q", "to_k", "to_v", "to_out.0")

    @property
    def hop_length(self) -> int:
        return int(self.components["vae"].hop_length)

    @property
    def latent_channels(self) -> int:
        return int(self.components["transformer"].config.in_channels)

    @property
    def window_seconds(self) -> float:
        """The DiT's training window (``sample_size`` frames; 47.55 s for Open 1.0)."""
        frames = int(self.components["transformer"].config.sample_size)
        return frames * self.hop_length / self.sample_rate

    @property
    def max_duration(self) -> float:
        """:attr:`window_seconds`."""
        return self.window_seconds

    def batch_conditioning(self, requests: Sequence[GenerationRequest], guided: bool
                           ) -> StableAudioConditioning:
        """Text, ``seconds_start = 0`` and ``seconds_total = duration`` (one duration for the
        batch); with guidance, an unconditional row is its negative prompt, or an all-zero
        context when it is empty (as ``StableAudioPipeline`` with ``negative_prompt=None``).

        Raises:
            RequestError: the duration is longer than the DiT's window (47.55 s).
        """
        duration = requests[0].duration
        if duration > self.window_seconds + 1e-6:
            raise RequestError(f"duration must be <= {self.window_seconds:.2f} s for "
                               f"{self.model_id} (its training window), got {duration}")
        prompts = [r.prompt for r in requests]
        if not guided:
            return replace(self.encode_prompt(prompts), seconds_total=duration)
        negatives = [r.negative_prompt or r.prompt for r in requests]
        cond = self.encode_prompt([*negatives, *prompts])
        null = torch.tensor([not r.negative_prompt for r in requests] + [False] * len(requests),
                            device=self.device)
        return replace(cond, seconds_total=duration, null=null)

    def denoise(
        self, latents: torch.Tensor, timestep: torch.Tensor, conditioning: Any
    ) -> torch.Tensor:
        """v-prediction of the DiT for latents ``(batch, channels, frames)``."""
        cond: StableAudioConditioning = conditioning
        projection = self.components["projection_model"]
        transformer = self.components["transformer"]
        batch, frames = latents.shape[0], latents.shape[-1]
        text = projection(text_hidden_states=cond.text).text_hidden_states
        text = text * cond.mask.unsqueeze(-1).to(text.dtype)
        total = cond.seconds_total
        if total is None:
            total = frames * self.hop_length / self.sample_rate
        timing = projection(
            start_seconds=torch.tensor([float(cond.seconds_start)] * batch, device=self.device),
            end_seconds=torch.tensor([float(total)] * batch, device=self.device),
        )
        start = timing.seconds_start_hidden_states
        end = timing.seconds_end_hidden_states
        context = torch.cat([text, start.to(text.dtype), end.to(text.dtype)], dim=1)
        if cond.null is not None:
            context = torch.where(cond.null[:, None, None], torch.zeros_like(context), context)
        global_states = torch.cat([start, end], dim=2).to(latents.dtype)
        context = context.to(latents.dtype)  # the projection runs in float32, the DiT maybe not
        rotary = get_1d_rotary_pos_embed(
            transformer.config.attention_head_dim // 2, frames + global_states.shape[1],
            use_real=True, repeat_interleave_real=False,
        )
        t = timestep.reshape(1) if timestep.ndim == 0 else timestep
        return transformer(
            latents, t, encoder_hidden_states=context, global_hidden_states=global_states,
            rotary_embedding=rotary, return_dict=False,
        )[0]

    def audio_to_latents(self, waveform: torch.Tensor, duration: float) -> torch.Tensor:
        """Waveform ``(batch, channels, samples)`` (or mono ``(batch, samples)``, duplicated to
        every channel: training clips) → Oobleck latents (posterior mode)."""
        vae = self.components["vae"]
        latents = vae.encode(self._stereo(waveform)).latent_dist.mode()
        return self._fit_frames(latents, self.frames(duration))

    def training_example(
        self, latents: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(noisy, t, target)`` of the v-objective (Salimans & Ho 2022, arXiv 2202.00512):
        ``t ~ U(0, 1)``, ``α = cos(πt/2)``, ``σ = sin(πt/2)``, ``z_t = α z0 + σ ε``,
        ``v = α ε − σ z0``. The DiT's timestep is ``t`` (the pipeline's ``atan(σ_EDM)·2/π``)."""
        batch = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        t = torch.rand((batch,), generator=generator).to(latents.device)
        alpha = torch.cos(t * math.pi / 2).view(-1, 1, 1).to(latents.dtype)
        sigma = torch.sin(t * math.pi / 2).view(-1, 1, 1).to(latents.dtype)
        return alpha * latents + sigma * noise, t, alpha * noise - sigma * latents


class StableAudio3Family(StableAudioFamilyBase):
    """Stable Audio 3: a folder converted by diffusers' ``convert_stable_audio_3_to_diffusers``."""

    name = "sa3"
    pipeline_class = "StableAudio3Pipeline"
    component_keys = ("tokenizer", "text_encoder", "duration_embedder", "transformer", "vae",
                      "scheduler")
    denoiser_class: ClassVar[type] = StableAudio3DiT
    max_tokens = SA3_MAX_TOKENS
    supports_inpainting = True
    #: LoRA on the DiT's self-attention (fused qkv), cross-attention and output projections
    lora_targets: ClassVar[tuple[str, ...]] = ("to_qkv", "to_q", "to_kv", "to_out")

    @property
    def hop_length(self) -> int:
        return int(self.components["vae"].downsampling_ratio)

    @property
    def latent_channels(self) -> int:
        return int(self.components["vae"].config.latent_dim)

    def batch_conditioning(self, requests: Sequence[GenerationRequest], guided: bool
                           ) -> StableAudioConditioning:
        """Text and ``seconds_total = duration`` (one duration for the batch); with guidance an
        unconditional row is its negative prompt ("" when none, as ``StableAudio3Pipeline``).
        Inpainting and continuation add the local conditioning built from the input file
        (:meth:`inpaint_conditioning`)."""
        negatives = [r.negative_prompt for r in requests] if guided else []
        cond = self.encode_prompt([*negatives, *(r.prompt for r in requests)])
        return replace(cond, seconds_total=requests[0].duration)

    def inpaint_conditioning(
        self, conditioning: Any, waveform: torch.Tensor, duration: float,
        regions: list[tuple[float, float]],
    ) -> StableAudioConditioning:
        """``conditioning`` with SA3's local-additive input ``(batch, 1 + latent channels,
        frames)``: the keep-mask (1 keep, 0 regenerate) and the masked input latents.

        Args:
            conditioning: the request's text and timing conditioning (its batch: 2 with
                guidance).
            waveform: the input ``(1, channels, samples)``.
            duration: output seconds.
            regions: ``[(start, end), ...]`` seconds to regenerate; frame indices are
                ``int(seconds × rate / hop)`` as in ``StableAudio3InpaintPipeline``.
        """
        frames = self.frames(duration)
        mask = torch.ones(1, 1, frames, device=self.device)
        for start, end in regions:
            first = int(start * self.sample_rate / self.hop_length)
            last = min(int(end * self.sample_rate / self.hop_length), frames)
            mask[:, :, first:last] = 0.0
        vae = self.components["vae"]
        latents = self._fit_frames(vae.encode(waveform.to(self.device, FLOAT32)).latents,
                                   frames)
        local = torch.cat([mask, latents * mask], dim=1).to(self.dtype)  # the DiT's input
        return replace(conditioning, local=local.expand(conditioning.batch, -1, -1))

    def denoise(
        self, latents: torch.Tensor, timestep: torch.Tensor, conditioning: Any
    ) -> torch.Tensor:
        """Velocity ``v = ε − z0`` predicted for latents ``(batch, channels, frames)``."""
        cond: StableAudioConditioning = conditioning
        batch, frames = latents.shape[0], latents.shape[-1]
        total = cond.seconds_total
        if total is None:
            total = frames * self.hop_length / self.sample_rate
        seconds = torch.tensor([float(total)], dtype=torch.float32, device=self.device)
        global_states = self.components["duration_embedder"](seconds).expand(batch, -1)
        context = torch.cat([cond.text, global_states.unsqueeze(1).to(cond.text.dtype)], dim=1)
        # text and duration embedder run in float32, the DiT at the model's dtype
        context, global_states = context.to(latents.dtype), global_states.to(latents.dtype)
        mask = torch.cat([cond.mask, cond.mask.new_ones(batch, 1)], dim=1)
        t = timestep.expand(batch) if timestep.ndim == 0 else timestep
        return self.components["transformer"](
            latents, t, encoder_hidden_states=context, global_hidden_states=global_states,
            encoder_attention_mask=mask, local_add_cond=cond.local, return_dict=False,
        )[0]

    def audio_to_latents(self, waveform: torch.Tensor, duration: float) -> torch.Tensor:
        """Waveform ``(batch, channels, samples)`` (or mono ``(batch, samples)``, duplicated to
        every channel: training clips) → SAME latents."""
        latents = self.components["vae"].encode(self._stereo(waveform)).latents
        return self._fit_frames(latents, self.frames(duration))

    def latents_to_audio(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents → waveform ``(batch, 2, samples)`` clamped to [-1, 1] (as the SA3 pipelines)."""
        return super().latents_to_audio(latents).clamp(-1.0, 1.0)

    def start(
        self,
        scheduler: Any,
        request: GenerationRequest,
        clean: torch.Tensor | None,
        noise: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rectified-flow start: sigmas ``logsnr_sigma_schedule(steps, −6.2, 2.0, sigma_max)``.

        Text→audio: ``sigma_max = 1``, pure ``noise``. SDEdit at ``strength`` s (as
        ``StableAudio3AudioToAudioPipeline``'s ``init_noise_level``): ``sigma_max = s``, start
        ``(1 − s)·z0 + s·ε``, all ``num_inference_steps`` steps over ``[s, 0]``; ``s = 0``
        returns the input's reconstruction.
        """
        steps = request.num_inference_steps
        if clean is not None and request.strength == 0.0:
            return clean, torch.zeros(0, device=self.device)
        sigma_max = request.strength if clean is not None else 1.0
        sigmas = logsnr_sigma_schedule(steps, SA3_LOGSNR_MIN, SA3_LOGSNR_MAX, sigma_max=sigma_max)
        scheduler.set_timesteps(sigmas=sigmas, device=self.device)
        latents = noise if clean is None else (1.0 - sigma_max) * clean + sigma_max * noise
        return latents, scheduler.timesteps

    def training_example(
        self, latents: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(noisy, t, target)`` of rectified flow (Liu et al. 2022, arXiv 2209.03003):
        ``t ~ U(0, 1)``, ``z_t = (1 − t) z0 + t ε``, target velocity ``ε − z0``."""
        batch = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        t = torch.rand((batch,), generator=generator).to(latents.device)
        tt = t.view(-1, 1, 1).to(latents.dtype)
        return (1 - tt) * latents + tt * noise, t, noise - latents
