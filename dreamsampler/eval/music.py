"""Musical descriptors of clips and their agreement with a reference set.

Tempo (BPM), key (Krumhansl–Schmuckler), integrated loudness (ITU-R BS.1770-4 / EBU R 128),
chroma similarity and melody (f0) similarity.

References:
    - Ellis, "Beat Tracking by Dynamic Programming", J. New Music Research 36(1), 2007
      (librosa's ``beat_track``).
    - Krumhansl, "Cognitive Foundations of Musical Pitch", OUP 1990 (key profiles of
      Krumhansl & Kessler 1982); key-finding by profile correlation after Krumhansl & Schmuckler.
    - ITU-R BS.1770-4 (2015) and EBU Tech 3341 (2016): integrated loudness (pyloudnorm).
    - Mauch & Dixon, "pYIN: A Fundamental Frequency Estimator Using Probabilistic Threshold
      Distributions", ICASSP 2014 (``librosa.pyin``).
    - Raffel et al., "mir_eval", ISMIR 2014: raw pitch / raw chroma accuracy (50 cents).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import librosa
import numpy as np
import pyloudnorm
from numpy.typing import ArrayLike, NDArray

from dreamsampler.eval.audio import (
    AudioError,
    SilentAudioError,
    check_audio,
    resample,
)

__all__ = [
    "ANALYSIS_SR",
    "KEY_NAMES",
    "ClipFeatures",
    "Delta",
    "F0Similarity",
    "F0Tracker",
    "FeatureDeltas",
    "KeyEstimate",
    "chroma_similarity",
    "clip_features",
    "estimate_bpm",
    "estimate_key",
    "f0_similarity",
    "feature_deltas",
    "integrated_loudness",
    "parse_key",
    "pyin_tracker",
]

#: Rate (Hz) at which tempo, key, chroma and f0 are analysed.
ANALYSIS_SR = 22050
#: Pitch-class names used in key labels (index = semitones above C).
KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_ALIASES = {
    "Db": 1,
    "D#": 3,
    "Gb": 6,
    "G#": 8,
    "A#": 10,
    "Cb": 11,
    "B#": 0,
    "E#": 5,
    "Fb": 4,
}
# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

MIN_BPM_SECONDS = 3.0
MIN_KEY_SECONDS = 0.5
MIN_LOUDNESS_SECONDS = 0.4  # one BS.1770 gating block


def _analysis_mono(audio: ArrayLike, sr: int, min_seconds: float, name: str) -> NDArray[np.float32]:
    arr = check_audio(audio, sr, min_seconds, name)
    mono = arr.mean(axis=0)
    if sr != ANALYSIS_SR:
        mono = resample(mono, sr, ANALYSIS_SR)
    return mono.astype(np.float32)


def estimate_bpm(audio: ArrayLike, sr: int, start_bpm: float = 120.0, name: str = "audio") -> float:
    """Estimate tempo in BPM.

    librosa's dynamic-programming beat tracker (onset envelope, hop 256 at 22.05 kHz) finds the
    beats; the tempo is then refined as ``60 / slope`` of a least-squares line through the beat
    times against their beat numbers (beat numbers are counted from the median inter-beat
    interval, so a skipped beat does not bend the line). This removes the lag quantisation of
    the tempogram estimate (e.g. 117.5 instead of 120 BPM at hop 512).

    Args:
        audio: shape ``(samples,)`` or ``(channels, samples)``; channels are averaged.
        sr: sample rate in Hz.
        start_bpm: prior tempo of the beat tracker, BPM.
        name: label used in error messages.

    Returns:
        Tempo in BPM.

    Raises:
        AudioTooShortError: shorter than 3 s; SilentAudioError: silent; AudioError: bad layout
        or fewer than 4 beats found.

    Source: Ellis 2007 (librosa ``beat.beat_track``).
    """
    y = _analysis_mono(audio, sr, MIN_BPM_SECONDS, name)
    hop = 256
    onset = librosa.onset.onset_strength(y=y, sr=ANALYSIS_SR, hop_length=hop)
    tempo, beats = librosa.beat.beat_track(
        onset_envelope=onset, sr=ANALYSIS_SR, hop_length=hop, start_bpm=start_bpm, units="time"
    )
    coarse = float(np.atleast_1d(tempo)[0])
    times = np.asarray(beats, dtype=np.float64)
    if times.size < 4 or coarse <= 0:
        raise AudioError(f"{name}: found {times.size} beats; need at least 4 to estimate tempo")
    ibi = float(np.median(np.diff(times)))
    index = np.round((times - times[0]) / ibi)
    slope = float(np.polyfit(index, times, 1)[0])
    refined = 60.0 / slope if slope > 0 else coarse
    # trust the refinement only when it agrees with the tracker's own tempo to within 8 %
    return refined if abs(refined - coarse) <= 0.08 * coarse else coarse


@dataclass(frozen=True)
class KeyEstimate:
    """A key estimate.

    Attributes:
        tonic: pitch class 0–11 (0 = C).
        mode: ``"major"`` or ``"minor"``.
        score: Pearson correlation of the clip's mean chroma with the winning profile.
    """

    tonic: int
    mode: Literal["major", "minor"]
    score: float

    @property
    def label(self) -> str:
        """E.g. ``"C major"``, ``"F# minor"``."""
        return f"{KEY_NAMES[self.tonic]} {self.mode}"

    def same_key(self, other: KeyEstimate) -> bool:
        """True when tonic and mode agree (enharmonic spellings are equal)."""
        return self.tonic == other.tonic and self.mode == other.mode


def parse_key(label: str) -> tuple[int, Literal["major", "minor"]]:
    """Parse ``"C major"``, ``"Db major"``, ``"A minor"``, ``"f# min"`` to (pitch class, mode).

    Raises:
        ValueError: unknown tonic or mode.
    """
    parts = label.strip().split()
    if len(parts) != 2:
        raise ValueError(f"key label must look like 'C major' or 'A minor'; got {label!r}")
    tonic_s = parts[0][0].upper() + parts[0][1:]
    if tonic_s in KEY_NAMES:
        tonic = KEY_NAMES.index(tonic_s)
    elif tonic_s in _ALIASES:
        tonic = _ALIASES[tonic_s]
    else:
        raise ValueError(f"unknown tonic {parts[0]!r} in {label!r}")
    mode_s = parts[1].lower()
    if mode_s in ("major", "maj"):
        return tonic, "major"
    if mode_s in ("minor", "min"):
        return tonic, "minor"
    raise ValueError(f"unknown mode {parts[1]!r} in {label!r}")


def estimate_key(audio: ArrayLike, sr: int, name: str = "audio") -> KeyEstimate:
    """Estimate the key with the Krumhansl–Schmuckler algorithm.

    The time-averaged constant-Q chroma of the clip is correlated with the 24 rotations of the
    Krumhansl–Kessler major and minor profiles; the best correlation wins.

    Args:
        audio: shape ``(samples,)`` or ``(channels, samples)``; channels are averaged.
        sr: sample rate in Hz.
        name: label used in error messages.

    Returns:
        :class:`KeyEstimate` (``.label`` gives e.g. ``"A minor"``).

    Raises:
        AudioTooShortError: shorter than 0.5 s; SilentAudioError: silent; AudioError: no pitched
        content (flat chroma).

    Source: Krumhansl 1990; chroma via librosa ``feature.chroma_cqt``.
    """
    y = _analysis_mono(audio, sr, MIN_KEY_SECONDS, name)
    chroma = librosa.feature.chroma_cqt(y=y, sr=ANALYSIS_SR)
    profile = chroma.mean(axis=1)
    if float(np.ptp(profile)) < 1e-6:
        raise AudioError(f"{name}: flat chroma, no key can be estimated")
    best: KeyEstimate | None = None
    for mode, template in (("major", _KK_MAJOR), ("minor", _KK_MINOR)):
        for tonic in range(12):
            r = float(np.corrcoef(profile, np.roll(template, tonic))[0, 1])
            if best is None or r > best.score:
                best = KeyEstimate(tonic=tonic, mode=mode, score=r)  # type: ignore[arg-type]
    assert best is not None
    return best


def integrated_loudness(audio: ArrayLike, sr: int, name: str = "audio") -> float:
    """Integrated loudness per ITU-R BS.1770-4, in LUFS (pyloudnorm).

    Channels are measured as given with unit weights (L, R, C); a mono array is one channel,
    so a mono tone reads 3 dB lower than the same tone on both stereo channels. EBU Tech 3341
    case 1 (stereo 1 kHz sine, −23 dBFS peak per channel) measures −23.0 LUFS.

    Args:
        audio: shape ``(samples,)`` or ``(channels, samples)``, full scale ±1.
        sr: sample rate in Hz.
        name: label used in error messages.

    Returns:
        Loudness in LUFS.

    Raises:
        AudioTooShortError: shorter than one 0.4 s gating block; SilentAudioError: silent or
        entirely below the −70 LUFS absolute gate.

    Source: ITU-R BS.1770-4; EBU R 128 / Tech 3341; Steinmetz & Reiss, "pyloudnorm", AES 2021.
    """
    arr = check_audio(audio, sr, MIN_LOUDNESS_SECONDS, name)
    meter = pyloudnorm.Meter(sr)
    data = arr[0] if arr.shape[0] == 1 else arr.T
    lufs = float(meter.integrated_loudness(data))
    if not np.isfinite(lufs):
        raise SilentAudioError(f"{name}: below the −70 LUFS gate, loudness undefined")
    return lufs


def chroma_similarity(
    a: ArrayLike,
    b: ArrayLike,
    sr: int,
    mode: Literal["frames", "global"] = "frames",
    sr_b: int | None = None,
) -> float:
    """Harmonic similarity of two clips from constant-Q chroma.

    Args:
        a: first clip, ``(samples,)`` or ``(channels, samples)``.
        b: second clip, same layout.
        sr: sample rate of ``a`` in Hz (and of ``b`` unless ``sr_b`` is given).
        mode: ``"frames"``: mean cosine of time-aligned chroma frames (truncated to the shorter
            clip; frames where either clip is silent are skipped): harmony *and* timing.
            ``"global"``: cosine of the time-averaged chroma vectors: pitch-class content only.
        sr_b: sample rate of ``b`` in Hz, if different.

    Returns:
        Cosine similarity in ``[0, 1]`` (chroma is non-negative).

    Raises:
        AudioTooShortError / SilentAudioError / AudioError: for either clip, or no frame where
        both clips sound.
    """
    ya = _analysis_mono(a, sr, MIN_KEY_SECONDS, "a")
    yb = _analysis_mono(b, sr_b or sr, MIN_KEY_SECONDS, "b")
    ca = librosa.feature.chroma_cqt(y=ya, sr=ANALYSIS_SR)
    cb = librosa.feature.chroma_cqt(y=yb, sr=ANALYSIS_SR)
    if mode == "global":
        va, vb = ca.mean(axis=1), cb.mean(axis=1)
        return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb) + 1e-12))
    n = min(ca.shape[1], cb.shape[1])
    ca, cb = ca[:, :n], cb[:, :n]
    hop = 512
    ra = librosa.feature.rms(y=ya, hop_length=hop)[0, :n]
    rb = librosa.feature.rms(y=yb, hop_length=hop)[0, :n]
    floor = 10 ** (-60 / 20)
    keep = (ra > floor * ra.max()) & (rb > floor * rb.max())
    if not np.any(keep):
        raise AudioError("no frame where both clips sound")
    num = (ca[:, keep] * cb[:, keep]).sum(axis=0)
    den = np.linalg.norm(ca[:, keep], axis=0) * np.linalg.norm(cb[:, keep], axis=0) + 1e-12
    return float(np.mean(num / den))


@dataclass(frozen=True)
class F0Similarity:
    """Melody agreement of two clips, frame by frame.

    Attributes:
        raw_pitch_accuracy: share of frames voiced in both where the f0s differ by at most
            ``tolerance_cents``.
        raw_chroma_accuracy: the same after folding octave errors.
        voicing_agreement: share of frames where both agree on voiced/unvoiced.
        n_frames: frames compared (the shorter clip's).
        n_voiced: frames voiced in both.
    """

    raw_pitch_accuracy: float
    raw_chroma_accuracy: float
    voicing_agreement: float
    n_frames: int
    n_voiced: int


F0Tracker = Callable[[NDArray[np.float32], int], tuple[NDArray[np.float64], NDArray[np.bool_]]]


def pyin_tracker(
    fmin: float = 65.4, fmax: float = 1046.5, frame_length: int = 2048, hop_length: int = 512
) -> F0Tracker:
    """Build an f0 tracker around ``librosa.pyin``: ``(y, sr) -> (f0 Hz, voiced flags)``.

    ``fmin``/``fmax`` are in Hz (defaults C2–C6); frame and hop lengths in samples.
    """

    def track(y: NDArray[np.float32], sr: int) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        f0, voiced, _ = librosa.pyin(
            y, fmin=fmin, fmax=fmax, sr=sr, frame_length=frame_length, hop_length=hop_length
        )
        return np.nan_to_num(np.asarray(f0, dtype=np.float64)), np.asarray(voiced, dtype=bool)

    return track


def f0_similarity(
    a: ArrayLike,
    b: ArrayLike,
    sr: int,
    tolerance_cents: float = 50.0,
    tracker: F0Tracker | None = None,
    sr_b: int | None = None,
) -> F0Similarity:
    """Melody similarity from frame-wise f0 (pYIN by default).

    Both clips are resampled to 22.05 kHz and tracked with the same tracker; frames are
    compared up to the shorter clip. ``tracker`` may wrap another estimator (e.g. torchcrepe,
    which is optional and not required here) with the signature ``(y, sr) -> (f0_hz, voiced)``.

    Args:
        a: first clip, ``(samples,)`` or ``(channels, samples)``.
        b: second clip, same layout.
        sr: sample rate of ``a`` in Hz (and of ``b`` unless ``sr_b`` is given).
        tolerance_cents: pitch tolerance in cents (mir_eval uses 50).
        tracker: f0 tracker; default :func:`pyin_tracker` (C2–C6).
        sr_b: sample rate of ``b`` in Hz, if different.

    Returns:
        :class:`F0Similarity`.

    Raises:
        AudioTooShortError / SilentAudioError / AudioError: for either clip, or no frame voiced
        in both clips.

    Source: Mauch & Dixon 2014 (pYIN); Raffel et al. 2014 (mir_eval melody metrics).
    """
    track = tracker or pyin_tracker()
    ya = _analysis_mono(a, sr, MIN_KEY_SECONDS, "a")
    yb = _analysis_mono(b, sr_b or sr, MIN_KEY_SECONDS, "b")
    fa, va = track(ya, ANALYSIS_SR)
    fb, vb = track(yb, ANALYSIS_SR)
    n = min(len(fa), len(fb))
    fa, va, fb, vb = fa[:n], va[:n], fb[:n], vb[:n]
    both = va & vb & (fa > 0) & (fb > 0)
    if not np.any(both):
        raise AudioError("no frame is voiced in both clips; melody similarity undefined")
    cents = 1200.0 * np.log2(fa[both] / fb[both])
    folded = np.abs(cents - 1200.0 * np.round(cents / 1200.0))
    return F0Similarity(
        raw_pitch_accuracy=float(np.mean(np.abs(cents) <= tolerance_cents)),
        raw_chroma_accuracy=float(np.mean(folded <= tolerance_cents)),
        voicing_agreement=float(np.mean(va == vb)),
        n_frames=int(n),
        n_voiced=int(both.sum()),
    )


@dataclass
class ClipFeatures:
    """Tempo, key and loudness of one clip; a feature that failed is ``None`` with its error.

    Attributes:
        bpm: tempo in BPM.
        key: key estimate.
        lufs: integrated loudness in LUFS.
        errors: feature name (``"bpm"``, ``"key"``, ``"lufs"``) → error message.
        name: label of the clip (e.g. its file name).
    """

    bpm: float | None = None
    key: KeyEstimate | None = None
    lufs: float | None = None
    errors: dict[str, str] = field(default_factory=dict)
    name: str = "audio"


def clip_features(audio: ArrayLike, sr: int, name: str = "audio") -> ClipFeatures:
    """Compute BPM, key and LUFS of a clip, recording errors instead of raising.

    Args:
        audio: shape ``(samples,)`` or ``(channels, samples)``.
        sr: sample rate in Hz.
        name: label used in error messages.

    Returns:
        :class:`ClipFeatures`.
    """
    out = ClipFeatures(name=name)
    try:
        out.bpm = estimate_bpm(audio, sr, name=name)
    except AudioError as exc:
        out.errors["bpm"] = str(exc)
    try:
        out.key = estimate_key(audio, sr, name=name)
    except AudioError as exc:
        out.errors["key"] = str(exc)
    try:
        out.lufs = integrated_loudness(audio, sr, name=name)
    except AudioError as exc:
        out.errors["lufs"] = str(exc)
    return out


@dataclass(frozen=True)
class Delta:
    """One aggregate comparison: value (or ``None``), the n it rests on, and the error if any."""

    value: float | None
    n: int
    error: str | None = None


@dataclass(frozen=True)
class FeatureDeltas:
    """Agreement of generated clips with the reference (training) clips.

    Attributes:
        bpm_delta: mean over generated clips of ``|bpm - reference BPM|`` (BPM); the reference
            BPM is the median of the reference clips' tempi.
        key_match: share of generated clips whose key equals the reference key (the most
            common reference key; ties go to the higher summed correlation).
        lufs_delta: mean generated LUFS minus mean reference LUFS (LU; signed: > 0 is louder).
        reference_bpm: the reference tempo (BPM) or ``None``.
        reference_key: the reference key label or ``None``.
        reference_lufs: mean reference loudness (LUFS) or ``None``.
        generated_bpm / generated_key / generated_lufs: the same summaries of the generated set
            (median BPM, most common key, mean LUFS).
    """

    bpm_delta: Delta
    key_match: Delta
    lufs_delta: Delta
    reference_bpm: Delta
    reference_key: str | None
    reference_lufs: Delta
    generated_bpm: Delta
    generated_key: tuple[str | None, int]
    generated_lufs: Delta


def _majority_key(keys: Sequence[KeyEstimate]) -> KeyEstimate | None:
    if not keys:
        return None
    counts = Counter((k.tonic, k.mode) for k in keys)
    scores: dict[tuple[int, str], float] = {}
    for k in keys:
        scores[(k.tonic, k.mode)] = scores.get((k.tonic, k.mode), 0.0) + k.score
    top = max(counts.items(), key=lambda kv: (kv[1], scores[kv[0]]))[0]
    return KeyEstimate(tonic=top[0], mode=top[1], score=scores[top] / counts[top])  # type: ignore[arg-type]


def _missing(what: str, feats: Sequence[ClipFeatures], attr: str) -> str:
    errs = [e if e.startswith(f.name) else f"{f.name}: {e}"
            for f in feats if (e := f.errors.get(attr)) is not None]
    detail = "; ".join(errs[:3]) + (" ..." if len(errs) > 3 else "")
    base = f"no {what} clip has a {attr} value" if feats else f"no {what} clips"
    return base + (f" ({detail})" if detail else "")


def _summarise(
    values: Sequence[float],
    agg: Callable[[Sequence[float]], float],
    what: str,
    feats: Sequence[ClipFeatures],
    attr: str,
) -> Delta:
    if not values:
        return Delta(None, 0, _missing(what, feats, attr))
    return Delta(float(agg(values)), len(values))


def _compare(
    gen: Delta,
    ref: Delta,
    values: Sequence[float],
    fn: Callable[[NDArray[np.float64], float], float],
) -> Delta:
    if ref.value is None:
        return Delta(None, len(values), ref.error)
    if gen.value is None:
        return Delta(None, 0, gen.error)
    return Delta(float(fn(np.asarray(values, dtype=np.float64), ref.value)), len(values))


def feature_deltas(
    generated: Sequence[ClipFeatures], reference: Sequence[ClipFeatures]
) -> FeatureDeltas:
    """Compare tempo, key and loudness of generated clips with the reference clips.

    Args:
        generated: features of the generated clips.
        reference: features of the reference (training) clips.

    Returns:
        :class:`FeatureDeltas`; each ``Delta`` carries the number of generated clips it rests on,
        or ``value=None`` and an error when no clip on one side had the feature.
    """
    g_bpm = [f.bpm for f in generated if f.bpm is not None]
    r_bpm = [f.bpm for f in reference if f.bpm is not None]
    g_lufs = [f.lufs for f in generated if f.lufs is not None]
    r_lufs = [f.lufs for f in reference if f.lufs is not None]
    g_keys = [f.key for f in generated if f.key is not None]
    r_keys = [f.key for f in reference if f.key is not None]

    gen_bpm = _summarise(g_bpm, np.median, "generated", generated, "bpm")
    ref_bpm = _summarise(r_bpm, np.median, "reference", reference, "bpm")
    gen_lufs = _summarise(g_lufs, np.mean, "generated", generated, "lufs")
    ref_lufs = _summarise(r_lufs, np.mean, "reference", reference, "lufs")
    ref_key = _majority_key(r_keys)
    gen_key = _majority_key(g_keys)

    if ref_key is None:
        key_match = Delta(None, len(g_keys), _missing("reference", reference, "key"))
    elif not g_keys:
        key_match = Delta(None, 0, _missing("generated", generated, "key"))
    else:
        key_match = Delta(float(np.mean([k.same_key(ref_key) for k in g_keys])), len(g_keys))

    return FeatureDeltas(
        bpm_delta=_compare(gen_bpm, ref_bpm, g_bpm, lambda g, r: float(np.mean(np.abs(g - r)))),
        key_match=key_match,
        lufs_delta=_compare(gen_lufs, ref_lufs, g_lufs, lambda g, r: float(np.mean(g)) - r),
        reference_bpm=ref_bpm,
        reference_key=ref_key.label if ref_key else None,
        reference_lufs=ref_lufs,
        generated_bpm=gen_bpm,
        generated_key=(gen_key.label if gen_key else None, len(g_keys)),
        generated_lufs=gen_lufs,
    )
