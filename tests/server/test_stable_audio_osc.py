"""Every generating OSC command on the Stable Audio families, over real UDP: /gen, /transfer,
/continue (seconds and bars), /inpaint and a blend of two LoRA concepts on ``tiny:sa3``; /gen,
/transfer and /inpaint → /fail on ``tiny:stable-audio`` (Open 1.0 cannot inpaint).

Each written clip is checked against the engine: the same request through
:func:`~dreamsampler.engine.sampler.sample` on an independently loaded model gives the audio in
the file (written at the model's rate as 32-bit float, so the comparison is exact up to float
rounding), not just "a file exists".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr

from dreamsampler.client import OscClient, Reply
from dreamsampler.engine.concepts import ConceptManager
from dreamsampler.engine.families import ModelFamily, load_model
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample
from dreamsampler.engine.training.trainer import TrainSettings, train
from tests.conftest import RunningServer, make_config, run_server, write_pluck
from tests.engine import toy_world as toy

STEPS = 2
BPM = 150.0  # one 4/4 bar = 1.6 s


@dataclass
class Rig:
    """A server on one family, a client, and an independently loaded reference model."""

    server: RunningServer
    client: OscClient
    reference: ModelFamily
    source: Path  # a 1.5 s stereo pluck in the input folder


def _train_loras(concepts_dir: Path) -> None:
    """Two small LoRA concepts on tiny:sa3 (a few steps: enough to change the output)."""
    clips = [soxr.resample(c, toy.SR, 44100).astype(np.float32) for c in toy.concept_clips(3)]
    for name, seed in (("plk", 0), ("twang", 1)):
        train(load_model("tiny:sa3", "cpu"),
              TrainSettings(method="lora", name=name, lr=5e-2, steps=3, rank=4, seed=seed,
                            checkpoint_every=0), clips, concepts_dir)


def _rig(model_id: str, tmp: Path, concepts: Path) -> Iterator[Rig]:
    config = make_config(tmp, **{"model.id": model_id, "output.sample_rate": "native",
                                 "output.subtype": "FLOAT", "concepts_dir": str(concepts),
                                 "defaults.num_inference_steps": STEPS})
    reference = load_model(model_id, "cpu")
    for running in run_server(config):
        source = write_pluck(running.input_dir / "pluck.wav", seconds=1.5)
        with running.client() as client:
            assert client.request("/tempo", BPM)[-1].address == "/done"
            yield Rig(running, client, reference, source)


@pytest.fixture(scope="module")
def sa3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    concepts = tmp_path_factory.mktemp("concepts")
    _train_loras(concepts)
    rig_iter = _rig("tiny:sa3", tmp_path_factory.mktemp("sa3"), concepts)
    rig = next(rig_iter)
    manager = ConceptManager(rig.reference, concepts)
    manager.load("plk")
    manager.load("twang")
    yield rig
    next(rig_iter, None)


@pytest.fixture(scope="module")
def open1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    yield from _rig("tiny:stable-audio", tmp_path_factory.mktemp("open1"),
                    tmp_path_factory.mktemp("concepts-open1"))


def _done(replies: list[Reply], address: str) -> Path:
    assert replies[0].address == "/queued", replies
    final = replies[-1]
    assert final.address == "/done" and final.args[0] == address, replies
    assert final.args[1] == replies[0].args[0]
    return Path(final.args[2])


def _request(rig: Rig, *message: Any) -> tuple[Path, dict[str, Any]]:
    path = _done(rig.client.request(*message, timeout=60), message[0])
    return path, json.loads(path.with_suffix(".json").read_text())


def _reference(rig: Rig, **fields: Any) -> np.ndarray:
    """The engine's audio for the request, the values not given being the server's defaults."""
    d = rig.server.app.config.defaults
    defaults = {"num_inference_steps": STEPS, "seed": d.seed, "guidance_scale": d.guidance_scale,
                "scheduler": d.scheduler, "negative_prompt": d.negative_prompt}
    return sample(rig.reference, GenerationRequest(**{**defaults, **fields})).audio


def _assert_file_is(path: Path, expected: np.ndarray, rate: int) -> None:
    audio, file_rate = sf.read(path, dtype="float32", always_2d=True)
    assert file_rate == rate and sf.info(path).subtype == "FLOAT"
    assert audio.T.shape == expected.shape
    np.testing.assert_allclose(audio.T, expected, atol=1e-6)


def test_sa3_gen_and_transfer_equal_the_engine(sa3: Rig) -> None:
    path, record = _request(sa3, "/gen", "warm pad", "seed", 5, "duration", 1.0)
    assert record["model"] == "tiny:sa3"
    _assert_file_is(path, _reference(sa3, prompt="warm pad", seed=5, duration=1.0), 44100)
    path, record = _request(sa3, "/transfer", "pluck.wav", "a dub chord", "strength", 0.6,
                            "seed", 2)
    assert record["strength"] == 0.6 and record["input_path"] == str(sa3.source)
    # no duration given: as long as the 1.5 s input (the engine's duration=None)
    assert record["duration"] == 1.5
    _assert_file_is(path, _reference(sa3, prompt="a dub chord", seed=2, duration=None,
                                      input_path=sa3.source, strength=0.6), 44100)


def test_sa3_continue_in_seconds_and_bars(sa3: Rig) -> None:
    path, record = _request(sa3, "/continue", "pluck.wav", 0.5, "more", "plucks", "seed", 3)
    assert record["continuation"] == 0.5 and record["duration"] == 2.0
    expected = _reference(sa3, prompt="more plucks", seed=3, input_path=sa3.source,
                          continuation=0.5)
    assert expected.shape == (2, 2 * 44100)
    _assert_file_is(path, expected, 44100)
    # a clip the server made is an input too: continue it by one bar at 150 BPM (1.6 s);
    # without a prompt, the session's
    assert sa3.client.request("/param/prompt", "a", "drone")[-1].address == "/done"
    path2, record2 = _request(sa3, "/continue", path.name, 1, "seed", 4, "unit", "bars")
    assert record2["input_path"] == str(path) and record2["continuation"] == pytest.approx(1.6)
    assert record2["prompt"] == "a drone"
    expected2 = _reference(sa3, prompt="a drone", seed=4, input_path=path, continuation=1.6)
    _assert_file_is(path2, expected2, 44100)
    assert sf.info(path2).frames == round(3.6 * 44100)


def test_sa3_inpaint_seconds_and_bars(sa3: Rig) -> None:
    path, record = _request(sa3, "/inpaint", "pluck.wav", 0.5, 1.0, "a snare", "seed", 6)
    assert (record["mask_start"], record["mask_end"], record["duration"]) == (0.5, 1.0, 1.5)
    expected = _reference(sa3, prompt="a snare", seed=6, input_path=sa3.source, duration=1.5,
                          mask_start=0.5, mask_end=1.0)
    _assert_file_is(path, expected, 44100)
    # in bars, past the input's end: the output reaches the region's end (1.25 bars = 2 s)
    path, record = _request(sa3, "/inpaint", "pluck.wav", 0.25, 1.25, "a snare", "unit",
                            "bars", "seed", 6)
    assert record["mask_start"] == pytest.approx(0.4) and record["duration"] == pytest.approx(2)
    expected = _reference(sa3, prompt="a snare", seed=6, input_path=sa3.source, duration=2.0,
                          mask_start=0.4, mask_end=2.0)
    _assert_file_is(path, expected, 44100)


def test_sa3_lora_blend_equals_the_engine(sa3: Rig) -> None:
    for name in ("plk", "twang"):
        assert sa3.client.request("/concept/load", name)[-1].address == "/done"
    path, record = _request(sa3, "/gen", "a pluck", "seed", 1, "lora", "plk", 0.7,
                            "lora", "twang", 0.5)
    assert record["loras"] == [["plk", 0.7], ["twang", 0.5]]
    blend = _reference(sa3, prompt="a pluck", seed=1, duration=1.0,
                       loras=(("plk", 0.7), ("twang", 0.5)))
    _assert_file_is(path, blend, 44100)
    base = _reference(sa3, prompt="a pluck", seed=1, duration=1.0)
    solo = _reference(sa3, prompt="a pluck", seed=1, duration=1.0, loras=(("plk", 0.7),))
    assert np.abs(blend - base).max() > 1e-5 and np.abs(blend - solo).max() > 1e-5
    # the blend works on every generating command
    path, record = _request(sa3, "/inpaint", "pluck.wav", 0.5, 1.0, "x", "lora", "twang", 1.0)
    _assert_file_is(path, _reference(sa3, prompt="x", input_path=sa3.source, duration=1.5,
                                     mask_start=0.5, mask_end=1.0, loras=(("twang", 1.0),),
                                     seed=record["seed"]),  # a fresh seed, recorded
                    44100)


@pytest.mark.parametrize(("message", "text"), [
    (("/gen", "x", "lora", "nope", 1.0), "concept 'nope' is not loaded"),
    (("/gen", "x", "lora", "plk", "y"), "lora weight: expected float"),
    (("/gen", "x", "lora", "plk", 1, "lora", "plk", 0.5), "each concept once"),
    (("/continue", "pluck.wav", 1, "x", "unit", "beats"),
     "unit: 'beats' is not one of seconds, bars; did you mean 'bars'?"),
    (("/continue", "/etc/hostname", 1, "x"), "outside the input folders"),
    (("/continue", "../outside.wav", 1, "x"), "no such file"),
    (("/continue", "pluck.wav", 9, "x"), "more than the limit"),
    (("/inpaint", "pluck.wav", 1.0, 0.5, "x"), "start < end"),
    (("/inpaint", "missing.wav", 0, 1, "x"), "no such file"),
])
def test_sa3_bad_region_and_lora_fail(sa3: Rig, message: tuple[Any, ...], text: str) -> None:
    assert sa3.client.request("/concept/load", "plk")[-1].address == "/done"
    write_pluck(sa3.server.input_dir.parent / "outside.wav")  # a real clip outside the folders
    reply = sa3.client.request(*message, timeout=10)[-1]
    assert reply.address == "/fail" and reply.args[0] == message[0], reply
    assert text in reply.args[1], reply


def test_open1_gen_transfer_and_inpaint_fails(open1: Rig) -> None:
    path, record = _request(open1, "/gen", "warm pad", "seed", 5, "duration", 1.0)
    assert record["model"] == "tiny:stable-audio"
    _assert_file_is(path, _reference(open1, prompt="warm pad", seed=5, duration=1.0), 44100)
    path, record = _request(open1, "/transfer", "pluck.wav", "a dub chord", "strength", 0.6)
    _assert_file_is(path, _reference(open1, prompt="a dub chord", duration=1.5,
                                     input_path=open1.source, strength=0.6,
                                     seed=record["seed"]), 44100)  # a fresh seed, recorded
    # refused before queuing (issue 18): the family cannot do any side
    for message, what in ((("/inpaint", "pluck.wav", 0.5, 1.0, "x"), "inpaint a clip"),
                          (("/continue", "pluck.wav", 1, "x"), "continue a clip (side after)"),
                          (("/continue", "pluck.wav", 1, "x", "side", "before"),
                           "continue a clip (side before)")):
        replies = open1.client.request(*message, timeout=60)
        assert [r.address for r in replies] == ["/fail"], replies
        assert replies[0].args[0] == message[0]
        assert replies[0].args[1].startswith(f"model family 'stable-audio' cannot {what}"), \
            replies
