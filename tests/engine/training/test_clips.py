"""Tests for dreamsampler.engine.training.clips on real files written with soundfile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dreamsampler.engine.training.clips import (
    ClipError,
    ClipFolderMissingError,
    ClipTooShortError,
    SilentClipError,
    TooFewClipsError,
    TrainingClip,
    UnreadableClipError,
    crop_or_pad,
    extract_crops,
    load_clip,
    load_concept_clips,
    read_clip_audio,
)

from .synth import SR, WriteAudio, tone

CLIP = 2 * SR  # a 2 s "model length" keeps the tests fast


def test_loads_mixed_formats_mono_resampled_and_sized(
    tmp_path: Path, write_audio: WriteAudio
) -> None:
    write_audio("a.wav", tone(440, 2.5, sr=44100, channels=2), sr=44100)  # long, stereo
    write_audio("b.flac", tone(330, 1.5, sr=22050), sr=22050)  # short: padded
    write_audio("c.ogg", tone(220, 2.0, sr=SR), sr=SR, format="OGG", subtype="VORBIS")
    (tmp_path / "notes.txt").write_text("not audio, ignored by extension")
    (tmp_path / ".hidden.wav").write_bytes(b"")
    clips = load_concept_clips(tmp_path, SR, CLIP, min_clips=3)
    assert [c.path.name for c in clips] == ["a.wav", "b.flac", "c.ogg"]
    for c in clips:
        assert isinstance(c, TrainingClip)
        assert c.waveform.shape == (CLIP,)
        assert c.waveform.dtype == np.float32
        assert c.sample_rate == SR
    assert clips[0].original_duration == pytest.approx(2.5)
    assert clips[1].original_duration == pytest.approx(1.5)
    # stereo (x, 2x)/2 -> mean amplitude 0.75 * 0.5
    assert np.max(np.abs(clips[0].waveform)) == pytest.approx(0.375, abs=0.01)
    # padded tail of the 1.5 s clip is zero
    assert np.all(clips[1].waveform[round(1.5 * SR) + 50 :] == 0.0)
    # resampling kept the frequency: dominant FFT bin of the 44.1 kHz 440 Hz tone
    spec = np.abs(np.fft.rfft(clips[0].waveform))
    assert np.argmax(spec) * SR / CLIP == pytest.approx(440, abs=1)


def test_mp3_if_libsndfile_supports_it(tmp_path: Path, write_audio: WriteAudio) -> None:
    if "MP3" not in sf.available_formats():
        pytest.skip("libsndfile built without MP3")
    write_audio("x.mp3", tone(440, 2.0), format="MP3", subtype="MPEG_LAYER_III")
    (clip,) = load_concept_clips(tmp_path, SR, CLIP)
    assert clip.waveform.shape == (CLIP,)
    assert np.max(np.abs(clip.waveform)) > 0.3


def test_loop_short(write_audio: WriteAudio) -> None:
    path = write_audio("short.wav", tone(440, 1.2))
    looped = load_clip(path, SR, CLIP, loop_short=True).waveform
    n = round(1.2 * SR)
    np.testing.assert_allclose(looped[n : 2 * n - (2 * n - CLIP)], looped[: CLIP - n], atol=1e-6)
    assert np.max(np.abs(looped[-100:])) > 0.1


def test_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(ClipFolderMissingError) as info:
        load_concept_clips(tmp_path / "nope", SR, CLIP)
    assert "nope" in str(info.value)
    assert isinstance(info.value, ClipError)
    assert isinstance(info.value, ValueError)


def test_too_few_clips(tmp_path: Path, write_audio: WriteAudio) -> None:
    write_audio("one.wav", tone(440, 2.0))
    with pytest.raises(TooFewClipsError, match=r"found 1 usable .* at least 5"):
        load_concept_clips(tmp_path, SR, CLIP, min_clips=5)


def test_unreadable_file_named(tmp_path: Path) -> None:
    (tmp_path / "fake.wav").write_text("this is not a wav file\n" * 20)
    with pytest.raises(UnreadableClipError) as info:
        load_concept_clips(tmp_path, SR, CLIP)
    assert info.value.path.name == "fake.wav"
    assert "fake.wav" in str(info.value)


def test_silent_file(tmp_path: Path, write_audio: WriteAudio) -> None:
    write_audio("quiet.wav", tone(440, 2.0, amp=10 ** (-70 / 20)), subtype="FLOAT")
    with pytest.raises(SilentClipError, match=r"quiet\.wav.*-70\.0 dBFS"):
        load_concept_clips(tmp_path, SR, CLIP)
    # a custom threshold accepts it
    (clip,) = load_concept_clips(tmp_path, SR, CLIP, silence_threshold_db=-80.0)
    assert clip.waveform.shape == (CLIP,)


def test_too_short_and_ratio(tmp_path: Path, write_audio: WriteAudio) -> None:
    write_audio("tiny.wav", tone(440, 0.8))  # 0.4x the 2 s model length
    with pytest.raises(ClipTooShortError, match=r"tiny\.wav.*0\.40x"):
        load_concept_clips(tmp_path, SR, CLIP)
    (clip,) = load_concept_clips(tmp_path, SR, CLIP, min_length_ratio=0.3)
    assert clip.waveform.shape == (CLIP,)


def test_skip_invalid_then_count(tmp_path: Path, write_audio: WriteAudio) -> None:
    write_audio("good.wav", tone(440, 2.0))
    write_audio("quiet.wav", np.zeros(2 * SR, dtype=np.float32))
    clips = load_concept_clips(tmp_path, SR, CLIP, skip_invalid=True)
    assert [c.path.name for c in clips] == ["good.wav"]
    with pytest.raises(TooFewClipsError, match="1 refused"):
        load_concept_clips(tmp_path, SR, CLIP, skip_invalid=True, min_clips=2)


def test_random_crop_seeded(tmp_path: Path, write_audio: WriteAudio) -> None:
    ramp = np.linspace(-0.9, 0.9, 5 * SR, dtype=np.float32)
    write_audio("long.wav", ramp, subtype="FLOAT")
    a = load_concept_clips(tmp_path, SR, CLIP, crop="random", seed=3)[0].waveform
    b = load_concept_clips(tmp_path, SR, CLIP, crop="random", seed=3)[0].waveform
    c = load_concept_clips(tmp_path, SR, CLIP, crop="center")[0].waveform
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(c, ramp[round(1.5 * SR) : round(1.5 * SR) + CLIP], atol=1e-4)


def test_extract_crops() -> None:
    x = np.arange(10_000, dtype=np.float32)
    even = extract_crops(x, 1000, 4, mode="even")
    assert [int(c[0]) for c in even] == [0, 3000, 6000, 9000]
    r1 = extract_crops(x, 1000, 5, seed=7)
    r2 = extract_crops(x, 1000, 5, seed=np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(r1, r2, strict=True))
    assert all(c.shape == (1000,) and c[-1] - c[0] == 999 for c in r1)
    short = extract_crops(x[:500], 1000, 2)
    assert all(c.shape == (1000,) for c in short)
    with pytest.raises(ValueError):
        extract_crops(x, 1000, 0)


def test_crop_or_pad_errors() -> None:
    with pytest.raises(ValueError, match="rng"):
        crop_or_pad(np.ones(10, np.float32), 5, crop="random")
    with pytest.raises(ValueError):
        crop_or_pad(np.ones((2, 10), np.float32), 5)


def test_load_audio_returns_full_length(write_audio: WriteAudio) -> None:
    path = write_audio("long.flac", tone(440, 3.0, sr=48000), sr=48000)
    audio, dur = read_clip_audio(path, SR)
    assert dur == pytest.approx(3.0)
    assert audio.shape == (3 * SR,)
