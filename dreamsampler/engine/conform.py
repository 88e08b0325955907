"""Conform a clip to a tempo, a key and a whole number of bars: loops that lock to the grid.

Audio arrays are ``(channels, samples)`` float at ``sr`` Hz. :func:`conform` does, in order:

1. **Beats, downbeats, tempo** of the input: :func:`dreamsampler.engine.training.beats.track_beats`
   (librosa's dynamic-programming beat tracker, Ellis 2007, on a log-mel flux at 22.05 kHz; the
   downbeat is the most accented beat phase; the tempo a least-squares fit of the beat times).
   The estimate is folded by octaves (×2, ×½) to the one nearest the target tempo, so a loop
   tracked in half time is not stretched to double length.
2. **Key** (only when a key is asked for): Krumhansl–Schmuckler profile correlation on
   constant-Q chroma (:func:`dreamsampler.eval.music.estimate_key`; Krumhansl 1990).
3. **Time-stretch and pitch-shift in one pass with Rubber Band** (Breakfast Quay's library,
   GPL: called as the ``rubberband`` program through ``pyrubberband``, so no GPL code is linked):
   tempo ratio ``bpm / estimate`` and the semitones to the nearest transposition of the key
   (``-5..+6``; see :func:`key_shift` for major/minor).
4. **Bars**: the first downbeat (mapped through the stretch and refined to the sample as the
   largest 10 ms energy step within ±60 ms) is moved back by whole bars to the earliest
   one inside the clip; the output is exactly ``round(bars * beats_per_bar * 60 / bpm * sr)``
   samples from there (:func:`dreamsampler.engine.bars.bar_samples`). Material is taken
   circularly when the clip is shorter (a loop continues into its own start).
5. **Seam**: the audio that follows the loop's end is crossfaded (linear, ``crossfade_ms``) into
   its head, so playing the loop around joins sample ``n - 1`` to what followed it in the
   source: no click at the wrap.

The result's record (for the clip's sidecar) holds what was asked, the estimates before and
after, the tempo ratio, the semitones, the start and the tools' versions.
"""

from __future__ import annotations

import functools
import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dreamsampler.engine.bars import bar_samples

Mode = Literal["major", "minor"]
PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_KEY_RE = re.compile(
    r"^\s*([A-Ga-g])\s*(#|b|♯|♭|sharp|flat)?\s*(major|minor|maj|min|m|M)?\s*$")
_METER_DENOMINATORS = (1, 2, 4, 8, 16)
ANALYSIS_SR = 22050
"""Rate (Hz) the beat tracker runs at."""
MAX_SEMITONES = 6


class ConformError(ValueError):
    """The clip cannot be conformed (no beat found, too short, bad key/meter, no Rubber Band)."""


class RubberBandMissingError(ConformError):
    """The ``rubberband`` program (Debian/Ubuntu ``rubberband-cli``) is not installed."""


@dataclass(frozen=True)
class Key:
    """A key: ``tonic`` pitch class 0–11 (0 = C) and ``mode``."""

    tonic: int
    mode: Mode

    @property
    def label(self) -> str:
        """``"F# minor"``, ``"Bb major"``."""
        return f"{PITCH_CLASSES[self.tonic]} {self.mode}"

    def relative(self) -> Key:
        """The relative key (same pitch set, other mode): A minor ↔ C major."""
        if self.mode == "minor":
            return Key((self.tonic + 3) % 12, "major")
        return Key((self.tonic - 3) % 12, "minor")


def parse_key(text: str) -> Key:
    """Parse a key name strictly: a tonic letter A–G, an optional ``#``/``b``, an optional mode
    ``major``/``maj``/``M`` or ``minor``/``min``/``m`` (no mode = major).

    ``"F# minor"``, ``"Bb major"``, ``"Am"``, ``"C"``, ``"eb min"`` are keys.

    Raises:
        ConformError: anything else (the message shows the expected form).
    """
    match = _KEY_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ConformError(f"key {text!r}: expected a tonic A-G, an optional # or b and major "
                           "or minor, e.g. 'F# minor', 'Bb major', 'Am'")
    letter, accidental, mode = match.groups()
    tonic = _LETTERS[letter.upper()]
    if accidental in ("#", "♯", "sharp"):
        tonic += 1
    elif accidental in ("b", "♭", "flat"):
        tonic -= 1
    minor = mode is not None and (mode.lower() in ("minor", "min") or mode == "m")
    return Key(tonic % 12, "minor" if minor else "major")


def parse_meter(text: str) -> tuple[int, int]:
    """``"4/4"`` → ``(4, 4)``. The bar must be a whole number of quarter notes (the tempo
    counts quarter notes, as Live and MIDI clock do): 3/4, 6/8, 12/8, 2/2 are fine, 7/8 is not.

    Raises:
        ConformError: not ``N/D`` with D in 1, 2, 4, 8, 16 and N in 1..32, or a bar that is
            not a whole number of quarter notes.
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if match is None:
        raise ConformError(f"meter {text!r}: expected N/D, e.g. 4/4, 3/4, 6/8")
    num, den = int(match.group(1)), int(match.group(2))
    if den not in _METER_DENOMINATORS or not 1 <= num <= 32:
        raise ConformError(f"meter {text!r}: numerator 1..32, denominator 1, 2, 4, 8 or 16")
    if (num * 4) % den:
        raise ConformError(f"meter {text!r}: a bar must be a whole number of quarter notes "
                           "(the tempo counts quarter notes)")
    return num, den


def beats_per_bar(meter: tuple[int, int]) -> int:
    """Quarter-note beats in one bar of ``meter``: 4/4 → 4, 6/8 → 3."""
    num, den = meter
    return num * 4 // den


def key_shift(estimate: Key, target: Key) -> tuple[int, Key]:
    """Semitones that move ``estimate`` to the nearest transposition of ``target``.

    Transposition keeps the mode, so when the modes differ the clip moves to the target's
    *relative* key, which has the same pitch set (a major clip asked for G minor goes to
    Bb major; a minor clip asked for A major goes to F# minor). The interval is folded to
    ``-5..+6`` semitones.

    Returns:
        ``(semitones, key the clip lands in)``.
    """
    goal = target if target.mode == estimate.mode else target.relative()
    semitones = (goal.tonic - estimate.tonic + 5) % 12 - 5
    return semitones, goal


def fold_tempo(estimate: float, target: float) -> float:
    """The octave of ``estimate`` (×2ⁿ, n in -2..2) nearest ``target`` on a log scale (a beat
    tracker often locks to half or double time)."""
    return min((estimate * 2.0**n for n in range(-2, 3)),
               key=lambda c: abs(math.log(target / c)))


@functools.cache
def tool_versions() -> dict[str, str]:
    """Versions of the tools :func:`conform` uses (for the sidecar)."""
    import librosa

    versions = {"librosa": librosa.__version__}
    try:
        from importlib.metadata import version

        versions["pyrubberband"] = version("pyrubberband")
    except Exception:
        versions["pyrubberband"] = "missing"
    program = shutil.which("rubberband")
    if program is None:
        versions["rubberband"] = "missing"
    else:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=10)
        versions["rubberband"] = (out.stdout or out.stderr).strip().splitlines()[-1]
    return versions


def stretch(audio: np.ndarray, sr: int, tempo_ratio: float, semitones: float) -> np.ndarray:
    """Time-stretch by ``tempo_ratio`` (> 1 is faster, shorter) and pitch-shift by
    ``semitones`` in one Rubber Band pass (``rubberband --tempo X --pitch S``, default R2
    engine), through ``pyrubberband``.

    pyrubberband hands Rubber Band a 16-bit WAV, so the audio goes in at a -6 dBFS peak and
    comes back rescaled (headroom for the pitch shifter's overshoot; noise floor about -90 dB
    below the peak).

    Args:
        audio: ``(channels, samples)`` float.
        sr: Hz.
        tempo_ratio: target tempo / source tempo.
        semitones: pitch shift.

    Returns:
        ``(channels, about samples / tempo_ratio)`` float32.

    Raises:
        RubberBandMissingError: ``pyrubberband`` or the ``rubberband`` program is missing.
    """
    try:
        import pyrubberband
    except ImportError:
        raise RubberBandMissingError("conform needs the pyrubberband package (pip install "
                                     "pyrubberband)") from None
    if shutil.which("rubberband") is None:
        raise RubberBandMissingError("conform needs the rubberband program (Debian/Ubuntu: apt "
                                     "install rubberband-cli; macOS: brew install rubberband)")
    peak = float(np.max(np.abs(audio)))
    if peak == 0.0:
        return np.zeros((audio.shape[0], round(audio.shape[1] / tempo_ratio)), np.float32)
    gain = 0.5 / peak
    y = np.ascontiguousarray((audio * gain).T, dtype=np.float32)
    if abs(tempo_ratio - 1.0) < 1e-9:
        out = pyrubberband.pitch_shift(y, sr, semitones)
    else:
        out = pyrubberband.time_stretch(y, sr, tempo_ratio, rbargs={"--pitch": semitones})
    return (np.asarray(out, dtype=np.float32).reshape(len(out), -1).T / gain).astype(np.float32)


def _refine_onset(mono: np.ndarray, sr: int, at: float, window_s: float = 0.06,
                  step_s: float = 0.01) -> int:
    """The sample near ``at`` (samples), within ±``window_s`` s, where the energy of the next
    ``step_s`` s rises most (in dB) over the energy of the previous ``step_s`` s: the attack
    (a beat tracker's beat lags its attack by a frame or two of its onset envelope)."""
    w = max(1, round(step_s * sr))
    lo = max(w, int(at - window_s * sr))
    hi = min(mono.shape[0] - w, int(at + window_s * sr))
    if hi <= lo:
        return round(min(max(at, 0), mono.shape[0] - 1))
    c = np.concatenate([[0.0], np.cumsum(mono.astype(np.float64) ** 2)])
    p = np.arange(lo, hi, 8)
    after, before = c[p + w] - c[p], c[p] - c[p - w]
    eps = 1e-6 * float(after.max()) + 1e-20
    return int(p[np.argmax(np.log(after + eps) - np.log(before + eps))])


def _analyse(audio: np.ndarray, sr: int, bpb: int, start_bpm: float) -> Any:
    """:class:`~dreamsampler.engine.training.beats.BeatInfo` of ``audio``. Raises
    ``ConformError`` when no steady beat is found."""
    import soxr

    from dreamsampler.engine.training.beats import BeatTrackingError, track_beats

    mono = audio.mean(axis=0)
    if sr != ANALYSIS_SR:
        mono = soxr.resample(mono, sr, ANALYSIS_SR)
    try:
        return track_beats(mono.astype(np.float32), ANALYSIS_SR, beats_per_bar=bpb,
                           start_bpm=start_bpm)
    except BeatTrackingError as exc:
        raise ConformError(f"no steady beat found: {exc}") from None


def _estimate_key(audio: np.ndarray, sr: int) -> Key:
    from dreamsampler.eval.audio import AudioError
    from dreamsampler.eval.music import estimate_key

    try:
        est = estimate_key(audio, sr)
    except AudioError as exc:
        raise ConformError(f"no key found: {exc}") from None
    return Key(est.tonic, est.mode)


def conform(
    audio: np.ndarray,
    sr: int,
    *,
    bpm: float | None = None,
    key: Key | str | None = None,
    bars: int | None = None,
    meter: tuple[int, int] | str = (4, 4),
    crossfade_ms: float = 10.0,
    measure_after: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Conform ``audio`` to ``bpm``, ``key`` and exactly ``bars`` bars (see the module doc).

    Args:
        audio: ``(channels, samples)`` (or mono 1-D) float at ``sr`` Hz, at least 2 beats long.
        sr: sample rate, Hz (the output's too).
        bpm: target tempo in quarter-note BPM; None keeps the estimated tempo (no stretch).
        key: target key (a :class:`Key` or a name for :func:`parse_key`); None keeps the pitch.
        bars: bars in the output; None: as many whole bars as the stretched clip holds (>= 1).
        meter: ``(numerator, denominator)`` or ``"N/D"``; sets the beats per bar.
        crossfade_ms: the loop seam's crossfade (tail into head), ms.
        measure_after: estimate tempo (and key) of the result again for the record.

    Returns:
        ``(audio, record)``: float32 ``(channels, bar_samples(bars, bpm, sr, beats))`` and a
        JSON-ready dict: ``asked``, ``before`` (tempo BPM, tempo folded, key, first downbeat
        s), ``applied`` (tempo_ratio, stretch_ratio = output/input duration, semitones, key,
        start_s, bars, samples, crossfade_ms), ``after`` (tempo, key) and ``tools``.

    Raises:
        ConformError: bad key, meter or bars, silence, no steady beat and no ``bpm``,
            Rubber Band missing, non-finite audio. A clip with no steady beat (a pad) but a
            ``bpm`` keeps its timing and is cut from sample 0 (``before.bpm_error`` says so);
            one with no pitched content keeps its pitch (``before.key_error``).
    """
    from dreamsampler.engine.bars import _as_2d

    arr = _as_2d(audio)
    if not np.all(np.isfinite(arr)):
        raise ConformError("audio holds NaN or infinite samples")
    if sr <= 0:
        raise ConformError(f"sample rate must be > 0, got {sr}")
    if isinstance(meter, str):
        meter = parse_meter(meter)
    bpb = beats_per_bar(meter)
    target_key = parse_key(key) if isinstance(key, str) else key
    if bpm is not None and not 20.0 < float(bpm) <= 999.0:
        raise ConformError(f"bpm must be > 20 and <= 999, got {bpm}")
    if bars is not None and bars < 1:
        raise ConformError(f"bars must be >= 1, got {bars}")
    asked = {"bpm": bpm, "key": target_key.label if target_key else None, "bars": bars,
             "meter": f"{meter[0]}/{meter[1]}"}

    if float(np.max(np.abs(arr))) == 0.0:
        raise ConformError("the clip is silent: nothing to conform")
    before: dict[str, Any] = {}
    try:
        beats = _analyse(arr, sr, bpb, float(bpm or 120.0))
    except ConformError as exc:  # no pulse (a pad, a drone): keep its timing, cut from 0
        if bpm is None:
            raise
        beats = None
        before["bpm_error"] = str(exc)
    if beats is not None:
        folded = fold_tempo(beats.tempo_bpm, float(bpm)) if bpm else beats.tempo_bpm
        before.update(bpm=round(beats.tempo_bpm, 3), bpm_folded=round(folded, 3),
                      first_downbeat_s=round(beats.first_downbeat, 4))
    else:
        folded = float(bpm or 0.0)
    target_bpm = float(bpm) if bpm else folded
    ratio = target_bpm / folded
    semitones, landed = 0, None
    if target_key is not None:
        try:
            est = _estimate_key(arr, sr)
        except ConformError as exc:  # unpitched (drums): keep the pitch
            before["key_error"] = str(exc)
        else:
            before["key"] = est.label
            semitones, landed = key_shift(est, target_key)

    if abs(ratio - 1.0) < 1e-4 and semitones == 0:
        stretched, ratio = arr, 1.0
    else:
        stretched = stretch(arr, sr, ratio, semitones)
    n_in, n_out = arr.shape[1], stretched.shape[1]
    if n_out == 0:
        raise ConformError("the stretched clip is empty")
    mono = stretched.mean(axis=0)
    bar_len = bpb * 60.0 / target_bpm * sr  # exact, in samples
    downbeat = (_refine_onset(mono, sr, beats.first_downbeat * sr * n_out / n_in)
                if beats is not None else 0)
    # the earliest downbeat in the clip; one a hair before sample 0 (within 30 ms) is sample 0
    early = 0.03 * sr
    start = max(0, round(downbeat - math.floor((downbeat + early) / bar_len) * bar_len))
    if bars is None:
        bars = max(1, math.floor((n_out - start) / bar_len + 1e-6))
    length = bar_samples(bars, target_bpm, sr, bpb)
    fade = min(round(crossfade_ms * sr / 1000.0), length // 2)
    idx = (start + np.arange(length + fade)) % n_out
    seg = stretched[:, idx]
    out = np.array(seg[:, :length], dtype=np.float32)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
        out[:, :fade] = seg[:, :fade] * ramp + seg[:, length:length + fade] * (1.0 - ramp)
    if not np.all(np.isfinite(out)):
        raise ConformError("conform produced non-finite samples")

    record: dict[str, Any] = {
        "asked": asked,
        "before": before,
        "applied": {
            "bpm": round(target_bpm, 4), "tempo_ratio": round(ratio, 6),
            "stretch_ratio": round(n_out / n_in, 6), "semitones": semitones,
            "key": landed.label if landed else None, "start_s": round(start / sr, 5),
            "bars": bars, "beats_per_bar": bpb, "meter": asked["meter"], "samples": length,
            "looped_source": bool(start + length + fade > n_out), "crossfade_ms": crossfade_ms,
        },
        "tools": tool_versions() if ratio != 1.0 or semitones else
        {k: v for k, v in tool_versions().items() if k == "librosa"},
    }
    if measure_after:
        after: dict[str, Any] = {}
        try:
            after["bpm"] = round(_analyse(out, sr, bpb, target_bpm).tempo_bpm, 3)
        except ConformError as exc:
            after["bpm_error"] = str(exc)
        if target_key is not None:
            try:
                after["key"] = _estimate_key(out, sr).label
            except ConformError as exc:
                after["key_error"] = str(exc)
        record["after"] = after
    return out, record


_BPM_TAG = re.compile(r"\b\d+(?:\.\d+)?\s*bpm\b", re.IGNORECASE)
_KEY_TAG = re.compile(r"(?<![\w#])[A-Ga-g](?:#|b|♯|♭)?\s*(?:major|minor|maj|min)\b",
                      re.IGNORECASE)


def tag_prompt(prompt: str, bpm: float | None, key: str | None) -> str:
    """``prompt`` with ``"<bpm> BPM"`` and the key name (``"A minor"``) appended, comma
    separated, as Stable Audio Open's Freesound-derived captions and its model card's example
    ("128 BPM tech house drum loop") carry them; a tag the prompt already holds (any
    ``<number> BPM``; any ``<tonic> major/minor``) is not added again.

    Args:
        prompt: the user's prompt.
        bpm: tempo in BPM, or None; ``key``: a key name (:func:`parse_key`), or None.
    """
    tags = []
    if bpm is not None and not _BPM_TAG.search(prompt):
        tags.append(f"{round(float(bpm), 2):g} BPM")
    if key and not _KEY_TAG.search(prompt):
        tags.append(parse_key(key).label)
    return ", ".join([prompt.strip().rstrip(","), *tags]) if tags else prompt
