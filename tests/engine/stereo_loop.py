"""A real stereo loop for transfer tests: bass panned hard left, an electric piano hard right,
written with mido and rendered by fluidsynth (TimGM6mb), cut to whole beats."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")


def render_stereo_loop(path: Path, seconds: float = 4.0, bpm: float = 120.0,
                       sample_rate: int = 44100) -> np.ndarray:
    """Write the loop to ``path`` (float WAV, ``seconds`` long); returns it ``(2, samples)``.

    Skips the test when fluidsynth or the soundfont is missing (an optional system package)."""
    if shutil.which("fluidsynth") is None or not SOUNDFONT.is_file():
        pytest.skip("fluidsynth with the TimGM6mb soundfont is not installed")
    song = mido.MidiFile(ticks_per_beat=480)
    beats = round(seconds * bpm / 60)
    parts = ((0, 33, 0, (40, 40, 43, 45)), (1, 4, 127, (64, 67, 71, 72)))  # channel, GM, pan
    for channel, program, pan, notes in parts:
        track = mido.MidiTrack()
        song.tracks.append(track)
        if channel == 0:
            track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
        track.append(mido.Message("program_change", channel=channel, program=program))
        track.append(mido.Message("control_change", channel=channel, control=10, value=pan))
        for beat in range(beats):
            note = notes[beat % len(notes)]
            track.append(mido.Message("note_on", channel=channel, note=note, velocity=100))
            track.append(mido.Message("note_off", channel=channel, note=note, time=400))
            track.append(mido.Message("note_on", channel=channel, note=note, velocity=0,
                                      time=80))
    midi, raw = path.with_suffix(".mid"), path.with_suffix(".render.wav")
    song.save(midi)
    subprocess.run(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-r", str(sample_rate),
                    "-F", str(raw), str(SOUNDFONT), str(midi)], check=True, timeout=60)
    audio, rate = sf.read(raw, dtype="float32", always_2d=True)
    assert rate == sample_rate and audio.shape[1] == 2
    audio = audio[: round(seconds * rate)]
    sf.write(path, audio, rate, subtype="FLOAT")
    return np.ascontiguousarray(audio.T)
