"""AudioLDM and MusicLDM: CLAP class-label conditioning, a mel VAE and a HiFi-GAN vocoder.

AudioLDM (Liu et al. 2023, arXiv 2301.12503) and MusicLDM (Chen et al. 2023, arXiv 2308.01546) share
one design: a CLAP text embedding (pooled, projected, L2-normalised) enters the UNet as
``class_labels`` (``class_embed_type="simple_projection"``, concatenated to the time embedding);
latents are a VAE encoding of a 16 kHz log-mel spectrogram; a HiFi-GAN vocoder makes the waveform.
They differ only in the text tower (``ClapTextModelWithProjection`` vs. the full ``ClapModel``).
"""

from __future__ import annotations

import math
from typing import Any

import librosa
import numpy as np
import torch
import torch.nn.functional as F

from dreamsampler.engine.family_base import FLOAT32, ModelFamily, SilentInputError


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
