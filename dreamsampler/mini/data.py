"""Render the mini world's captioned clips from General MIDI with FluidSynth.

Every instrument's notes go into ONE MIDI file (one note or chord per slot of :data:`SLOT` s),
rendered by one ``fluidsynth`` call and cut into clips: a subprocess per clip would cost far more
than the synthesis (measured: see docs/mini.md). The set is deterministic: the same ``seed`` gives
the same notes, velocities, lengths and captions (FluidSynth itself is deterministic with reverb
and chorus off).

Clips are :data:`CLIP_SAMPLES` samples (0.96 s) at 16 kHz mono, onset at ``ONSET`` s.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

from dreamsampler.fsutil import atomic_write, atomic_write_text

SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
SAMPLE_RATE = 16000  # Hz, the AudioLDM/MusicLDM rate
FRAMES = 96  # mel frames per clip (hop 160): a multiple of 16 (VAE 4 × UNet 4)
CLIP_SAMPLES = FRAMES * 160  # 15360 samples = 0.96 s
SLOT = 2.0  # seconds between two clips in a rendered file (note + release, no overlap)
ONSET = 0.02  # seconds of silence before the onset
TICKS = 480  # MIDI ticks per beat; tempo 120 BPM → 960 ticks per second

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
NATURALS = ("C", "D", "E", "F", "G", "A", "B")


@dataclasses.dataclass(frozen=True)
class Instrument:
    """One instrument family: General MIDI program (``None``: the drum channel), the words a
    caption uses, and the octaves its notes are rendered in."""

    name: str
    program: int | None
    words: str
    octaves: tuple[int, ...] = ()
    chords: bool = False


#: the families the model is trained on
TRAINED: tuple[Instrument, ...] = (
    Instrument("piano", 0, "a piano", (3, 4, 5), chords=True),
    Instrument("organ", 20, "an organ", (3, 4), chords=True),
    Instrument("guitar", 24, "an acoustic guitar", (3, 4), chords=True),
    Instrument("bass", 33, "a bass guitar", (2, 3)),
    Instrument("strings", 48, "a string ensemble", (3, 4, 5), chords=True),
    Instrument("trumpet", 56, "a trumpet", (4, 5)),
    Instrument("flute", 73, "a flute", (4, 5)),
    Instrument("drums", None, "a drum beat"),
)
#: held out of the model's training entirely (the concepts of personalization)
HELD_OUT: tuple[Instrument, ...] = (
    Instrument("marimba", 12, "a marimba", (4, 5)),
    Instrument("saxophone", 65, "a saxophone", (3, 4)),
)
INSTRUMENTS = {i.name: i for i in TRAINED + HELD_OUT}
CHORDS: tuple[tuple[str, str], ...] = (("C", "major"), ("F", "major"), ("G", "major"),
                                       ("A", "minor"), ("D", "minor"), ("E", "minor"))
TEMPOS = (80, 100, 120, 140)  # BPM of the drum beats


def midi_number(name: str) -> int:
    """``"C4"`` → 60, ``"A#3"`` → 58 (scientific pitch notation, C4 = middle C)."""
    return NOTE_NAMES.index(name[:-1]) + 12 * (int(name[-1]) + 1)


def note_name(midi: int) -> str:
    """60 → ``"C4"``."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def hz(midi: float) -> float:
    """Equal-tempered frequency of a MIDI note number (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((midi - 69) / 12)


@dataclasses.dataclass(frozen=True)
class WorldClip:
    """One rendered clip's description (what its caption says and what was played)."""

    caption: str
    instrument: str
    kind: str  # "note", "chord", "beat" or "phrase" (notes one after another)
    notes: tuple[int, ...]  # MIDI note numbers (drum keys for a beat)
    velocity: int
    length: float  # seconds the notes are held
    tempo: int = 0  # BPM, beats only
    file: str = ""

    @property
    def pitch(self) -> int | None:
        """The named pitch (MIDI number) of a note clip, else ``None``."""
        return self.notes[0] if self.kind == "note" else None


def note_caption(instrument: Instrument, midi: int) -> str:
    return f"{instrument.words} playing {note_name(midi)}"


def chord_caption(instrument: Instrument, root: str, quality: str) -> str:
    article = "an" if root in ("A", "E", "F") else "a"
    return f"{instrument.words} playing {article} {root} {quality} chord"


def beat_caption(tempo: int) -> str:
    return f"a drum beat at {tempo} BPM"


PHRASE_STEP = 0.3  # seconds from one phrase note's onset to the next


def phrase(instrument: Instrument, names: tuple[str, ...], velocity: int = 100) -> WorldClip:
    """A phrase clip: ``names`` (``("C4", "E4", "G4")``) one after another, every
    :data:`PHRASE_STEP` s from :data:`ONSET`, held 0.18 s (detached, so every onset is an attack;
    three fit a clip). Not in the training set: the
    style-transfer inputs."""
    notes = tuple(midi_number(n) for n in names)
    return WorldClip(f"{instrument.words} playing {' '.join(names)}", instrument.name, "phrase",
                     notes, velocity, PHRASE_STEP - 0.12)


def phrase_onsets(clip: WorldClip) -> list[float]:
    """Onset times in seconds of a phrase clip's notes, from the clip's start."""
    return [ONSET + k * PHRASE_STEP for k in range(len(clip.notes))]


def _chord_notes(root: str, quality: str) -> tuple[int, ...]:
    base = midi_number(f"{root}4")
    third = 4 if quality == "major" else 3
    return (base, base + third, base + 7)


def plan(instrument: Instrument, variants: int, seed: int) -> list[WorldClip]:
    """The clips of one instrument: every natural note of its octaves, its chords, or its beats,
    ``variants`` times each with seeded velocity and length."""
    rng = random.Random(f"{seed}:{instrument.name}")
    clips: list[WorldClip] = []

    def add(caption: str, kind: str, notes: tuple[int, ...], tempo: int = 0) -> None:
        for _ in range(variants):
            clips.append(WorldClip(caption, instrument.name, kind, notes, rng.randint(70, 120),
                              round(rng.uniform(0.3, 0.8), 3), tempo))

    if instrument.program is None:
        for tempo in TEMPOS:
            add(beat_caption(tempo), "beat", (36, 38, 42), tempo)
        return clips
    for octave in instrument.octaves:
        for name in NATURALS:
            midi = midi_number(f"{name}{octave}")
            add(note_caption(instrument, midi), "note", (midi,))
    if instrument.chords:
        for root, quality in CHORDS:
            add(chord_caption(instrument, root, quality), "chord", _chord_notes(root, quality))
    return clips


def _beat_events(clip: WorldClip, start: int, per_second: int) -> list[tuple[int, mido.Message]]:
    """Kick on beats 1 and 3, snare on 2 and 4, closed hi-hat on eighths, within the clip."""
    events: list[tuple[int, mido.Message]] = []
    beat = 60.0 / clip.tempo
    t = 0.0
    index = 0
    while t < CLIP_SAMPLES / SAMPLE_RATE - ONSET - 0.05:
        keys = [42]
        if index % 2 == 0:
            keys.append(36 if (index // 2) % 2 == 0 else 38)
        for key in keys:
            tick = start + round(t * per_second)
            events.append((tick, mido.Message("note_on", channel=9, note=key,
                                              velocity=clip.velocity)))
            events.append((tick + per_second // 20, mido.Message("note_off", channel=9, note=key)))
        t += beat / 2
        index += 1
    return events


def write_midi(clips: list[WorldClip], instrument: Instrument, path: Path) -> None:
    """One MIDI file with ``clips`` in consecutive :data:`SLOT`-second slots (120 BPM)."""
    per_second = TICKS * 2
    events: list[tuple[int, mido.Message]] = []
    channel = 9 if instrument.program is None else 0
    if instrument.program is not None:
        events.append((0, mido.Message("program_change", channel=0, program=instrument.program)))
    for k, clip in enumerate(clips):
        start = round((k * SLOT + ONSET) * per_second)
        if clip.kind == "beat":
            events += _beat_events(clip, start, per_second)
            continue
        if clip.kind == "phrase":
            for k, note in enumerate(clip.notes):
                on = start + round(k * PHRASE_STEP * per_second)
                events.append((on, mido.Message("note_on", channel=channel, note=note,
                                                velocity=clip.velocity)))
                events.append((on + round(clip.length * per_second),
                               mido.Message("note_off", channel=channel, note=note)))
            continue
        for note in clip.notes:
            events.append((start, mido.Message("note_on", channel=channel, note=note,
                                               velocity=clip.velocity)))
            events.append((start + round(clip.length * per_second),
                           mido.Message("note_off", channel=channel, note=note)))
    events.sort(key=lambda e: (e[0], e[1].type == "note_on"))  # offs before ons at a tick
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=500000))
    now = 0
    for tick, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=per_second * 3))
    mid = mido.MidiFile(ticks_per_beat=TICKS)
    mid.tracks.append(track)
    mid.save(path)


def render(midi_path: Path, wav_path: Path) -> None:
    """FluidSynth (reverb and chorus off) at :data:`SAMPLE_RATE`.

    Raises:
        FileNotFoundError: ``fluidsynth`` or the soundfont is not installed.
    """
    if shutil.which("fluidsynth") is None or not SOUNDFONT.is_file():
        raise FileNotFoundError("the mini world needs the Debian packages fluidsynth and "
                                f"timgm6mb-soundfont ({SOUNDFONT})")
    subprocess.run(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5",
                    "-r", str(SAMPLE_RATE), "-F", str(wav_path), str(SOUNDFONT), str(midi_path)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def render_instrument(instrument: Instrument, clips: list[WorldClip]) -> np.ndarray:
    """Render ``clips`` of one instrument: ``(len(clips), CLIP_SAMPLES)`` float32 mono."""
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        write_midi(clips, instrument, mid)
        render(mid, wav)
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    assert rate == SAMPLE_RATE, rate
    mono = audio.mean(axis=1)
    out = np.zeros((len(clips), CLIP_SAMPLES), np.float32)
    for k in range(len(clips)):
        seg = mono[round(k * SLOT * SAMPLE_RATE):][:CLIP_SAMPLES]
        out[k, : len(seg)] = seg
    return out


def build_dataset(directory: Path, seed: int = 0, variants: int = 6,
                  instruments: tuple[Instrument, ...] = TRAINED + HELD_OUT) -> Path:
    """Render the mini world into ``directory``: ``audio.npy`` ``(n, CLIP_SAMPLES)`` float32 and
    ``clips.json`` (one :class:`WorldClip` per row, in order). Skips the work when ``directory``
    already holds the same set (a hash of the plan).

    Returns:
        ``directory``.
    """
    directory = Path(directory)
    clips: list[WorldClip] = []
    for instrument in instruments:
        clips += plan(instrument, variants, seed)
    digest = hashlib.sha256(json.dumps([CLIP_SAMPLES, SLOT, ONSET,
                                        [dataclasses.asdict(c) for c in clips]]).encode())
    key = digest.hexdigest()[:16]
    meta = directory / "clips.json"
    if meta.is_file() and json.loads(meta.read_text()).get("key") == key:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    audio = np.concatenate([render_instrument(i, [c for c in clips if c.instrument == i.name])
                            for i in instruments])
    order = [c for i in instruments for c in clips if c.instrument == i.name]
    # each file replaced whole, clips.json last: a process reading the set while another
    # renders it sees the old set or the new one, never half a file
    atomic_write(directory / "audio.npy", lambda fh: np.save(fh, audio))
    atomic_write_text(meta, json.dumps({"key": key, "seed": seed, "variants": variants,
                                        "sample_rate": SAMPLE_RATE,
                                        "clips": [dataclasses.asdict(c) for c in order]}))
    return directory


def load_dataset(directory: Path) -> tuple[np.ndarray, list[WorldClip]]:
    """``(audio (n, CLIP_SAMPLES), clips)`` as :func:`build_dataset` wrote them."""
    meta = json.loads((Path(directory) / "clips.json").read_text())
    clips = [WorldClip(**{**c, "notes": tuple(c["notes"])}) for c in meta["clips"]]
    return np.load(Path(directory) / "audio.npy"), clips


def default_cache() -> Path:
    """Where the rendered set lives: the user cache (never committed)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("dreamsampler")) / "mini-world"


if __name__ == "__main__":
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_cache())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", type=int, default=6)
    args = parser.parse_args()
    t0 = time.perf_counter()
    build_dataset(args.out, args.seed, args.variants)
    audio, clips = load_dataset(args.out)
    print(f"{len(clips)} clips, {audio.shape}, {time.perf_counter() - t0:.1f} s -> {args.out}")
