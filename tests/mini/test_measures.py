"""The measures against known answers: pYIN on synthetic tones of known frequency, the classifier
on another seed's rendering (other velocities and note lengths)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dreamsampler.mini import data
from dreamsampler.mini.measures import estimate_pitch, features, pitch_correct


@pytest.mark.parametrize("midi", [40, 57, 69, 84])
def test_pitch_of_a_harmonic_tone(midi: int) -> None:
    t = np.arange(data.SAMPLE_RATE) / data.SAMPLE_RATE
    f0 = data.hz(midi)
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5) if k * f0 < 7000)
    estimate = estimate_pitch(0.1 * tone)
    assert estimate is not None and abs(estimate - midi) < 0.1
    assert pitch_correct(estimate, midi) and not pitch_correct(estimate, midi + 2)


def test_silence_has_no_pitch() -> None:
    assert estimate_pitch(np.zeros(data.SAMPLE_RATE, np.float32)) is None


def test_features_ignore_the_level() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(data.SAMPLE_RATE).astype(np.float32)
    np.testing.assert_allclose(features(0.01 * x), features(0.9 * x), rtol=1e-4, atol=1e-3)


def test_classifier_recognises_another_seeds_rendering(classifier: object,
                                                       tmp_path: Path) -> None:
    families = tuple(data.INSTRUMENTS[n] for n in ("piano", "flute", "drums", "bass", "marimba"))
    other = data.build_dataset(tmp_path, seed=7, variants=1, instruments=families)
    audio, clips = data.load_dataset(other)
    predicted = classifier.predict(audio)  # type: ignore[attr-defined]
    accuracy = np.mean([p == c.instrument for p, c in zip(predicted, clips, strict=True)])
    assert accuracy >= 0.8, accuracy


def test_contour_and_onsets_of_a_phrase_against_changed_copies() -> None:
    """What the style-transfer curve reads: a phrase keeps its own contour and onsets (1.0), a
    copy a whole tone up keeps its onsets but not its contour, a copy 100 ms late keeps neither
    its onsets and loses part of its contour."""
    from dreamsampler.mini.measures import contour_kept, onset_f_measure, onsets

    piano = data.INSTRUMENTS["piano"]
    clip = data.phrase(piano, ("C4", "E4", "G4"))
    up = data.phrase(piano, ("D4", "F#4", "A4"))
    audio, higher = data.render_instrument(piano, [clip, up])
    late = np.concatenate([np.zeros(1600, np.float32), audio[:-1600]])
    reference = onsets(audio)
    assert len(reference) == 3
    assert contour_kept(audio, audio) == 1.0 and onset_f_measure(reference, reference) == 1.0
    assert contour_kept(audio, higher) < 0.1
    assert onset_f_measure(reference, onsets(higher)) == 1.0
    assert onset_f_measure(reference, onsets(late)) == 0.0
    assert contour_kept(audio, late) < 0.8
