"""The stems stage against Demucs' own ``apply_model`` on the same random weights."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("demucs")

from demucs.apply import BagOfModels, apply_model
from demucs.htdemucs import HTDemucs

from dreamsampler.engine.jobs import JobFailed, JobFinished, JobProgress, LocalEngine
from dreamsampler.engine.level import NonFiniteAudioError
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.stems import (
    SOURCES,
    SeparationRequest,
    StemsError,
    load_separator,
    separate,
    tiny_htdemucs,
)
from tests.band import render_band

ATOL = 1e-6
"""Our separation and Demucs' run the same torch ops on the same tensors in one process: they may
differ only by float32 rounding."""


def reference(model: object, audio: np.ndarray, shifts: int, overlap: float, seed: int
              ) -> np.ndarray:
    """What demucs.api.Separator.separate_tensor computes (normalise, apply_model, undo)."""
    wav = torch.from_numpy(audio)
    ref = wav.mean(0)
    mean, std = ref.mean(), ref.std() + 1e-8
    random.seed(seed)
    out = apply_model(model, ((wav - mean) / std)[None], shifts=shifts, split=True,
                      overlap=overlap)
    return (out * std + mean)[0].numpy()


@pytest.fixture(scope="module")
def band(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1.5 s of drums, bass and chords (several 0.5 s segments of the tiny model)."""
    path = render_band(tmp_path_factory.mktemp("band") / "band.wav", bars=1, bpm=160.0)
    audio, rate = sf.read(path, dtype="float32", frames=int(1.5 * 44100) + 11)
    sf.write(path, audio, rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize(("shifts", "overlap"), [(0, 0.25), (1, 0.25), (2, 0.5)])
def test_separation_equals_demucs_apply_model(band: Path, shifts: int, overlap: float) -> None:
    audio, rate = sf.read(band, dtype="float32", always_2d=True)
    audio = np.ascontiguousarray(audio.T)
    assert rate == 44100 and audio.shape[-1] > 44100
    model = tiny_htdemucs()
    ours = separate(model, audio, rate, shifts=shifts, overlap=overlap, seed=7)
    theirs = reference(model, audio, shifts, overlap, seed=7)
    assert list(ours) == list(SOURCES)
    for k, name in enumerate(SOURCES):
        assert ours[name].shape == audio.shape
        np.testing.assert_allclose(ours[name], theirs[k], atol=ATOL, rtol=0)
    # not a trivial pass: another seed moves the random shifts, and the model is not silent
    if shifts:
        other = separate(model, audio, rate, shifts=shifts, overlap=overlap, seed=8)
        assert not np.allclose(other["drums"], ours["drums"], atol=ATOL)
    assert max(float(np.abs(s).max()) for s in ours.values()) > 1e-4


def test_other_rates_and_mono_keep_the_length() -> None:
    rng = np.random.default_rng(0)
    mono = (0.1 * rng.standard_normal(22050 + 17)).astype(np.float32)
    stems = separate(tiny_htdemucs(), mono, 22050, shifts=0)
    assert all(s.shape == (2, mono.size) and s.dtype == np.float32 for s in stems.values())
    assert all(np.isfinite(s).all() for s in stems.values())


def test_non_finite_input_is_refused() -> None:
    audio = np.zeros((2, 4410), dtype=np.float32)
    audio[0, 5] = np.nan
    with pytest.raises(NonFiniteAudioError):
        separate(tiny_htdemucs(), audio, 44100)


def test_local_folder_loads_through_demucs_repo(tmp_path: Path, band: Path) -> None:
    """A Demucs repo folder (a .th package and a .yaml bag) loads through
    demucs.pretrained.get_model and separates as the model it holds."""
    model = tiny_htdemucs(seed=3)
    args, kwargs = model._init_args_kwargs
    package = {"klass": HTDemucs, "args": args, "kwargs": kwargs,
               "state": {k: v.clone() for k, v in model.state_dict().items()}}
    torch.save(package, tmp_path / "a1b2c3d4.th")
    (tmp_path / "mybag.yaml").write_text("models: ['a1b2c3d4']\n")
    loaded, info = load_separator(str(tmp_path))
    assert isinstance(loaded, BagOfModels) and info.sources == SOURCES
    assert info.model_id == str(tmp_path) and info.version
    audio, rate = sf.read(band, dtype="float32", always_2d=True, frames=44100)
    audio = np.ascontiguousarray(audio.T)
    ours = separate(loaded, audio, rate, shifts=0)
    theirs = reference(model, audio, 0, 0.25, 0)
    np.testing.assert_allclose(ours["bass"], theirs[1], atol=ATOL, rtol=0)


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StemsError, match="stems model folder"):
        load_separator(str(tmp_path))  # an empty folder


def test_local_engine_separates_and_generates_with_stems(band: Path) -> None:
    async def run() -> tuple[list[object], list[object]]:
        engine = LocalEngine("tiny", device="cpu", stems_model="tiny")
        await engine.start()
        try:
            job, _ = engine.submit(SeparationRequest(band, seed=1), 1)
            first = [e async for e in job.events()]
            job, _ = engine.submit(GenerationRequest("drums", num_inference_steps=2,
                                                     duration=0.5, stems=1), 2)
            second = [e async for e in job.events()]
        finally:
            await engine.close()
        return first, second

    first, second = asyncio.run(run())
    done = first[-1]
    assert isinstance(done, JobFinished), done
    audio, rate = sf.read(band, dtype="float32", always_2d=True)
    assert done.result.sample_rate == rate
    assert set(done.result.stems) == set(SOURCES)
    expected = separate(tiny_htdemucs(), audio.T.copy(), rate, seed=1)
    np.testing.assert_allclose(done.result.stems["vocals"], expected["vocals"], atol=ATOL)
    assert done.result.record["stems"]["model"] == "tiny"
    fractions = [e.fraction for e in first if isinstance(e, JobProgress)]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0

    gen = second[-1]
    assert isinstance(gen, JobFinished), gen
    clip = gen.result
    assert clip.stems is not None and set(clip.stems) == set(SOURCES)
    assert all(s.shape[-1] == clip.audio.shape[-1] for s in clip.stems.values())
    steps = [e for e in second if isinstance(e, JobProgress)]
    assert len({e.total for e in steps}) == 1  # one total over both stages
    assert steps[-1].step == steps[-1].total
    assert steps[1].step == 2 and steps[1].step < steps[1].total  # denoising, then stems


def test_bad_stems_model_fails_the_job_only(tmp_path: Path) -> None:
    async def run() -> object:
        engine = LocalEngine("tiny", device="cpu", stems_model=str(tmp_path / "nowhere"))
        await engine.start()
        try:
            job, _ = engine.submit(GenerationRequest("x", num_inference_steps=1, duration=0.2,
                                                     stems=1), 1)
            return await job.wait()
        finally:
            await engine.close()

    failed = asyncio.run(run())
    assert isinstance(failed, JobFailed) and "stems model" in failed.message


def test_cli_separate(band: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dreamsampler.cli import main

    assert main(["separate", str(band), "--model", "tiny", "-o", str(tmp_path / "out"),
                 "--set", "output.subtype=FLOAT", "--set", "output.sample_rate=native"]) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert folder == tmp_path / "out" / "band.stems"
    audio, rate = sf.read(band, dtype="float32", always_2d=True)
    expected = separate(tiny_htdemucs(), audio.T.copy(), rate)
    for name in SOURCES:
        stem, file_rate = sf.read(folder / f"band.{name}.wav", dtype="float32", always_2d=True)
        assert file_rate == rate
        np.testing.assert_allclose(stem.T, expected[name], atol=ATOL)
    assert main(["separate", str(tmp_path / "missing.wav"), "--model", "tiny"]) == 1
