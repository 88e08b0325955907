"""Measures of the mini world that do not use the model: an instrument classifier and a pitch
estimate, fitted and checked on rendered clips.

- :class:`InstrumentClassifier`: MFCC statistics (mean and standard deviation of 20 MFCCs and of
  their deltas, Logan 2000; librosa) into a standardised multinomial logistic regression
  (scikit-learn). Fitted on one seed's rendering, reported on another seed's (other velocities
  and note lengths).
- :func:`estimate_pitch`: the median f0 of the voiced frames of probabilistic YIN (Mauch & Dixon
  2014, ``librosa.pyin``), as a fractional MIDI note number.

Both read audio at :data:`dreamsampler.mini.data.SAMPLE_RATE`; every clip is normalised to peak 0.5
first (the level the model's front end uses), so a clip's loudness does not change the answer.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import librosa
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from dreamsampler.fsutil import atomic_write
from dreamsampler.mini import data

PYIN_FMIN = 50.0  # Hz, below G1 (the lowest rendered note is C2, 65.4 Hz)
PYIN_FMAX = 2100.0  # Hz, above C7
PYIN_HOP = 256  # samples


def _normalise(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, np.float32)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return audio * (0.5 / peak) if peak > 0 else audio


def features(audio: np.ndarray, sample_rate: int = data.SAMPLE_RATE) -> np.ndarray:
    """MFCC statistics of one mono clip ``(samples,)``: 80 values (mean and std of 20 MFCCs
    and of their first differences over frames)."""
    mfcc = librosa.feature.mfcc(y=_normalise(audio), sr=sample_rate, n_mfcc=20, n_fft=1024,
                                hop_length=160, n_mels=64)
    delta = np.diff(mfcc, axis=1)
    return np.concatenate([mfcc.mean(1), mfcc.std(1), delta.mean(1), delta.std(1)])


@dataclasses.dataclass
class InstrumentClassifier:
    """Instrument family of a clip, from MFCC statistics (see the module docstring)."""

    pipeline: Pipeline
    classes: tuple[str, ...]

    @classmethod
    def fit(cls, audio: np.ndarray, labels: list[str]) -> InstrumentClassifier:
        """Fit on clips ``(n, samples)`` with their family names."""
        x = np.stack([features(a) for a in audio])
        pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
        pipe.fit(x, labels)
        return cls(pipe, tuple(pipe.classes_))

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """``(n, len(classes))`` class probabilities of clips ``(n, samples)``."""
        return self.pipeline.predict_proba(np.stack([features(a) for a in audio]))

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """The mini world's audio embedding of clips ``(n, samples)``: their standardised MFCC
        statistics ``(n, 80)`` (the classifier's input space; cosine similarity in it stands in
        for CLAP's in the papers' CLAP-A and SIM_AA)."""
        scaler = self.pipeline.steps[0][1]
        return scaler.transform(np.stack([features(a) for a in audio]))

    def predict(self, audio: np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.probabilities(audio).argmax(1)]

    def save(self, path: Path) -> None:
        atomic_write(path, lambda fh: fh.write(pickle.dumps(self)))

    @classmethod
    def load(cls, path: Path) -> InstrumentClassifier:
        return pickle.loads(Path(path).read_bytes())


def pitch_track(audio: np.ndarray, sample_rate: int = data.SAMPLE_RATE) -> np.ndarray:
    """pYIN's f0 per frame (hop 256 samples, 16 ms at 16 kHz) as fractional MIDI notes, NaN where
    a frame is unvoiced: ``(frames,)``."""
    f0, voiced, _ = librosa.pyin(_normalise(audio), fmin=PYIN_FMIN, fmax=PYIN_FMAX,
                                 sr=sample_rate, frame_length=2048, hop_length=PYIN_HOP)
    f0 = np.where(voiced & np.isfinite(f0), f0, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return librosa.hz_to_midi(f0)


def estimate_pitch(audio: np.ndarray, sample_rate: int = data.SAMPLE_RATE) -> float | None:
    """Median pYIN f0 of the voiced frames as a fractional MIDI note, or ``None`` when no frame
    is voiced."""
    track = pitch_track(audio, sample_rate)
    track = track[np.isfinite(track)]
    return float(np.median(track)) if track.size else None


def contour_kept(reference: np.ndarray, output: np.ndarray, tolerance: float = 1.0,
                 sample_rate: int = data.SAMPLE_RATE) -> float | None:
    """Share of the reference's voiced pYIN frames where ``output`` is voiced within
    ``tolerance`` semitones of the reference's f0 (both clips ``(samples,)``, same start);
    ``None`` when the reference has no voiced frame."""
    ref, out = pitch_track(reference, sample_rate), pitch_track(output, sample_rate)
    n = min(len(ref), len(out))
    ref, out = ref[:n], out[:n]
    voiced = np.isfinite(ref)
    if not voiced.any():
        return None
    with np.errstate(invalid="ignore"):
        return float(np.mean(np.abs(out[voiced] - ref[voiced]) <= tolerance))


def onsets(audio: np.ndarray, sample_rate: int = data.SAMPLE_RATE) -> np.ndarray:
    """Onset times in seconds (librosa's spectral-flux onset detector, hop 160 samples)."""
    return librosa.onset.onset_detect(y=_normalise(audio), sr=sample_rate, hop_length=160,
                                      units="time")


def onset_f_measure(reference: np.ndarray, estimated: np.ndarray, window: float = 0.05) -> float:
    """F-measure of onset times (seconds) within ``window`` s (mir_eval's MIREX onset metric)."""
    import mir_eval.onset

    if len(reference) == 0 and len(estimated) == 0:
        return 1.0
    if len(reference) == 0 or len(estimated) == 0:
        return 0.0
    return float(mir_eval.onset.f_measure(np.asarray(reference), np.asarray(estimated),
                                          window=window)[0])


def pitch_correct(estimate: float | None, named: int, tolerance: float = 1.0) -> bool:
    """The estimate lies within ``tolerance`` semitones of the named MIDI note."""
    return estimate is not None and abs(estimate - named) <= tolerance


def fit_classifier(cache: Path | None = None, seed: int = 0) -> InstrumentClassifier:
    """The classifier fitted on the ``seed`` rendering of every family (trained and held out),
    cached as ``classifier-<seed>.pkl`` next to the rendered set."""
    directory = (cache or data.default_cache()) / f"seed{seed}"
    path = directory / f"classifier-{seed}.pkl"
    data.build_dataset(directory, seed=seed)  # a no-op when the same set is there
    if path.is_file() and path.stat().st_mtime >= (directory / "clips.json").stat().st_mtime:
        return InstrumentClassifier.load(path)
    audio, clips = data.load_dataset(directory)
    classifier = InstrumentClassifier.fit(audio, [c.instrument for c in clips])
    classifier.save(path)  # atomically (another process may be loading it)
    return classifier


def report(cache: Path | None = None, fit_seed: int = 0, test_seed: int = 1,
           variants: int = 2) -> dict[str, object]:
    """Accuracy of both measures on the ``test_seed`` rendering (``variants`` clips per caption,
    other velocities and lengths than the fitting set's).

    Returns:
        ``{"classifier_accuracy", "per_family", "pitch_within_semitone", "pitch_clips",
        "confusions"}``.
    """
    classifier = fit_classifier(cache, fit_seed)
    directory = (cache or data.default_cache()) / f"test-seed{test_seed}"
    data.build_dataset(directory, seed=test_seed, variants=variants)
    audio, clips = data.load_dataset(directory)
    predicted = classifier.predict(audio)
    truth = [c.instrument for c in clips]
    per_family = {name: float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)
                                       if t == name])) for name in data.INSTRUMENTS}
    notes = [(a, c) for a, c in zip(audio, clips, strict=True) if c.kind == "note"]
    hits = [pitch_correct(estimate_pitch(a), c.notes[0]) for a, c in notes]
    confusions: dict[str, int] = {}
    for p, t in zip(predicted, truth, strict=True):
        if p != t:
            confusions[f"{t}->{p}"] = confusions.get(f"{t}->{p}", 0) + 1
    return {"classifier_accuracy": float(np.mean([p == t for p, t in zip(predicted, truth,
                                                                          strict=True)])),
            "clips": len(clips), "per_family": per_family,
            "pitch_within_semitone": float(np.mean(hits)), "pitch_clips": len(hits),
            "confusions": confusions}


if __name__ == "__main__":
    import json

    print(json.dumps(report(), indent=2))
