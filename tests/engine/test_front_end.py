"""AudioLDM's front end (normalisation + TacotronSTFT log-mel) against AudioLDM's own code.

The reference values come from ``audioldm`` 0.1.1's ``read_wav_file`` and ``TacotronSTFT``
themselves (``fixtures/make_audioldm_mel_ref.py`` imports both files and wrote
``fixtures/audioldm_mel_ref.npz``); the signals are regenerated from the same function.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamsampler.engine.families import LogMelFrontEnd, SilentInputError, load_model
from tests.engine.fixtures.make_audioldm_mel_ref import (
    CASES,
    FIXTURE,
    HOP,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    reference_signal,
)


@pytest.mark.parametrize(("name", "seconds", "frames", "peak"), CASES)
def test_log_mel_equals_audioldm_reference(name: str, seconds: float, frames: int,
                                           peak: float) -> None:
    """Full-size settings (64 bands, n_fft 1024, hop 160): equal within float32 rounding."""
    reference = np.load(FIXTURE)[name]
    front = LogMelFrontEnd(SAMPLE_RATE, N_MELS, HOP, N_FFT)
    wave = front.normalize(torch.from_numpy(reference_signal(seconds, peak))[None], frames)
    ours = front(wave, frames)[0, 0].numpy()
    assert ours.shape == reference.shape == (frames, N_MELS)
    diff = np.abs(ours - reference)
    # the largest differences sit at the log floor (mel ~1e-5), where float32 rounding of a
    # tiny magnitude is a large relative error; everywhere else the two agree to ~1e-5 nats
    assert diff.max() < 1e-4 and diff.mean() < 2e-6, (diff.max(), diff.mean())
    assert diff[reference > np.log(1e-4)].max() < 2e-5


def test_normalisation_is_level_and_offset_invariant() -> None:
    """As the reference: the mean is removed and the peak set to 0.5 whatever the input level."""
    front = LogMelFrontEnd(SAMPLE_RATE, N_MELS, HOP, N_FFT)
    quiet = torch.from_numpy(reference_signal(0.5, -20.0))[None]
    loud = 10.0 ** (14 / 20) * quiet + 0.1
    a, b = front.normalize(quiet, 32), front.normalize(loud, 32)
    assert float(a.abs().max()) == pytest.approx(0.5, abs=1e-6)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    with pytest.raises(SilentInputError):
        front.normalize(torch.full((1, 4000), 0.25), 32)


def test_input_gain_is_the_front_ends_gain() -> None:
    model = load_model("tiny", "cpu")
    wave = torch.from_numpy(reference_signal(0.5, -20.0))
    gain = model.input_gain(wave, 0.5)
    normalised = model.front_end.normalize(wave[None], model.frames(0.5))[0]
    centred = (wave.double() - wave.double().mean()).float()
    torch.testing.assert_close(normalised[: wave.shape[0]], centred * gain, atol=1e-6, rtol=0)
