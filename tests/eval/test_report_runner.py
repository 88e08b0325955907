"""End-to-end evaluation on synthetic files with known tempo, key and loudness."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from rich.console import Console
from transformers import ClapModel

from dreamsampler.eval.clap import ClapEmbedder
from dreamsampler.eval.music import integrated_loudness
from dreamsampler.eval.report import CORE_METRICS, EvalReport
from dreamsampler.eval.runner import GeneratedClip, collect_audio, compare_reports, evaluate_folders

from .conftest import song
from .test_clap import make_tokenizer, tiny_config


@pytest.fixture(scope="module")
def clap() -> ClapEmbedder:
    torch.manual_seed(1)
    tok = make_tokenizer()
    return ClapEmbedder(ClapModel(tiny_config(len(tok))), tok)


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("train")
    paths = []
    for i, (tonic, stereo_sr) in enumerate([(60, 16000), (60, 44100), (48, 22050)]):
        y = song(tonic, "major", 120.0, stereo_sr) * (0.9 - 0.1 * i)
        p = d / f"train_{i}.wav"
        sf.write(p, np.stack([y, y], axis=1) if i == 1 else y, stereo_sr)  # one stereo file
        paths.append(p)
    return paths


def test_identical_sets_known_values(
    training: list[Path], clap: ClapEmbedder, tmp_path: Path
) -> None:
    gen_dir = tmp_path / "gen"
    gen_dir.mkdir()
    copies = [Path(shutil.copy(p, gen_dir / f"gen_{i}.wav")) for i, p in enumerate(training)]
    generated = {"a recording of a guitar": copies[:2], "a guitar in a jazz style": copies[2:]}
    report = evaluate_folders(generated, training, clap, tmp_path / "out", concept="sks-guitar")

    assert set(CORE_METRICS) <= set(report.metrics)
    assert report.value("sim_aa_90") == 1.0 and report.value("sim_aa_95") == 1.0
    assert report.metrics["sim_aa_95"].n == 3
    fad = report.metrics["fad"]
    assert fad.value == pytest.approx(0.0, abs=1e-6) and "50" in (fad.warning or "")
    assert -1.0 <= report.value("clap_a") <= 1.0  # type: ignore[operator]
    assert report.metrics["clap_a"].detail["pairs"] == 9
    clap_t = report.metrics["clap_t"]
    assert clap_t.n == 3 and set(clap_t.detail["per_prompt"]) == set(generated)
    assert report.value("key") == "C major" and report.value("key_match") == 1.0
    assert abs(report.value("bpm") - 120.0) < 1.0  # type: ignore[operator]
    assert report.value("bpm_delta") == pytest.approx(0.0, abs=0.5)
    assert report.value("lufs_delta") == pytest.approx(0.0, abs=1e-6)

    out = tmp_path / "out"
    data = json.loads((out / "report.json").read_text())
    for key in CORE_METRICS:
        assert {"value", "n", "warning"} <= set(data[key])
    assert data["meta"]["concept"] == "sks-guitar"
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert {r["metric"] for r in rows} >= set(CORE_METRICS)
    for png in ("clap_a_vs_clap_t.png", "metrics.png"):
        assert (out / png).stat().st_size > 1000
    assert EvalReport.read_json(out / "report.json").value("key_match") == 1.0
    assert collect_audio(gen_dir) == sorted(copies)


def test_partial_report_without_clap(training: list[Path], tmp_path: Path) -> None:
    sr = 22050
    quiet_c = song(60, "major", 120.0, sr) * 0.5
    g_major = song(67, "major", 120.0, sr) * 0.5
    files = {
        "quiet_c.wav": quiet_c,
        "g_major.wav": g_major,
        "silent.wav": np.zeros(sr * 4),
        "short.wav": quiet_c[: int(0.3 * sr)],
    }
    for name, y in files.items():
        sf.write(tmp_path / name, y, sr)
    gen = [GeneratedClip(tmp_path / n, prompt="a guitar") for n in files]
    latents = torch.randn(2, 8, 16, 4, generator=torch.Generator().manual_seed(0))
    report = evaluate_folders(gen, training, None, None, generated_latents=latents)

    for key in ("clap_a", "clap_t", "sim_aa_90", "sim_aa_95", "fad"):
        assert report.value(key) is None and "no CLAP" in (report.metrics[key].error or "")
    assert any("silent.wav" in w for w in report.meta.warnings)
    assert report.meta.n_generated == 3
    assert report.metrics["bpm"].n == 2  # the 0.3 s clip has no tempo
    assert "short.wav" in json.dumps(report.metrics["bpm"].detail["per_clip"])
    assert report.value("key_match") == pytest.approx(0.5) and report.metrics["key_match"].n == 2
    ref_lufs = np.mean(
        [
            integrated_loudness(sf.read(p, always_2d=True)[0].T, sf.info(p).samplerate)
            for p in training
        ]
    )
    expected = (
        np.mean([integrated_loudness(quiet_c, sr), integrated_loudness(g_major, sr)]) - ref_lufs
    )
    assert report.value("lufs_delta") == pytest.approx(expected, abs=0.05)
    assert report.value("latent_l2") is not None and report.metrics["latent_l2"].n == 2
    Console(file=open("/dev/null", "w")).print(report.table())  # noqa: SIM115


def test_rejects_empty_and_silent_sets(training: list[Path], tmp_path: Path) -> None:
    silent = tmp_path / "s.wav"
    sf.write(silent, np.zeros(16000), 16000)
    with pytest.raises(ValueError, match=r"silent.*s\.wav"):
        evaluate_folders([silent], training, None)
    with pytest.raises(ValueError, match="no training clips"):
        evaluate_folders(training, [], None)
    with pytest.raises(ValueError, match="no generated clips"):
        evaluate_folders([], training, None)
    with pytest.raises(ValueError, match=r"missing\.wav"):
        evaluate_folders([tmp_path / "missing.wav"], training, None)


def test_compare_reports(tmp_path: Path) -> None:
    a, b = EvalReport(), EvalReport()
    a.meta.concept, b.meta.concept = "dog", "cat"
    a.set("clap_a", 0.8, 10)
    a.set("clap_t", 0.3, 10)
    b.set("clap_a", 0.6, 12)
    b.set("clap_t", 0.5, 12)
    b.fail("fad", "too few clips")
    assert b.set("lufs", float("nan"), 3).error == "non-finite value nan"
    files = compare_reports({"dog": a, "cat": b}, tmp_path)
    rows = list(csv.DictReader(files["csv"].open()))
    assert {(r["concept"], r["metric"], r["value"]) for r in rows} >= {
        ("dog", "clap_a", "0.8"),
        ("cat", "clap_t", "0.5"),
    }
    assert json.loads(files["json"].read_text())["cat"]["fad"]["error"] == "too few clips"
    assert files["scatter"].stat().st_size > 1000 and files["bars"].stat().st_size > 1000
