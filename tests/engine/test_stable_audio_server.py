"""The existing OSC commands on the Stable Audio tiny models, through the real server: a stereo
44.1 kHz WAV lands in the output folder, equal to the engine's own result for the same request."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dreamsampler.engine.families import load_model
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample
from tests.conftest import make_config, run_server


@pytest.mark.parametrize("model_id", ["tiny:stable-audio", "tiny:sa3"])
def test_gen_and_transfer_over_osc_write_stereo_44k(tmp_path: Path, model_id: str) -> None:
    config = make_config(tmp_path, **{"model.id": model_id, "output.subtype": "FLOAT"})
    (tmp_path / "in").mkdir(parents=True, exist_ok=True)
    source = tmp_path / "in" / "source.wav"
    t = np.arange(44100) / 44100
    sf.write(source, np.stack([0.3 * np.sin(2 * np.pi * 220 * t)] * 2, axis=1), 44100,
             subtype="FLOAT")
    model = load_model(model_id, "cpu")
    for server in run_server(config):
        with server.client() as c:
            reply = c.request("/gen", "warm pad", "seed", 3, "steps", 4, "duration", 1.0,
                              timeout=60)[-1]
            assert reply.address == "/done", reply
            heard, rate = sf.read(reply.args[2], dtype="float32")
            assert rate == 44100 and heard.shape == (44100, 2)
            ours = sample(model, GenerationRequest(prompt="warm pad", seed=3,
                                                   num_inference_steps=4, duration=1.0,
                                                   guidance_scale=config.defaults.guidance_scale))
            np.testing.assert_allclose(heard.T, ours.audio, atol=1e-6)
            reply = c.request("/transfer", str(source), "dusty keys", "seed", 3, "steps", 4,
                              "duration", 1.0, "strength", 0.3, timeout=60)[-1]
            assert reply.address == "/done", reply
            heard, rate = sf.read(reply.args[2], dtype="float32")
            assert rate == 44100 and heard.shape == (44100, 2)
