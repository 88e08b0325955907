"""The ``mini`` model's vocoder: Griffin-Lim phase reconstruction (Griffin & Lim 1984) from the
log-mel, in a ``transformers`` model with ``SpeechT5HifiGan``'s config and call signature.

Why not a trained HiFi-GAN: on this machine's budget (minutes of one shared CPU thread) a
``SpeechT5HifiGan`` trained with multi-resolution STFT + mel losses reached 408 steps and still
made the classic 100 Hz frame buzz: pYIN found 100 Hz in 16 of 16 resynthesised notes
(docs/mini.md). Griffin-Lim needs no training and keeps the pitch of the mel's harmonics.

Its one weight is the pseudo-inverse of the Slaney mel filterbank of AudioLDM's front end
(``(n_fft/2 + 1, n_mels)``), saved as safetensors like any other component, so the folder loads
through ``from_pretrained`` and the family reads ``config.upsample_rates`` (hop), ``model_in_dim``
(mel bands) and ``sampling_rate`` as for a HiFi-GAN.
"""

from __future__ import annotations

import librosa
import numpy as np
import torch
from transformers import PreTrainedModel, SpeechT5HifiGanConfig

N_FFT = 1024  # AudioLDM's front end


class GriffinLimVocoder(PreTrainedModel):
    """Log-mel ``(batch, frames, n_mels)`` (or ``(frames, n_mels)``) → waveform
    ``(batch, frames * hop)`` (or ``(frames * hop,)``) at ``config.sampling_rate``.

    ``config.griffin_lim_iters`` iterations (default 32) of Griffin & Lim (1984), eq. 6, from zero
    phase, on the magnitude ``max(pinv(mel_basis) @ exp(log_mel), 0)``.
    """

    config_class = SpeechT5HifiGanConfig
    main_input_name = "spectrogram"
    base_model_prefix = "griffin_lim"

    def __init__(self, config: SpeechT5HifiGanConfig) -> None:
        super().__init__(config)
        self.inverse = torch.nn.Parameter(self.filterbank_inverse(config), requires_grad=False)
        self.post_init()

    @staticmethod
    def filterbank_inverse(config: SpeechT5HifiGanConfig) -> torch.Tensor:
        mel = librosa.filters.mel(sr=config.sampling_rate, n_fft=N_FFT, n_mels=config.model_in_dim,
                                  fmin=0.0, fmax=config.sampling_rate / 2)
        return torch.from_numpy(np.linalg.pinv(mel).astype(np.float32))

    def _init_weights(self, module: torch.nn.Module) -> None:
        if module is self:
            with torch.no_grad():
                self.inverse.copy_(self.filterbank_inverse(self.config))

    @property
    def hop_length(self) -> int:
        return int(np.prod(self.config.upsample_rates))

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        single = spectrogram.dim() == 2
        mel = spectrogram[None] if single else spectrogram
        frames = mel.shape[1]
        inverse = self.inverse.float()
        magnitude = torch.clamp(inverse @ mel.float().exp().transpose(1, 2), min=0.0)
        window = torch.hann_window(N_FFT, device=mel.device)
        length = frames * self.hop_length
        spec = magnitude.to(torch.complex64)
        iters = int(getattr(self.config, "griffin_lim_iters", 32))
        for _ in range(iters):
            wave = torch.istft(spec, N_FFT, self.hop_length, window=window, length=length)
            rebuilt = torch.stft(wave, N_FFT, self.hop_length, window=window,
                                 return_complex=True)[..., :frames]
            spec = magnitude * torch.exp(1j * torch.angle(rebuilt))
        wave = torch.istft(spec, N_FFT, self.hop_length, window=window, length=length)
        wave = wave.to(spectrogram.dtype)
        return wave[0] if single else wave


def build_vocoder(sample_rate: int, n_mels: int, hop_length: int) -> GriffinLimVocoder:
    """A vocoder for ``n_mels`` bands and ``hop_length`` (written as one upsample rate)."""
    config = SpeechT5HifiGanConfig(
        model_in_dim=n_mels, sampling_rate=sample_rate, upsample_rates=[hop_length],
        upsample_kernel_sizes=[2 * hop_length], normalize_before=False)
    config.griffin_lim_iters = 32
    return GriffinLimVocoder(config).eval()
