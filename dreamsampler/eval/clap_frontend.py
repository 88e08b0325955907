"""LAION-CLAP's audio front end, computed as LAION computes it (numpy + librosa).

The waveform fitting (int16 round trip, ``rand_trunc`` crop, ``repeatpad``) and the log-mel of
LAION-CLAP's HTSAT models, so that embeddings agree with papers that used the LAION code; the
``laion-clap`` package itself is not used (it needs numpy<2 and the hub at import time).

Reference: Wu*, Chen*, et al., "Large-scale Contrastive Language-Audio Pretraining with Feature
Fusion and Keyword-to-Caption Augmentation", ICASSP 2023 (arXiv:2211.06687).
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np
from numpy.typing import ArrayLike, NDArray
from transformers import ClapFeatureExtractor

__all__ = ["LAION_MEL", "LaionMelParams", "laion_log_mel", "laion_waveform"]


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
