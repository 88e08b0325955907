"""Takes (``count``) and same-shape batches: one batched call through the model equals each seed
run alone, to float tolerance (batched matmuls round differently in the last bits).

Tolerance: the audio of a take differs from the same seed alone by at most ``ATOL``; measured
on 2 CPU cores (float32): 1.1e-7 … 5.4e-7 on the five tiny families (``/tmp`` script in the
i21 report), so 1e-5 leaves room for other CPU kernels (AVX2 vs AVX-512)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dreamsampler.engine.families import ModelFamily, load_model
from dreamsampler.engine.request import GenerationRequest, RequestError
from dreamsampler.engine.sampler import sample, sample_batch, sample_takes
from tests.conftest import write_pluck

ATOL = 1e-5


def _req(**kw: Any) -> GenerationRequest:
    base: dict[str, Any] = {"prompt": "warm analog bass", "negative_prompt": "noise", "seed": 7,
                            "num_inference_steps": 2, "duration": 1.0}
    base.update(kw)
    return GenerationRequest(**base)


def _spy_start(model: ModelFamily, monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Record the noise every call of the family's start receives (the real start runs)."""
    seen: list[torch.Tensor] = []
    real = model.start

    def spy(scheduler: Any, request: GenerationRequest, clean: Any, noise: torch.Tensor) -> Any:
        seen.append(noise.clone())
        return real(scheduler, request, clean, noise)

    monkeypatch.setattr(model, "start", spy)
    return seen


@pytest.mark.parametrize("name", ["tiny", "tiny:audioldm2", "tiny:sa3", "tiny:stable-audio"])
def test_takes_equal_each_seed_alone(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_model(name, "cpu")
    noise = _spy_start(model, monkeypatch)
    request = _req(count=3)
    takes = sample_takes(model, request)
    batched_noise = noise.pop()
    assert batched_noise.shape[0] == 3 and len(takes) == 3
    for k, take in enumerate(takes):
        alone = sample(model, _req(seed=7 + k))
        # each take starts from exactly the noise its seed gives alone (one generator per take)
        torch.testing.assert_close(batched_noise[k:k + 1], noise.pop(), rtol=0, atol=0)
        assert take.audio.shape == alone.audio.shape
        np.testing.assert_allclose(take.audio, alone.audio, rtol=0, atol=ATOL)
        assert np.abs(take.audio).max() > 1e-3
        assert take.record["seed"] == 7 + k
        assert (take.record["take"], take.record["takes"], take.record["batch"]) == (k + 1, 3, 3)
    # takes differ from each other (distinct seeds)
    assert np.abs(takes[0].audio - takes[1].audio).max() > 1e-3


def test_batch_of_two_requests_with_their_own_prompts_and_counts() -> None:
    """Jobs of one shape batch together: each row keeps its prompt, negative prompt and seed."""
    model = load_model("tiny", "cpu")
    a = _req(prompt="dark pad", seed=3, count=2)
    b = _req(prompt="bright bell", negative_prompt="", seed=40)
    got = sample_batch(model, [a, b])
    assert [len(g) for g in got] == [2, 1]
    for result, alone in zip([*got[0], *got[1]],
                             [_req(prompt="dark pad", seed=3), _req(prompt="dark pad", seed=4),
                              _req(prompt="bright bell", negative_prompt="", seed=40)],
                             strict=True):
        np.testing.assert_allclose(result.audio, sample(model, alone).audio, rtol=0, atol=ATOL)
        assert result.record["prompt"] == alone.prompt and result.record["batch"] == 3
    with pytest.raises(RequestError, match="share"):
        sample_batch(model, [a, _req(num_inference_steps=3)])


def test_transfer_and_continuation_takes(tmp_path: Path) -> None:
    """SDEdit takes (MusicLDM) and continuation takes (SA3) equal their seeds alone."""
    tiny = load_model("tiny", "cpu")
    path = write_pluck(tmp_path / "in.wav", sample_rate=16000)
    transfer = _req(input_path=path, strength=0.6, count=2)
    for k, take in enumerate(sample_takes(tiny, transfer)):
        alone = sample(tiny, _req(input_path=path, strength=0.6, seed=7 + k))
        np.testing.assert_allclose(take.audio, alone.audio, rtol=0, atol=ATOL)
        assert take.record["input_gain_db"] == alone.record["input_gain_db"]
    sa3 = load_model("tiny:sa3", "cpu")
    stereo = write_pluck(tmp_path / "in44.wav", seconds=0.6)
    cont = _req(input_path=stereo, continuation=0.5, duration=10.0, count=2)
    takes = sample_takes(sa3, cont)
    for k, take in enumerate(takes):
        alone = sample(sa3, _req(input_path=stereo, continuation=0.5, duration=10.0, seed=7 + k))
        np.testing.assert_allclose(take.audio, alone.audio, rtol=0, atol=ATOL)
        assert take.record["duration"] == pytest.approx(1.1)


def test_count_validation() -> None:
    for bad in (0, 9, True):
        with pytest.raises(RequestError, match="count"):
            _req(count=bad)
    with pytest.raises(RequestError, match="seed"):
        _req(seed=2**31 - 2, count=3)  # the last take would pass the 31-bit seed range
    with pytest.raises(RequestError, match="sample_takes"):
        sample(load_model("tiny", "cpu"), _req(count=2))
    assert [r.seed for r in _req(count=3).takes()] == [7, 8, 9]
    assert "count" not in _req().to_record() and _req(count=2).to_record()["count"] == 2


def test_takes_keep_issue_18s_side_input_and_tags(tmp_path: Path) -> None:
    """Takes of a continuation on both sides (issue 18) equal each seed alone, and every take
    keeps the input's own samples where the input sits; a bpm/key request's tags reach every
    take's prompt on a family trained on them (Stable Audio)."""
    from dreamsampler.engine.extend import read_input

    sa3 = load_model("tiny:sa3", "cpu")
    stereo = write_pluck(tmp_path / "in44.wav", seconds=0.6)
    both = _req(input_path=stereo, continuation=0.5, duration=10.0, side="both", count=2)
    original = read_input(stereo, sa3.sample_rate, 2)
    start = round(0.5 * sa3.sample_rate)
    inner = slice(start + 2000, start + original.shape[1] - 2000)  # away from the crossfades
    for k, take in enumerate(sample_takes(sa3, both)):
        alone = sample(sa3, _req(input_path=stereo, continuation=0.5, duration=10.0,
                                 side="both", seed=7 + k))
        np.testing.assert_allclose(take.audio, alone.audio, rtol=0, atol=ATOL)
        assert take.record["duration"] == pytest.approx(1.6)
        assert take.record["input_offset_s"] == 0.5 and take.record["kept_input"]
        np.testing.assert_array_equal(take.audio[:, inner],
                                      original[:, inner.start - start:inner.stop - start])
    tagged = sample_takes(sa3, _req(bpm=120.0, key="A minor", count=2))
    assert [t.record["prompt_sent"] for t in tagged] == ["warm analog bass, 120 BPM, A minor"] * 2
