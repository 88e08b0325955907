"""Half precision and torch.compile on the tiny models (CPU), against float32 eager.

Only the denoiser runs in half precision; text encoders, VAE, vocoder and the latents between steps
stay float32 (:class:`~dreamsampler.engine.families.ModelFamily`). Tolerances, as a share of the
float32 clip's peak, from one measurement on 2 CPU cores (2 steps, 1 s): bfloat16 ≤ 1.8e-2,
float16 ≤ 2.4e-3; the tests allow 5e-2 and 1e-2 (bfloat16 keeps 8 mantissa bits, float16 11).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from dreamsampler.engine.families import load_model
from dreamsampler.engine.level import NonFiniteAudioError
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample

TOLERANCE = {"bfloat16": 5e-2, "float16": 1e-2}

REQUEST = GenerationRequest(prompt="warm bass", negative_prompt="noise", seed=11,
                            num_inference_steps=2, duration=1.0)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore", message="There are modules")  # diffusers' cast notice


@pytest.mark.parametrize("name", ["tiny", "tiny:audioldm2", "tiny:stable-audio", "tiny:sa3"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_denoiser_close_to_float32(name: str, dtype: str) -> None:
    reference = sample(load_model(name, "cpu"), REQUEST).audio
    model = load_model(name, "cpu", dtype)
    for key, module in model.components.items():
        if isinstance(module, torch.nn.Module):
            wanted = getattr(torch, dtype) if key == model.denoiser_key else torch.float32
            assert next(module.parameters()).dtype == wanted, key
    half = sample(model, REQUEST)
    assert half.audio.dtype == np.float32 and half.audio.shape == reference.shape
    peak = float(np.abs(reference).max())
    error = float(np.abs(half.audio - reference).max())
    assert 0.0 < error <= TOLERANCE[dtype] * peak, (error, peak)


def test_half_precision_overflow_is_refused() -> None:
    """A float16 denoiser that overflows: the NaN/inf clip is refused, never returned."""
    model = load_model("tiny", "cpu", "float16")
    with torch.no_grad():
        model.components["unet"].conv_out.weight.fill_(6e4)
    with pytest.raises(NonFiniteAudioError):
        sample(model, REQUEST)


def test_compiled_denoiser_equals_eager() -> None:
    """``compile=True`` compiles the denoiser in place (``nn.Module.compile``) and the clip
    matches eager float32 to 1e-5. The test compiles with ``backend="eager"`` (Dynamo's graph
    capture without Inductor's code generation, which takes minutes on 2 cores): Inductor was
    checked by hand, 1.3e-7 … 4.8e-7 max difference on the five tiny families
    (docs/performance.md)."""
    eager = sample(load_model("tiny:sa3", "cpu"), REQUEST).audio
    model = load_model("tiny:sa3", "cpu")
    model.compile(backend="eager")
    transformer = model.components["transformer"]
    assert transformer._compiled_call_impl is not None
    assert hasattr(transformer, "set_adapters")  # still the class with LoRA methods
    np.testing.assert_allclose(sample(model, REQUEST).audio, eager, rtol=0, atol=1e-5)
