"""Extend and repaint with the original kept (issue 18), over real UDP on ``tiny:sa3``:
``/continue side after|before|both`` and ``/inpaint`` hold the input's own samples, read back
from the written file, bit for bit outside the crossfades; the new audio is the model's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dreamsampler.client import OscClient
from dreamsampler.engine.extend import crossfade_samples
from tests.conftest import make_config, run_server, write_pluck

SR = 44100


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OscClient, np.ndarray]]:
    tmp = tmp_path_factory.mktemp("extend")
    config = make_config(tmp, **{"model.id": "tiny:sa3", "output.sample_rate": "native",
                                 "output.subtype": "FLOAT", "defaults.num_inference_steps": 2})
    for running in run_server(config):
        path = write_pluck(running.input_dir / "pluck.wav", seconds=1.5)
        source, rate = sf.read(path, dtype="float32", always_2d=True)
        assert rate == SR
        with running.client() as client:
            yield client, source.T


def _run(client: OscClient, *message: object) -> tuple[np.ndarray, dict]:
    replies = client.request(*message, timeout=60)
    assert replies[0].address == "/queued" and replies[-1].address == "/done", replies
    path = Path(replies[-1].args[2])
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == SR
    return audio.T, json.loads(path.with_suffix(".json").read_text())


@pytest.mark.parametrize("side", ["after", "before", "both"])
def test_continue_keeps_the_input_bit_exact(rig: tuple[OscClient, np.ndarray],
                                            side: str) -> None:
    client, source = rig
    out, record = _run(client, "/continue", "pluck.wav", 0.5, "more plucks", "side", side,
                       "seed", 3)
    m, new = source.shape[1], round(0.5 * SR)
    fade = crossfade_samples(m, SR)
    assert out.shape[1] == m + new * (2 if side == "both" else 1)
    offset = 0 if side == "after" else new
    assert record["side"] == side and record["kept_input"] is True
    assert record["input_offset_s"] == offset / SR
    lo = fade if side != "after" else 0  # the crossfades lie inside the kept part
    hi = m - fade if side != "before" else m
    np.testing.assert_array_equal(out[:, offset + lo:offset + hi], source[:, lo:hi])
    # the new audio is the model's, not a copy or silence
    new_part = out[:, :new] if side != "after" else out[:, m:]
    assert np.abs(new_part).max() > 1e-4
    # the crossfade leaves the seam between the new audio and the input continuous-ish: the
    # jump there is no larger than the largest jump inside the new audio
    seam = offset if side != "after" else m
    jump = np.abs(out[:, seam] - out[:, seam - 1]).max()
    assert jump <= np.abs(np.diff(new_part, axis=1)).max() + np.abs(np.diff(source)).max()


def test_inpaint_keeps_the_input_outside_the_mask(rig: tuple[OscClient, np.ndarray]) -> None:
    client, source = rig
    out, _ = _run(client, "/inpaint", "pluck.wav", 0.5, 1.0, "a snare", "seed", 6)
    a, b, m = round(0.5 * SR), round(1.0 * SR), source.shape[1]
    fade = crossfade_samples(m, SR)
    assert out.shape == source.shape
    np.testing.assert_array_equal(out[:, :a - fade], source[:, :a - fade])
    np.testing.assert_array_equal(out[:, b + fade:], source[:, b + fade:])
    assert not np.array_equal(out[:, a:b], source[:, a:b])


def test_bad_side_fails_before_queuing(rig: tuple[OscClient, np.ndarray]) -> None:
    client, _ = rig
    replies = client.request("/continue", "pluck.wav", 0.5, "x", "side", "middle")
    assert [r.address for r in replies] == ["/fail"] and "side" in replies[0].args[1]


def test_continue_bars_at_the_bpm_given(rig: tuple[OscClient, np.ndarray]) -> None:
    client, source = rig
    out, record = _run(client, "/continue", "pluck.wav", 1, "more", "unit", "bars", "bpm",
                       120.0, "key", "A minor", "side", "before")
    assert record["continuation"] == pytest.approx(2.0)  # one 4/4 bar at 120 BPM
    assert out.shape[1] == source.shape[1] + 2 * SR
    assert record["bpm"] == 120 and record["key"] == "A minor"
    assert record["prompt_sent"] == "more, 120 BPM, A minor"  # SA3 takes the tags
