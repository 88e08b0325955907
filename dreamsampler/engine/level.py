"""The level of delivered audio: non-finite samples are refused, peaks stay below full scale.

The policy, applied by the engine to every result and by the folder sink again at the file's
sample rate (resampling can raise inter-sample peaks):

- Audio with a NaN or infinite sample is refused (:class:`NonFiniteAudioError`); nothing is
  written or played.
- A clip whose sample peak is above 0 dBFS (``|x| > 1``) is scaled by one gain so that its peak
  is :data:`CEILING_DBFS` (-1 dBFS). This is peak normalisation, not a limiter: the waveform's
  shape is kept, only the level changes, and the record says by how many dB
  (:func:`normalize_overs`). A clip at or below 0 dBFS is left bit for bit as the model made it.

Audio arrays are float ``(channels, samples)`` (or ``(samples,)``), full scale = 1.0.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

#: the peak (dBFS) a clip above 0 dBFS is normalised to
CEILING_DBFS = -1.0
#: the policy in words, for generation records
POLICY = f"non-finite refused; peaks above 0 dBFS normalised to {CEILING_DBFS:g} dBFS"


class NonFiniteAudioError(ValueError):
    """Audio holds NaN or infinite samples; the message says where it came from and how many."""


def check_finite(audio: np.ndarray, source: str) -> None:
    """Raise unless every sample of ``audio`` is finite.

    Args:
        audio: float array of any shape.
        source: what made the audio, for the message (e.g. "the model's output").

    Raises:
        NonFiniteAudioError: naming ``source`` and the count of NaN and infinite samples.
    """
    finite = np.isfinite(audio)
    if not finite.all():
        nan = int(np.isnan(audio).sum())
        inf = int(audio.size - finite.sum()) - nan
        raise NonFiniteAudioError(
            f"{source} holds {nan} NaN and {inf} infinite samples of {audio.size}; "
            "refused, nothing delivered"
        )


def peak_dbfs(audio: ArrayLike) -> float:
    """Sample peak in dBFS (full scale 1.0) of audio of any shape; ``-inf`` for silence or an
    empty array. The project's one peak meter (engine, training clips, evaluation)."""
    audio = np.asarray(audio)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return 20.0 * math.log10(peak) if peak > 0.0 else -math.inf


def normalize_overs(audio: np.ndarray, ceiling_dbfs: float = CEILING_DBFS
                    ) -> tuple[np.ndarray, float]:
    """Scale ``audio`` to a ``ceiling_dbfs`` peak if its sample peak is above 0 dBFS.

    Args:
        audio: finite float array ``(channels, samples)`` or ``(samples,)``.
        ceiling_dbfs: the peak after normalisation, in dBFS (<= 0).

    Returns:
        ``(audio, gain_db)``: float32 audio (the input itself when no gain is needed) and the
        gain applied in dB (0.0 when the peak was at or below 0 dBFS, negative otherwise).
    """
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 1.0:
        return audio.astype(np.float32, copy=False), 0.0
    gain = 10.0 ** (ceiling_dbfs / 20.0) / peak
    return (audio * gain).astype(np.float32), 20.0 * math.log10(gain)


def finish(audio: np.ndarray, source: str, input_gain: float = 1.0
           ) -> tuple[np.ndarray, dict[str, float | str | None]]:
    """The engine's last step: refuse non-finite audio, undo the input gain, normalise overs.

    Args:
        audio: the decoded clip ``(channels, samples)``.
        source: what made it, for the error message.
        input_gain: linear gain the model's front end applied to a style-transfer input
            (``ModelFamily.input_gain``); the clip is divided by it. 1.0 for text→audio.

    Returns:
        ``(audio, record)``: float32 audio with its peak at or below 0 dBFS, and the record
        fields ``level_policy``, ``overs_gain_db`` (the 0 dBFS normalisation, 0.0 when none),
        ``gain_db`` (total gain applied here, dB) and ``peak_dbfs`` (``None`` for silence).

    Raises:
        NonFiniteAudioError: ``audio`` holds NaN or infinite samples.
    """
    check_finite(audio, source)
    record: dict[str, float | str | None] = {"level_policy": POLICY}
    if input_gain != 1.0:
        audio = (audio.astype(np.float64) / input_gain).astype(np.float32)
    audio, overs_gain_db = normalize_overs(audio)
    peak = peak_dbfs(audio)
    record.update(
        overs_gain_db=round(overs_gain_db, 3),
        gain_db=round(overs_gain_db - 20.0 * math.log10(input_gain), 3),
        peak_dbfs=round(peak, 3) if math.isfinite(peak) else None,
    )
    return audio, record
