"""Real instrument audio for tests: a drum, bass and chord loop written with mido and rendered by
FluidSynth with the TimGM6mb General MIDI soundfont (Debian ``fluidsynth``,
``timgm6mb-soundfont``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import mido
import pytest

SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
DRUMS, BASS, KEYS = 9, 0, 1  # MIDI channels (drums: channel 10)


def fluidsynth_available() -> bool:
    return shutil.which("fluidsynth") is not None and SOUNDFONT.exists()


def write_band_midi(path: Path, bars: int = 1, bpm: float = 120.0) -> Path:
    """Four-on-the-floor kick, snare on 2 and 4, eighth hats; a root-fifth bass line; C-Am-F-G
    chords on an electric piano, one per beat group."""
    tpb = 480
    events: list[tuple[int, mido.Message]] = []

    def note(channel: int, pitch: int, start: int, length: int, velocity: int = 100) -> None:
        events.append((start, mido.Message("note_on", channel=channel, note=pitch,
                                           velocity=velocity)))
        events.append((start + length, mido.Message("note_off", channel=channel, note=pitch)))

    chords = [(48, 52, 55), (45, 48, 52), (41, 45, 48), (43, 47, 50)]
    for bar in range(bars):
        base = bar * 4 * tpb
        for beat in range(4):
            t = base + beat * tpb
            note(DRUMS, 36, t, tpb // 4, 120)  # kick
            if beat in (1, 3):
                note(DRUMS, 38, t, tpb // 4, 110)  # snare
            note(DRUMS, 42, t, tpb // 8, 80)
            note(DRUMS, 42, t + tpb // 2, tpb // 8, 70)  # hats
            root = chords[(bar + beat // 2) % 4][0] - 12
            note(BASS, root, t, tpb // 2, 110)
            note(BASS, root + 7, t + tpb // 2, tpb // 2, 100)
        for half in range(2):
            for pitch in chords[(2 * bar + half) % 4]:
                note(KEYS, pitch + 12, base + half * 2 * tpb, 2 * tpb - 20, 80)
    events.sort(key=lambda e: (e[0], e[1].type == "note_on"))
    mid = mido.MidiFile(ticks_per_beat=tpb)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
    track.append(mido.Message("program_change", channel=BASS, program=33))  # finger bass
    track.append(mido.Message("program_change", channel=KEYS, program=4))  # e-piano
    now = 0
    for tick, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    mid.save(path)
    return path


def render_band(path: Path, bars: int = 1, bpm: float = 120.0, rate: int = 44100) -> Path:
    """Render :func:`write_band_midi` to a stereo WAV at ``rate`` Hz (skips the test when
    FluidSynth or the soundfont is missing)."""
    if not fluidsynth_available():
        pytest.skip("fluidsynth or the TimGM6mb soundfont is not installed")
    midi = write_band_midi(path.with_suffix(".mid"), bars, bpm)
    subprocess.run(["fluidsynth", "-ni", "-q", "-r", str(rate), "-F", str(path),
                    str(SOUNDFONT), str(midi)], check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return path
