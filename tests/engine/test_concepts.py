"""Concept format, refusals, load/unload and checkpoints/resume, on the plain tiny model."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from dreamsampler.cli import main
from dreamsampler.engine.concepts import (
    CONCEPT_FILE,
    ConceptError,
    ConceptManager,
    ConceptNotLoadedError,
    check_name,
    fingerprint,
    read_concept,
    token_embedding,
)
from dreamsampler.engine.families import ModelFamily, load_model
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample
from dreamsampler.engine.training.trainer import TrainingError, TrainSettings, train
from tests.engine import toy_world as toy

FAST = {"steps": 4, "checkpoint_every": 0, "lr": 1e-2}


def _request(prompt: str, concept: str | None = None, scale: float = 1.0) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, seed=1, num_inference_steps=3, duration=0.5,
                             concept=concept, lora_scale=scale)


@pytest.fixture(scope="module")
def concepts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ti (2 vectors), ti2, lora and db concepts trained briefly on the built-in tiny model."""
    root = tmp_path_factory.mktemp("concepts")
    clips = toy.concept_clips(3)
    for method, name, extra in [("ti", "ti", {"num_vectors": 2}), ("ti", "ti2", {}),
                                ("lora", "lora", {}), ("dreambooth", "db", {})]:
        train(load_model("tiny", "cpu"),
              TrainSettings(method=method, name=name, grad_accum=1, **FAST, **extra),  # type: ignore[arg-type]
              clips, root)
    return root


@pytest.fixture
def model() -> Iterator[ModelFamily]:
    yield load_model("tiny", "cpu")


def test_names_with_path_characters_are_refused(tmp_path: Path, model: ModelFamily) -> None:
    for bad in ("../evil", "a/b", "a b", "", ".hidden", "x" * 65, "c:\\x"):
        with pytest.raises(ConceptError, match="invalid concept name"):
            check_name(bad)
    manager = ConceptManager(model, tmp_path)
    with pytest.raises(ConceptError, match=r"'\.\./x'.*path characters"):
        manager.load("../x")
    with pytest.raises(ConceptError, match="invalid concept name"):
        train(model, TrainSettings(method="ti", name="a/b"), toy.concept_clips(1), tmp_path)


def test_ti_load_unload_restores_vocabulary(concepts: Path, model: ModelFamily) -> None:
    text_encoder = model.components["text_encoder"]
    rows = token_embedding(text_encoder).weight.detach().clone()
    vocab = len(model.components["tokenizer"])
    base_audio = sample(model, _request("a plucked tone")).audio
    manager = ConceptManager(model, concepts)
    manager.load("ti")
    manager.load("ti2")
    assert len(model.components["tokenizer"]) == vocab + 3
    assert model.token_expansions == {"<ti>": "<ti>_0 <ti>_1"}
    learned = load_file(str(concepts / "ti" / "learned_embeds.safetensors"))["<ti>"]
    ids = model.components["tokenizer"].convert_tokens_to_ids(["<ti>_0", "<ti>_1"])
    assert torch.equal(token_embedding(text_encoder).weight[ids], learned)
    both = sample(model, _request("a <ti> and a <ti2>")).audio
    assert not np.array_equal(both, sample(model, _request("a <ti> and a x")).audio)
    manager.unload("ti")  # the other TI concept keeps working, with the same rows
    assert len(model.components["tokenizer"]) == vocab + 1
    np.testing.assert_array_equal(sample(model, _request("a <ti2>")).audio,
                                  sample(model, _request("a <ti2>")).audio)
    manager.unload("ti2")
    table = token_embedding(text_encoder).weight.detach()
    assert len(model.components["tokenizer"]) == vocab and torch.equal(table, rows)
    np.testing.assert_array_equal(sample(model, _request("a plucked tone")).audio, base_audio)
    with pytest.raises(ConceptNotLoadedError, match="not loaded"):
        manager.unload("ti")


def test_lora_and_dreambooth_only_for_the_requests_that_name_them(concepts: Path,
                                                                  model: ModelFamily) -> None:
    prompt = "a recording of a <lora> sound"
    base = sample(model, _request(prompt)).audio
    manager = ConceptManager(model, concepts)
    manager.load("lora")
    manager.load("db")
    np.testing.assert_array_equal(sample(model, _request(prompt)).audio, base)
    with_lora = sample(model, _request(prompt, "lora")).audio
    assert not np.array_equal(with_lora, base)
    half = sample(model, _request(prompt, "lora", 0.5)).audio
    assert not np.array_equal(half, with_lora)
    np.testing.assert_array_equal(sample(model, _request(prompt, "lora", 0.0)).audio, base)
    with_db = sample(model, _request(prompt, "db")).audio
    assert not np.array_equal(with_db, base)
    np.testing.assert_array_equal(sample(model, _request(prompt)).audio, base)
    with pytest.raises(ConceptNotLoadedError, match=r"'nope'.*not loaded \(loaded: lora, db\)"):
        sample(model, _request(prompt, "nope"))
    manager.unload("lora")
    manager.unload("db")
    np.testing.assert_array_equal(sample(model, _request(prompt)).audio, base)
    with pytest.raises(ConceptNotLoadedError):
        sample(model, _request(prompt, "lora"))


def _copy(concepts: Path, tmp_path: Path, name: str, new: str | None = None) -> Path:
    target = tmp_path / (new or name)
    shutil.copytree(concepts / name, target)
    if new:
        meta = yaml.safe_load((target / CONCEPT_FILE).read_text())
        meta["name"] = new
        if meta["method"] == "ti":
            meta["placeholder_token"] = f"<{new}>"
            embeds = load_file(str(target / "learned_embeds.safetensors"))
            from safetensors.torch import save_file

            save_file({f"<{new}>": next(iter(embeds.values()))},
                      str(target / "learned_embeds.safetensors"))
        (target / CONCEPT_FILE).write_text(yaml.safe_dump(meta))
    return target


def test_refusals_name_the_file_and_lose_nothing(concepts: Path, tmp_path: Path,
                                                 model: ModelFamily) -> None:
    lib = tmp_path / "lib"
    for name in ("ti", "lora"):
        _copy(concepts, lib, name)
    manager = ConceptManager(model, lib)
    manager.load("ti")
    manager.load("lora")
    prompt = "a <ti> sound"
    before = sample(model, _request(prompt, "lora")).audio

    pickled = _copy(concepts, lib, "lora", "pickled")
    (pickled / "pytorch_lora_weights.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(ConceptError) as err:
        manager.load("pickled")
    message = str(err.value)
    assert "pytorch_lora_weights.bin" in message and "not a safetensors file" in message

    clash = _copy(concepts, lib, "ti2", "clash")
    meta = yaml.safe_load((clash / CONCEPT_FILE).read_text())
    meta["placeholder_token"] = "a"  # a word of the base vocabulary
    (clash / CONCEPT_FILE).write_text(yaml.safe_dump(meta))
    with pytest.raises(ConceptError, match=r"concept.yaml: placeholder token 'a' is already in"):
        manager.load("clash")
    again = _copy(concepts, lib, "ti", "again")  # same token as the loaded "ti"
    meta = yaml.safe_load((again / CONCEPT_FILE).read_text())
    meta["placeholder_token"] = "<ti>"
    (again / CONCEPT_FILE).write_text(yaml.safe_dump(meta))
    with pytest.raises(ConceptError, match=r"'<ti>_0' is already in the vocabulary"):
        manager.load("again")

    broken = _copy(concepts, lib, "lora", "broken")
    (broken / CONCEPT_FILE).write_text("name: broken\nmethod: gan\n")
    with pytest.raises(ConceptError, match=r"broken/concept.yaml: invalid: method"):
        manager.load("broken")
    with pytest.raises(ConceptError, match="already loaded"):
        manager.load("lora")
    with pytest.raises(ConceptError, match="no such concept folder"):
        manager.load("ghost")

    assert [c.name for c in manager.loaded()] == ["ti", "lora"]
    np.testing.assert_array_equal(sample(model, _request(prompt, "lora")).audio, before)


def test_concept_for_another_base_model_is_refused(concepts: Path, tmp_path: Path) -> None:
    other = toy.load_base(toy.save_tiny_pipeline(tmp_path / "other", seed=1))
    manager = ConceptManager(other, concepts)
    with pytest.raises(ConceptError) as err:
        manager.load("lora")
    message = str(err.value)
    assert "lora/concept.yaml" in message and "trained for base model 'tiny'" in message
    assert f"the loaded model is '{tmp_path / 'other'}'" in message
    assert manager.loaded() == []
    # the same weights saved to disk and loaded from_pretrained have the same fingerprint
    same = load_model(str(toy.save_tiny_pipeline(tmp_path / "same")), "cpu")
    assert fingerprint(same) == read_concept(concepts / "lora").base_fingerprint
    ConceptManager(same, concepts).load("lora")


def test_existing_concept_is_not_overwritten(concepts: Path, model: ModelFamily) -> None:
    stamp = (concepts / "ti" / CONCEPT_FILE).read_bytes()
    with pytest.raises(ConceptError, match="already exists"):
        train(model, TrainSettings(method="ti", name="ti", **FAST), toy.concept_clips(1),
              concepts)
    assert (concepts / "ti" / CONCEPT_FILE).read_bytes() == stamp
    with pytest.raises(ConceptError, match="already in the vocabulary"):
        train(model, TrainSettings(method="ti", name="v", placeholder_token="a", **FAST),
              toy.concept_clips(1), concepts)


@pytest.mark.parametrize("method", ["ti", "lora"])
def test_interrupted_run_resumes_exactly(tmp_path: Path, method: str) -> None:
    settings = TrainSettings(method=method, name="res", steps=6, checkpoint_every=2, lr=1e-2,
                             grad_accum=2)  # type: ignore[arg-type]
    clips = toy.concept_clips(2)
    straight = train(load_model("tiny", "cpu"), settings, clips, tmp_path / "a")

    def stop_after_5(step: int, total: int, loss: float) -> None:
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(load_model("tiny", "cpu"), settings, clips, tmp_path / "b", on_step=stop_after_5)
    folder = tmp_path / "b" / "res"
    assert not (folder / CONCEPT_FILE).exists()
    assert [p.name for p in (folder / "checkpoints").iterdir()] == ["step-00000004"]
    with pytest.raises(ConceptError, match=r"missing .training did not finish"):
        read_concept(folder)
    with pytest.raises(ConceptError, match="pass --resume"):
        train(load_model("tiny", "cpu"), settings, clips, tmp_path / "b")
    with pytest.raises(TrainingError, match=r"settings differ.*seed"):
        train(load_model("tiny", "cpu"), dataclasses.replace(settings, seed=9), clips,
              tmp_path / "b", resume=True)
    resumed = train(load_model("tiny", "cpu"), settings, clips, tmp_path / "b", resume=True)
    assert resumed.resumed_from == 4 and resumed.losses == straight.losses
    weights = "learned_embeds.safetensors" if method == "ti" else "pytorch_lora_weights.safetensors"
    a = load_file(str(tmp_path / "a" / "res" / weights))
    b = load_file(str(folder / weights))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_train_and_concepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = toy.save_tiny_pipeline(tmp_path / "base")
    clips = toy.write_clips(tmp_path / "clips", toy.concept_clips(2))
    others = toy.write_clips(tmp_path / "others", toy.contrast_clips(), stem="other")
    assert others
    common = ["--model", str(base), "--concepts-dir", str(tmp_path / "c"), "--device", "cpu"]
    code = main(["train", "lora", "--name", "riff", "--clips", str(tmp_path / "clips"),
                 "--steps", "2", "--clip-seconds", "1", "--rank", "2",
                 "--mix-dir", str(tmp_path / "others"), "--mix-snr", "10", *common])
    assert code == 0
    meta = read_concept(tmp_path / "c" / "riff")
    assert meta.method == "lora" and meta.training["rank"] == 2 and meta.training["mix"]
    assert [Path(c.path).name for c in meta.clips] == ["clip0.wav", "clip1.wav"]
    assert main(["train", "lora", "--name", "riff", "--clips", str(clips[0].parent),
                 "--steps", "2", "--clip-seconds", "1", *common]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["train", "ti", "--name", "x", "--clips", str(tmp_path / "none"),
                 "--clip-seconds", "1", *common]) == 1
    assert "concept folder does not exist" in capsys.readouterr().err
    assert main(["concepts", "list", *common]) == 0
    assert "riff" in capsys.readouterr().out
    assert main(["concepts", "show", "riff", *common]) == 0
    assert "method: lora" in capsys.readouterr().out
