"""Concept files that must be refused on load: non-finite weights, links leading outside."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dreamsampler.engine.concepts import TI_FILE, ConceptError, ConceptManager
from dreamsampler.engine.families import load_model
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample
from tests.engine.handmade import dreambooth_concept, lora_concept, ti_concept


def _manager(root: Path) -> ConceptManager:
    return ConceptManager(load_model("tiny", "cpu"), root)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_ti_embedding_with_non_finite_values_is_refused(tmp_path: Path, value: float) -> None:
    folder = ti_concept(tmp_path, "broken")
    tensors = load_file(str(folder / TI_FILE))
    tensors["<broken>"][0, 3] = value
    save_file(tensors, str(folder / TI_FILE))
    manager = _manager(tmp_path)
    with pytest.raises(ConceptError, match=r"learned_embeds.safetensors: tensor '<broken>' "
                       r"holds 1 NaN or infinite value"):
        manager.load("broken")
    assert manager.loaded() == []
    # the model is untouched: a clean concept still loads and generates finite audio
    ti_concept(tmp_path, "fine")
    manager.load("fine")
    audio = sample(manager.model, GenerationRequest("a <fine> pad", num_inference_steps=2,
                                                    duration=0.5)).audio
    assert torch.isfinite(torch.from_numpy(audio)).all()


def test_lora_and_dreambooth_with_non_finite_weights_are_refused(tmp_path: Path) -> None:
    lora_concept(tmp_path, "tint", poison=True)
    dreambooth_concept(tmp_path, "db", poison=True)
    manager = _manager(tmp_path)
    with pytest.raises(ConceptError, match=r"pytorch_lora_weights.safetensors: tensor .* "
                       r"NaN or infinite"):
        manager.load("tint")
    with pytest.raises(ConceptError, match=r"unet: tensor .* NaN or infinite"):
        manager.load("db")
    assert manager.loaded() == []
    assert "tint" not in getattr(manager.model.components["unet"], "peft_config", {})
    # the same files without the poison load
    shutil.rmtree(tmp_path / "tint")
    shutil.rmtree(tmp_path / "db")
    lora_concept(tmp_path, "tint")
    dreambooth_concept(tmp_path, "db")
    assert [manager.load(n).name for n in ("tint", "db")] == ["tint", "db"]


def test_weights_linked_from_outside_the_concept_folder_are_refused(tmp_path: Path) -> None:
    concepts = tmp_path / "concepts"
    folder = ti_concept(concepts, "linked")
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(folder / TI_FILE, outside)
    (folder / TI_FILE).symlink_to(outside)
    manager = _manager(concepts)
    with pytest.raises(ConceptError, match=r"linked/learned_embeds.safetensors: a symbolic "
                       r"link to .*elsewhere.safetensors, outside the concept folder"):
        manager.load("linked")
    # a link that stays inside the folder is fine
    (folder / TI_FILE).unlink()
    shutil.move(outside, folder / "embeds.safetensors")
    (folder / TI_FILE).symlink_to("embeds.safetensors")
    assert manager.load("linked").name == "linked"


def test_a_concept_folder_that_is_itself_a_link_to_outside_is_refused(tmp_path: Path) -> None:
    """Issue 22: ``concepts/evil -> /elsewhere/folder`` loaded (the check resolved the link
    first, so everything in it looked inside)."""
    concepts = tmp_path / "concepts"
    concepts.mkdir()
    elsewhere = ti_concept(tmp_path / "elsewhere", "warm")
    (concepts / "warm").symlink_to(elsewhere, target_is_directory=True)
    manager = _manager(concepts)
    with pytest.raises(ConceptError, match=r"concept folder is a symbolic link to .*outside"):
        manager.load("warm")
    assert "warm" not in [c.name for c in manager.available()]
    # a link to a folder inside the concepts folder is fine
    shutil.move(elsewhere, concepts / "warm-v1")
    (concepts / "warm").unlink()
    (concepts / "warm").symlink_to("warm-v1", target_is_directory=True)
    assert manager.load("warm").name == "warm"
