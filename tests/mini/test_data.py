"""The renderer: captions say what was rendered (checked with estimators the renderer does not
use), the set is deterministic, and the held-out families stay out of the training plan."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np

from dreamsampler.mini import data


def test_note_names_round_trip() -> None:
    assert data.midi_number("C4") == 60 and data.midi_number("A#3") == 58
    assert data.note_name(69) == "A4" and data.hz(69) == 440.0
    assert data.note_caption(data.INSTRUMENTS["piano"], 60) == "a piano playing C4"
    assert (data.chord_caption(data.INSTRUMENTS["strings"], "A", "minor")
            == "a string ensemble playing an A minor chord")


def test_held_out_families_are_not_trained() -> None:
    trained = {i.name for i in data.TRAINED}
    assert trained.isdisjoint(i.name for i in data.HELD_OUT)
    assert 8 <= len(trained) <= 12


def test_note_captions_match_the_rendered_pitch(rendered: Path) -> None:
    """YIN (librosa.yin; the measures use pYIN) finds the captioned note in every 5th clip."""
    audio, clips = data.load_dataset(rendered)
    assert audio.shape == (len(clips), data.CLIP_SAMPLES)
    notes = [(a, c) for a, c in zip(audio, clips, strict=True) if c.kind == "note"][::5]
    assert len(notes) >= 15
    misses = []
    for a, c in notes:
        onset = int(data.ONSET * data.SAMPLE_RATE) + 800  # skip the attack
        f0 = librosa.yin(a[onset : onset + 4096], fmin=55, fmax=2200, sr=data.SAMPLE_RATE,
                         frame_length=2048)
        midi = float(np.median(librosa.hz_to_midi(f0)))
        assert c.caption.endswith(data.note_name(c.notes[0]))
        if abs(midi - c.notes[0]) > 0.5:
            misses.append((c.caption, round(midi, 2)))
    assert not misses, misses


def test_clips_hold_sound_and_chords_hold_three_notes(rendered: Path) -> None:
    audio, clips = data.load_dataset(rendered)
    peaks = np.abs(audio).max(axis=1)
    assert peaks.min() > 0.01 and peaks.max() < 1.0
    chord = next(i for i, c in enumerate(clips) if c.caption == "a piano playing a C major chord")
    chroma = librosa.feature.chroma_stft(y=audio[chord], sr=data.SAMPLE_RATE, n_fft=4096,
                                         hop_length=1024).mean(axis=1)
    assert set(np.argsort(chroma)[-3:]) == {0, 4, 7}  # C, E, G


def test_rendering_is_deterministic(rendered: Path, tmp_path: Path) -> None:
    flute = (data.INSTRUMENTS["flute"],)
    again = data.build_dataset(tmp_path, seed=0, variants=1, instruments=flute)
    audio, clips = data.load_dataset(rendered)
    audio2, clips2 = data.load_dataset(again)
    rows = [i for i, c in enumerate(clips) if c.instrument == "flute"]
    assert [clips[i] for i in rows] == clips2
    np.testing.assert_array_equal(audio[rows], audio2)


def test_a_phrase_plays_its_notes_one_after_another() -> None:
    """The style-transfer inputs: each note of the phrase sounds in its own slot (YIN, not the
    measures' pYIN), and a note's attack lies where :func:`data.phrase_onsets` says."""
    piano = data.INSTRUMENTS["piano"]
    clip = data.phrase(piano, ("C4", "E4", "G4"))
    assert clip.caption == "a piano playing C4 E4 G4" and clip.kind == "phrase"
    audio = data.render_instrument(piano, [clip])[0]
    for onset, midi in zip(data.phrase_onsets(clip), clip.notes, strict=True):
        start = int((onset + 0.04) * data.SAMPLE_RATE)
        f0 = librosa.yin(audio[start : start + 2048], fmin=55, fmax=2200, sr=data.SAMPLE_RATE,
                         frame_length=1024)
        assert abs(float(np.median(librosa.hz_to_midi(f0))) - midi) < 0.5, (onset, midi)
        before = audio[int((onset - 0.02) * data.SAMPLE_RATE) : int(onset * data.SAMPLE_RATE)]
        after = audio[int(onset * data.SAMPLE_RATE) : int((onset + 0.05) * data.SAMPLE_RATE)]
        assert np.abs(after).max() > 3 * np.abs(before).max(), onset  # detached: an attack
