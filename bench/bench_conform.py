"""Seconds to conform a 10 s stereo 44.1 kHz loop on one core, and what share of a generation
that is.

A General-MIDI loop (drums, bass, chords) is written at 117 BPM in E minor with mido and
rendered by FluidSynth (TimGM6mb), cut to 10.0 s, then conformed to 120 BPM, G minor, 4 bars
(:func:`dreamsampler.engine.conform.conform`). Prints the median wall and CPU seconds (the CPU
of the ``rubberband`` child process included) of ``--repeats`` timed calls after one warm-up
(librosa's numba JIT), with and without the after-estimates the sidecar records, the stages
one by one, and the share of the CPU generation figures in docs/stable-audio.md (same 2-core
machine class; Open 1.0: 100 steps × 5.6 s + 16.3 s decode; SA3-small-like: 8 steps × 1.06 s
+ 2.34 s decode). On a shared machine the CPU seconds are the figure to read.

Run on one core: ``OMP_NUM_THREADS=1 taskset -c 0 python bench/bench_conform.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from dreamsampler.engine.conform import (
    _analyse,
    _estimate_key,
    conform,
    stretch,
    tool_versions,
)

SOUNDFONT = "/usr/share/sounds/sf2/TimGM6mb.sf2"
GENERATION_S = {"Open 1.0, 100 steps": 100 * 5.6 + 16.3, "SA3-small-like, 8 steps":
                8 * 1.06 + 2.34}


def render(seconds: float = 10.0, sr: int = 44100) -> np.ndarray:
    """The test loop (tests/music.py) at 117 BPM, E minor, ``seconds`` long, stereo."""
    from tests.music import write_midi

    folder = Path(tempfile.mkdtemp())
    write_midi(folder / "loop.mid", 117, 4, "minor", bars=6)
    subprocess.run(["fluidsynth", "-ni", "-q", "-r", str(sr), "-F", str(folder / "loop.wav"),
                    SOUNDFONT, str(folder / "loop.mid")], check=True, capture_output=True)
    audio, rate = sf.read(folder / "loop.wav", dtype="float32", always_2d=True)
    assert rate == sr
    return np.ascontiguousarray(audio[: round(seconds * sr)].T)


def _cpu() -> float:
    t = os.times()  # this process and its waited-for children (the rubberband program)
    return t.user + t.system + t.children_user + t.children_system


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median (wall seconds, CPU seconds incl. child processes) of ``repeats`` calls."""
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), _cpu()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sr = 44100
    audio = render(10.0, sr)
    print(f"clip: {audio.shape[0]} channels, {audio.shape[1] / sr:.2f} s at {sr} Hz; "
          f"tools: {tool_versions()}")
    rows = {
        "conform (bpm + key + bars), with after-estimates":
            lambda: conform(audio, sr, bpm=120, key="G minor", bars=4),
        "conform (bpm + key + bars), no after-estimates":
            lambda: conform(audio, sr, bpm=120, key="G minor", bars=4, measure_after=False),
        "conform (bpm + bars only), no after-estimates":
            lambda: conform(audio, sr, bpm=120, bars=4, measure_after=False),
        "  stage: beats/downbeats/tempo (beats.py at 22.05 kHz)":
            lambda: _analyse(audio, sr, 4, 120.0),
        "  stage: key (CQT chroma, Krumhansl-Schmuckler)": lambda: _estimate_key(audio, sr),
        "  stage: Rubber Band stretch + shift (one pass)":
            lambda: stretch(audio, sr, 120 / 117, 3),
    }
    print(f"load average before: {os.getloadavg()[0]:.2f} (CPU seconds do not depend on it; "
          "wall seconds do)")
    results = {name: timed(fn, args.repeats) for name, fn in rows.items()}
    print(f"{'':58s} {'wall s':>8s} {'CPU s':>8s}")
    for name, (wall, cpu) in results.items():
        print(f"{name:58s} {wall:8.3f} {cpu:8.3f}")
    full = results["conform (bpm + key + bars), with after-estimates"][1]
    lean = results["conform (bpm + key + bars), no after-estimates"][1]
    for label, gen in GENERATION_S.items():
        print(f"share of a 10 s generation ({label}: {gen:.0f} s), CPU: {100 * full / gen:.2f} % "
              f"(without after-estimates {100 * lean / gen:.2f} %)")


if __name__ == "__main__":
    main()
