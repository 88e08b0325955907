"""Real-instrument test loops: General MIDI written with mido, rendered by FluidSynth with the
TimGM6mb soundfont (Debian ``fluidsynth``, ``timgm6mb-soundfont``), cached per test session.

:func:`render_loop` writes a 4/4 loop of drums (kick on 1 and 3, snare on 2 and 4, closed
hi-hat eighths), a bass line and sustained chords in a minor or major key at a given tempo.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
TICKS = 480
_CACHE: dict[tuple[float, int, str, int, int], Path] = {}
_DIR: Path | None = None


def have_fluidsynth() -> bool:
    return shutil.which("fluidsynth") is not None and SOUNDFONT.exists()


def _chords(tonic: int, mode: str) -> list[list[int]]:
    """i-VI-iv-V (minor) or I-vi-IV-V (major) as MIDI notes around middle C."""
    root = 48 + tonic
    if mode == "minor":
        return [[root, root + 3, root + 7], [root - 4, root, root + 3],
                [root + 5, root + 8, root + 12], [root + 7, root + 11, root + 14]]
    return [[root, root + 4, root + 7], [root + 9, root + 12, root + 16],
            [root + 5, root + 9, root + 12], [root + 7, root + 11, root + 14]]


def write_midi(path: Path, bpm: float, tonic: int, mode: str, bars: int = 4) -> None:
    """A ``bars``-bar loop at ``bpm`` in (``tonic`` pitch class, ``mode``) as a MIDI file."""
    import mido

    mid = mido.MidiFile(ticks_per_beat=TICKS)
    events: list[tuple[int, mido.Message]] = []

    def note(ch: int, pitch: int, start: int, length: int, vel: int) -> None:
        events.append((start, mido.Message("note_on", channel=ch, note=pitch, velocity=vel)))
        events.append((start + length, mido.Message("note_off", channel=ch, note=pitch)))

    events.append((0, mido.Message("program_change", channel=0, program=33)))  # finger bass
    events.append((0, mido.Message("program_change", channel=1, program=0)))  # piano
    chords = _chords(tonic, mode)
    for bar in range(bars):
        t0 = bar * 4 * TICKS
        for beat in range(4):
            t = t0 + beat * TICKS
            note(9, 36 if beat % 2 == 0 else 38, t, TICKS // 4, 120 if beat == 0 else 90)
        for eighth in range(8):
            note(9, 42, t0 + eighth * TICKS // 2, TICKS // 8, 60)
        chord = chords[bar % 4]
        for beat in (0, 2):
            note(0, chord[0] - 12, t0 + beat * TICKS, TICKS, 100)
        for pitch in chord:
            note(1, pitch + 12, t0, 4 * TICKS - 10, 70)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
    now = 0
    for at, msg in sorted(events, key=lambda e: (e[0], e[1].type == "note_on")):
        track.append(msg.copy(time=at - now))
        now = at
    mid.tracks.append(track)
    mid.save(path)


def render_loop(tmp_root: Path, bpm: float, tonic: int, mode: str = "minor", bars: int = 4,
                sr: int = 44100) -> Path:
    """Render (once per session) the loop to a stereo WAV at ``sr`` Hz, cut to exactly ``bars``
    bars (FluidSynth adds a release tail, which is dropped). Skips without FluidSynth."""
    import soundfile

    if not have_fluidsynth():
        pytest.skip("fluidsynth or the TimGM6mb soundfont is not installed")
    key = (bpm, tonic, mode, bars, sr)
    if key not in _CACHE:
        tmp_root.mkdir(parents=True, exist_ok=True)
        stem = f"loop_{bpm:g}_{tonic}_{mode}_{bars}_{sr}"
        mid, wav = tmp_root / f"{stem}.mid", tmp_root / f"{stem}.full.wav"
        write_midi(mid, bpm, tonic, mode, bars)
        subprocess.run(["fluidsynth", "-ni", "-q", "-r", str(sr), "-F", str(wav),
                        str(SOUNDFONT), str(mid)], check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        audio, rate = soundfile.read(wav, dtype="float32", always_2d=True)
        n = round(bars * 4 * 60.0 / bpm * rate)
        audio = audio[:n]
        peak = float(np.max(np.abs(audio)))
        out = tmp_root / f"{stem}.wav"
        soundfile.write(out, audio * (0.7 / peak), rate, subtype="FLOAT")
        _CACHE[key] = out
    return _CACHE[key]
