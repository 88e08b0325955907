"""Tempo and key tags in the prompt for families trained on such captions (issue 18): Stable
Audio's conditioning sees "<prompt>, 120 BPM, A minor" (the same audio as writing the tags into
the prompt yourself), a tag already in the prompt is not added twice, and MusicLDM gets nothing."""

from __future__ import annotations

import numpy as np
import pytest

from dreamsampler.engine.conform import tag_prompt
from dreamsampler.engine.families import load_model
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample


@pytest.mark.parametrize(("prompt", "bpm", "key", "expected"), [
    ("dub chords", 120.0, "A minor", "dub chords, 120 BPM, A minor"),
    ("dub chords", 97.5, None, "dub chords, 97.5 BPM"),
    ("dub chords", None, "f#m", "dub chords, F# minor"),
    ("128 BPM tech house drum loop", 120.0, "Am", "128 BPM tech house drum loop, A minor"),
    ("techno in Bb major, 124bpm", 120.0, "A minor", "techno in Bb major, 124bpm"),
    ("a pad", None, None, "a pad"),
])
def test_tag_prompt_never_twice(prompt: str, bpm: float | None, key: str | None,
                                expected: str) -> None:
    assert tag_prompt(prompt, bpm, key) == expected


def _req(**fields: object) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "dub chords", "num_inference_steps": 2, "seed": 1,
                                "duration": 0.5, **fields})


def test_stable_audio_conditions_on_the_tags() -> None:
    model = load_model("tiny:stable-audio", "cpu")
    tagged = sample(model, _req(bpm=120.0, key="A minor"))
    assert tagged.record["prompt"] == "dub chords"
    assert tagged.record["prompt_sent"] == "dub chords, 120 BPM, A minor"
    written = sample(model, _req(prompt="dub chords, 120 BPM, A minor"))
    np.testing.assert_array_equal(tagged.audio, written.audio)
    plain = sample(model, _req())
    assert not np.array_equal(tagged.audio, plain.audio)


def test_musicldm_takes_no_tags() -> None:
    model = load_model("tiny", "cpu")
    tagged = sample(model, _req(bpm=120.0, key="A minor"))
    assert "prompt_sent" not in tagged.record
    np.testing.assert_array_equal(tagged.audio, sample(model, _req()).audio)
