"""Tests for dreamsampler.engine.training.augment: MIX, beat tracking, BAM, BLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dreamsampler.engine.training.augment import (
    BeatInfo,
    BeatSyncMixup,
    BeatTrackingError,
    MixAugmenter,
    beat_aligned_latent_mixup,
    beat_aligned_mixup,
    group_by_tempo,
    latent_frames_per_second,
    measure_snr_db,
    mix_at_snr,
    sample_mix_ratio,
    shift_signal,
    snr_gain,
    track_beats,
)
from dreamsampler.engine.training.clips import SilentClipError, TooFewClipsError

from .synth import SR, WriteAudio, click_track, tone

SECONDS = 6.0
#: one onset-envelope frame at the default hop (256 samples at 16 kHz = 16 ms), plus slack for
#: a one-frame disagreement: the brief asks for "about one onset frame (~23 ms)".
FRAME_S = 256 / SR
TOL_S = 0.0235


def _load(path: Path) -> np.ndarray:
    data, sr = sf.read(str(path), dtype="float32")
    assert sr == SR
    return data


# ------------------------------------------------------------------------------------- MIX


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0, 35.0])
def test_mix_at_snr_hits_target(snr_db: float) -> None:
    rng = np.random.default_rng(0)
    concept = tone(440, 2.0, amp=0.1)  # quiet enough that no peak normalisation happens
    other = (0.5 * rng.standard_normal(3 * SR)).astype(np.float32)  # longer: cropped
    mix = mix_at_snr(concept, other, snr_db, rng=np.random.default_rng(1))
    assert mix.shape == concept.shape and mix.dtype == np.float32
    assert np.max(np.abs(mix)) < 1.0
    residual = mix.astype(np.float64) - concept
    measured = measure_snr_db(concept, residual)
    assert abs(measured - snr_db) < 0.01, measured


def test_mix_at_snr_loops_short_other_and_matches_formula() -> None:
    concept = tone(300, 1.0, amp=0.2)
    other = tone(1000, 0.3, amp=0.7)  # shorter: looped
    mix = mix_at_snr(concept, other, 20.0)
    w2 = np.resize(other, concept.shape[0]).astype(np.float64)
    p1 = np.mean(concept.astype(np.float64) ** 2)
    p2 = np.mean(w2**2)
    expected = concept + np.sqrt(10 ** (-20 / 10) * p1 / p2) * w2
    np.testing.assert_allclose(mix, expected, atol=1e-6)
    assert snr_gain(concept, w2, 20.0) == pytest.approx(np.sqrt(0.01 * p1 / p2))


def test_mix_at_snr_peak_normalises_only_when_clipping() -> None:
    concept = tone(440, 1.0, amp=0.95)
    other = tone(440, 1.0, amp=0.95)  # in phase: 0 dB SNR would peak at 1.9
    mix = mix_at_snr(concept, other, 0.0)
    assert np.max(np.abs(mix)) == pytest.approx(1.0, abs=1e-6)
    # SNR kept: components scale together
    scale = np.max(np.abs(concept + other))
    assert measure_snr_db(concept / scale, mix - concept / scale) == pytest.approx(0.0, abs=0.01)


def test_mix_at_snr_refuses_silence() -> None:
    with pytest.raises(ValueError, match="other waveform is silent"):
        mix_at_snr(tone(440, 1.0), np.zeros(100, np.float32), 20.0)
    with pytest.raises(ValueError, match="concept waveform is silent"):
        mix_at_snr(np.zeros(100, np.float32), tone(440, 1.0), 20.0)


def test_mix_augmenter_from_folder_seeded(tmp_path: Path, write_audio: WriteAudio) -> None:
    for i, f in enumerate((200.0, 700.0, 1500.0)):
        write_audio(f"others/o{i}.flac", tone(f, 1.0 + i, sr=22050), sr=22050)
    folder = tmp_path / "others"
    concept = tone(440, 2.0, amp=0.4)
    m1 = MixAugmenter.from_folder(folder, SR, seed=5)
    m2 = MixAugmenter.from_folder(folder, SR, seed=5)
    assert len(m1) == 3 and m1.snr_db == 20.0
    outs1 = [m1(concept) for _ in range(6)]
    outs2 = [m2(concept) for _ in range(6)]
    for a, b in zip(outs1, outs2, strict=True):
        np.testing.assert_array_equal(a, b)
        assert measure_snr_db(concept, a.astype(np.float64) - concept) == pytest.approx(
            20.0, abs=0.01
        )
    # several different other sounds were picked: dominant frequency of the added component
    picked = {int(np.argmax(np.abs(np.fft.rfft(o - concept)))) for o in outs1}
    assert len(picked) > 1


def test_mix_augmenter_refusals(tmp_path: Path, write_audio: WriteAudio) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TooFewClipsError):
        MixAugmenter.from_folder(tmp_path / "empty", SR)
    write_audio("silent/s.wav", np.zeros(SR, np.float32))
    with pytest.raises(SilentClipError):
        MixAugmenter.from_folder(tmp_path / "silent", SR)
    with pytest.raises(ValueError):
        MixAugmenter([])


# ---------------------------------------------------------------------- beats and tempo


def test_track_beats_click_tracks_known_tempo_and_downbeats() -> None:
    for bpm, offset in ((120.0, 0.1), (121.0, 0.25), (90.0, 0.2)):
        info = track_beats(click_track(bpm, SECONDS, offset_s=offset), SR)
        assert isinstance(info, BeatInfo)
        assert info.tempo_bpm == pytest.approx(bpm, abs=0.5), (bpm, info.tempo_bpm)
        bar = 4 * 60.0 / bpm
        # the first detected downbeat is a true (accented) downbeat: offset + k bars
        k = round((info.first_downbeat - offset) / bar)
        assert abs(info.first_downbeat - (offset + k * bar)) < TOL_S, (bpm, info)
        assert np.all(np.diff(info.downbeat_times) == pytest.approx(bar, abs=0.05))


def test_track_beats_refuses_pulseless_audio() -> None:
    with pytest.raises(BeatTrackingError):
        track_beats(np.zeros(SR, np.float32), SR)


def test_group_by_tempo_numbers_and_beatinfo() -> None:
    assert group_by_tempo([120.0, 90.0, 121.0], tolerance_bpm=3.0) == [[90.0], [120.0, 121.0]]
    assert group_by_tempo([100.0, 102.0, 104.0, 106.0], tolerance_bpm=3.0) == [
        [100.0, 102.0],
        [104.0, 106.0],
    ]
    infos = [track_beats(click_track(b, SECONDS, offset_s=0.1), SR) for b in (120, 90, 121)]
    groups = group_by_tempo(infos, tolerance_bpm=3.0)
    tempi = [[round(i.tempo_bpm) for i in g] for g in groups]
    assert tempi == [[90], [120, 121]]
    with pytest.raises(TypeError):
        group_by_tempo(["fast"])


def test_mix_ratio_beta_5_5_moments() -> None:
    rng = np.random.default_rng(123)
    lams = np.array([sample_mix_ratio(rng) for _ in range(20_000)])
    beta_var = 25.0 / (100.0 * 11.0)  # αβ / ((α+β)²(α+β+1)) = 0.02273
    assert lams.min() >= 0.0 and lams.max() <= 1.0
    assert lams.mean() == pytest.approx(0.5, abs=0.005)
    assert lams.var() == pytest.approx(beta_var, rel=0.05)


# --------------------------------------------------------------------------------- BAM


def test_shift_signal() -> None:
    x = np.arange(1, 6, dtype=np.float32)
    np.testing.assert_array_equal(shift_signal(x, 2), [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(shift_signal(x, -2), [3, 4, 5, 0, 0])
    np.testing.assert_array_equal(shift_signal(x, 2, fill="loop"), [4, 5, 1, 2, 3])
    np.testing.assert_array_equal(shift_signal(x, 9), np.zeros(5))


@pytest.mark.parametrize(
    ("offset_a", "offset_b", "fill"), [(0.1, 0.4, "zeros"), (0.4, 0.1, "loop")]
)
def test_bam_aligns_downbeats(
    write_audio: WriteAudio, offset_a: float, offset_b: float, fill: str
) -> None:
    a = _load(write_audio("a.wav", click_track(120, SECONDS, offset_s=offset_a)))
    b = _load(write_audio("b.wav", click_track(120, SECONDS, offset_s=offset_b)))
    res = beat_aligned_mixup(a, b, SR, rng=np.random.default_rng(0), fill=fill)  # type: ignore[arg-type]
    assert res.mix.shape == a.shape and res.aligned_other.shape == a.shape
    assert 0.0 < res.lam < 1.0
    np.testing.assert_allclose(res.mix, res.lam * a + (1 - res.lam) * res.aligned_other, atol=1e-6)
    # before: first downbeats 0.3 s apart; after: the aligned source's downbeats coincide
    before = abs(track_beats(a, SR).first_downbeat - track_beats(b, SR).first_downbeat)
    assert before == pytest.approx(0.3, abs=TOL_S)
    da = track_beats(a, SR).downbeat_times
    db = track_beats(res.aligned_other, SR).downbeat_times
    assert abs(da[0] - db[0]) <= TOL_S, (da, db)
    n = min(len(da), len(db))
    assert np.max(np.abs(da[:n] - db[:n])) <= TOL_S
    # and the mix itself tracks with the same downbeats
    dm = track_beats(res.mix, SR).downbeat_times
    assert abs(dm[0] - da[0]) <= TOL_S


def test_bam_seeded_and_tempo_check() -> None:
    a = click_track(120, SECONDS, offset_s=0.1)
    b = click_track(120, SECONDS, offset_s=0.4)
    r1 = beat_aligned_mixup(a, b, SR, rng=np.random.default_rng(9))
    r2 = beat_aligned_mixup(a, b, SR, rng=np.random.default_rng(9))
    assert r1.lam == r2.lam
    np.testing.assert_array_equal(r1.mix, r2.mix)
    c = click_track(90, SECONDS, offset_s=0.1)
    with pytest.raises(ValueError, match="differ by more than"):
        beat_aligned_mixup(a, c, SR, lam=0.5, max_tempo_diff_bpm=3.0)


def test_beat_sync_mixup_pairs_within_tempo_group() -> None:
    clips = [
        click_track(120, SECONDS, offset_s=0.1),
        click_track(121, SECONDS, offset_s=0.4),
        click_track(90, SECONDS, offset_s=0.2),
        np.zeros(2 * SR, np.float32),  # no pulse: never paired
    ]
    bsm = BeatSyncMixup(clips, SR, tolerance_bpm=3.0, seed=0)
    assert bsm.partners(0) == [1] and bsm.partners(1) == [0]
    assert bsm.partners(2) == [] and bsm.partners(3) == []
    assert bsm(2) is None and bsm(3) is None
    res = bsm(0)
    assert res is not None and res.mix.shape == clips[0].shape


# --------------------------------------------------------------------------------- BLM


def test_blm_shift_and_mix_on_marker_latents() -> None:
    fps = latent_frames_per_second()  # 16 kHz / hop 160 / 4 = 25 frames/s
    assert fps == 25.0
    z_a = torch.zeros(8, 64, 16)
    z_b = torch.zeros(8, 64, 16)
    z_a[:, 10] = 1.0  # downbeat of a at frame 10 = 0.4 s
    z_b[:, 22] = 2.0  # downbeat of b at frame 22 = 0.88 s
    res = beat_aligned_latent_mixup(z_a, z_b, fps, 10 / fps, 22 / fps, lam=0.3)
    assert res.shift_frames == -12
    assert res.mix.shape == z_a.shape
    assert torch.all(res.aligned_other[:, 10] == 2.0)
    torch.testing.assert_close(res.mix, 0.3 * z_a + 0.7 * res.aligned_other)
    assert torch.all(res.aligned_other[:, -12:] == 0)  # zero fill after advancing
    looped = beat_aligned_latent_mixup(z_a, z_b, fps, 0.4, 0.88, lam=0.5, fill="loop")
    torch.testing.assert_close(looped.aligned_other, torch.roll(z_b, -12, dims=-2))
    # batched latents: same shift on the frame axis
    batched = beat_aligned_latent_mixup(z_a[None], z_b[None], fps, 0.4, 0.88, lam=0.5)
    torch.testing.assert_close(batched.aligned_other[0], res.aligned_other)
    with pytest.raises(ValueError, match="shapes differ"):
        beat_aligned_latent_mixup(z_a, z_b[:, :10], fps, 0.0, 0.0)


def test_blm_shift_from_tracked_downbeats() -> None:
    fps = 25.0
    a = click_track(120, SECONDS, offset_s=0.1)
    b = click_track(120, SECONDS, offset_s=0.5)  # 0.4 s = 10 latent frames later
    ia, ib = track_beats(a, SR), track_beats(b, SR)
    z = torch.randn(2, 8, 150, 16, generator=torch.Generator().manual_seed(0))
    res = beat_aligned_latent_mixup(z[0], z[1], fps, ia, ib, rng=np.random.default_rng(0))
    assert res.shift_frames == -10
    assert 0.0 < res.lam < 1.0
