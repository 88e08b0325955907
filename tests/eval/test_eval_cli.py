"""``dreamsampler eval`` end to end: a briefly trained tiny concept, a tiny random CLAP, real files.

The numbers of a random-weight model mean nothing; the test checks the plumbing: every metric the
report promises is there with the n it rests on, the files are written, and bad input is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import ClapModel

from dreamsampler.cli import main
from dreamsampler.engine.families import load_model
from dreamsampler.engine.training.clips import load_concept_clips
from dreamsampler.engine.training.trainer import TrainSettings, train
from dreamsampler.eval.clap import ClapEmbedder
from tests.engine import toy_world as toy
from tests.eval.test_clap import make_tokenizer, tiny_config

KEYS = ("clap_a", "clap_t", "sim_aa_90", "sim_aa_95", "fad", "bpm", "key", "lufs",
        "bpm_delta", "key_match", "lufs_delta")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evalcli")
    paths = toy.write_clips(root / "clips", toy.concept_clips(3))
    clips = load_concept_clips(root / "clips", 16000, 16000)
    for method, name in (("lora", "pluck"), ("ti", "pluck-ti")):
        train(load_model("tiny", "cpu"),
              TrainSettings(method=method, name=name, steps=2, grad_accum=1,  # type: ignore[arg-type]
                            checkpoint_every=0, class_word="pluck"),
              clips, root / "concepts", clip_paths=paths)
    torch.manual_seed(0)
    tokenizer = make_tokenizer()
    ClapEmbedder(ClapModel(tiny_config(len(tokenizer))), tokenizer).save_pretrained(root / "clap")
    return {"root": root, "concepts": root / "concepts", "clap": root / "clap"}


def _args(setup: dict[str, Path], *extra: str) -> list[str]:
    return ["eval", "--model", "tiny", "--device", "cpu", "--concepts-dir",
            str(setup["concepts"]), "--steps", "2", "--duration", "1", "--n", "2", *extra]


def test_eval_writes_report_table_and_plots(setup: dict[str, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = setup["root"] / "report-pluck"
    assert main(_args(setup, "--concept", "pluck", "--clap", str(setup["clap"]),
                      "--out", str(out))) == 0
    report = json.loads((out / "report.json").read_text())
    for key in KEYS:
        assert key in report, key
    # 3 reconstruction prompts × 2 seeds for CLAP-A; 5 editability prompts × 2 seeds for CLAP-T
    assert report["clap_a"]["n"] == 6 and report["clap_t"]["n"] == 10
    assert -1.0 <= report["clap_a"]["value"] <= 1.0
    assert 0.0 <= report["sim_aa_90"]["value"] <= 1.0
    assert report["fad"]["warning"], "FAD at n=6 is flagged as biased"
    assert report["latent_cosine"]["n"] == 16
    assert len(list((out / "generated").glob("*.wav"))) == 16
    assert (out / "report.csv").exists() and list(out.glob("*.png"))
    assert "clap_a" in capsys.readouterr().out


def test_eval_without_clap_writes_a_partial_report(setup: dict[str, Path]) -> None:
    out = setup["root"] / "partial"
    assert main(_args(setup, "--concept", "pluck-ti", "--out", str(out), "--no-plots")) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["clap_a"]["error"] == "no CLAP model given"
    assert report["lufs"]["error"] is None and report["lufs"]["n"] == 6


def test_eval_of_given_clips_and_compare(setup: dict[str, Path]) -> None:
    generated = setup["root"] / "report-pluck" / "generated"
    if not generated.exists():
        pytest.skip("needs the first test's clips")
    out = setup["root"] / "given"
    assert main(_args(setup, "--concept", "pluck", "--generated", str(generated),
                      "--clap", str(setup["clap"]), "--out", str(out), "--no-plots")) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["clap_a"]["n"] == 6 and report["clap_t"]["n"] == 10
    both = setup["root"] / "compare"
    assert main(_args(setup, "--compare", "pluck", "pluck-ti", "--clap", str(setup["clap"]),
                      "--out", str(both), "--n", "1")) == 0
    for name in ("pluck", "pluck-ti"):
        assert (both / name / "report.json").exists()
    assert list(both.glob("*.png")) and list(both.glob("*.csv"))


def test_eval_refusals(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_args(setup, "--concept", "nope", "--out", str(setup["root"] / "x"))) == 1
    assert "nope" in capsys.readouterr().err
    assert main(_args(setup, "--concept", "pluck", "--clips", str(setup["root"] / "empty"),
                      "--out", str(setup["root"] / "y"))) == 1
    assert "empty: not a directory" in capsys.readouterr().err
    (setup["root"] / "empty").mkdir(exist_ok=True)
    assert main(_args(setup, "--concept", "pluck", "--clips", str(setup["root"] / "empty"),
                      "--out", str(setup["root"] / "y"))) == 1
    assert "empty: no audio files" in capsys.readouterr().err
    assert main(_args(setup, "--concept", "pluck", "--clap", str(setup["root"] / "noclap"),
                      "--out", str(setup["root"] / "z"))) == 1
    assert "CLAP" in capsys.readouterr().err
