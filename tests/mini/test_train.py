"""The training script as its recipe is rerun (``python -m dreamsampler.mini.train``), a few steps
of stage ``unet`` on a copy of the packaged folder: it writes a UNet that loads, and records the
recipe (v-prediction, joint text tower, family-balanced batches) and an adherence check."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from dreamsampler.mini import MINI_DIR

from ..serving import CLI, ENV
from .conftest import needs_fluidsynth


@needs_fluidsynth
def test_a_few_unet_steps_write_a_loadable_unet_and_the_recipe(tmp_path: Path) -> None:
    out = tmp_path / "mini"
    shutil.copytree(MINI_DIR, out)
    before = UNet2DConditionModel.from_pretrained(out / "unet", torch_dtype=torch.float32)
    run = subprocess.run([CLI[0], "-m", "dreamsampler.mini.train", "--out", str(out),
                          "--stage", "unet", "--steps", "2", "--validate-minutes", "0.0001"],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    card = json.loads((out / "training.json").read_text())["unet"]
    assert card["steps"] == 2 and card["prediction_type"] == "v_prediction"
    assert card["joint_text"] and card["sampling"] == "family-balanced"
    assert card["checks"] and 0.0 <= card["checks"][0]["instrument"] <= 1.0
    after = UNet2DConditionModel.from_pretrained(out / "unet", torch_dtype=torch.float32)
    changed = [not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters(),
                                                      strict=True)]
    assert any(changed)  # a fresh UNet trained 2 steps, not the packaged one
    assert "unet check" in (out / "train_log.txt").read_text()
