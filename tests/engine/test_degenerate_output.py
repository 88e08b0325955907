"""A finite but absurd output is refused, not delivered as a normalised DC clip (issue 22,
item 8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamsampler.engine.families import load_model
from dreamsampler.engine.level import DegenerateAudioError, check_degenerate, finish
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample


def test_a_decoder_that_outputs_a_huge_constant_is_refused() -> None:
    model = load_model("tiny:stable-audio", "cpu")
    decoder = model.components["vae"].decoder  # Oobleck's decoder ends without a tanh
    # a broken last layer: the output is one huge constant, whatever the latents
    decoder.register_forward_hook(lambda module, args, out: torch.full_like(out, 1e30))
    request = GenerationRequest("x", seed=1, num_inference_steps=2, duration=0.5)
    with pytest.raises(DegenerateAudioError, match="peaks at 1e\\+30"):
        sample(model, request)


@pytest.mark.parametrize("audio, message", [
    (np.full((2, 100), 1e30, np.float32), "peaks at"),
    (np.full((2, 100), 3.0, np.float32), "one constant value"),
    (np.full((2, 100), -0.2, np.float32), "one constant value"),
    (np.r_[np.zeros(99), 2e4].astype(np.float32), "peaks at"),
])
def test_degenerate_audio(audio: np.ndarray, message: str) -> None:
    with pytest.raises(DegenerateAudioError, match=message):
        finish(audio, "the model's output")


def test_real_signals_pass() -> None:
    t = np.arange(4800) / 48000
    check_degenerate(np.zeros((2, 10), np.float32), "silence")  # silence is a clip
    loud, record = finish((50 * np.sin(2 * np.pi * 100 * t)).astype(np.float32), "hot")
    assert record["overs_gain_db"] == pytest.approx(-20 * np.log10(50) - 1, abs=1e-3)
    assert np.abs(loud).max() == pytest.approx(10 ** (-1 / 20), rel=1e-5)
