"""The trained ``mini`` model: it loads by name through the real ``from_pretrained`` path, and on
fixed seeds it makes the instrument and the note its prompt names (judged by the classifier and
pYIN, fitted/run on rendered clips, not by the model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dreamsampler.cli.model_source import check_model_source
from dreamsampler.engine.families import MusicLDMFamily, load_model
from dreamsampler.mini import MINI_DIR
from dreamsampler.mini.evaluate import generate
from dreamsampler.mini.measures import estimate_pitch, pitch_correct


@pytest.fixture(scope="module")
def mini() -> MusicLDMFamily:
    model = load_model("mini", "cpu")
    assert isinstance(model, MusicLDMFamily)
    return model


def test_mini_is_a_packaged_diffusers_folder(mini: MusicLDMFamily) -> None:
    from diffusers import UNet2DConditionModel

    assert check_model_source("mini") == "mini model (packaged)"
    assert (MINI_DIR / "model_index.json").is_file()
    size = sum(p.stat().st_size for p in MINI_DIR.rglob("*.safetensors"))
    assert size < 8e6, size  # a few MB in the wheel
    reference = UNet2DConditionModel.from_pretrained(MINI_DIR / "unet", torch_dtype=torch.float32)
    x = torch.randn((1, *mini.latent_shape(0.96)[0]), generator=torch.Generator().manual_seed(0))
    cond = mini.encode_prompt(["a piano playing C4"])
    with torch.no_grad():
        expected = reference(x, 500, None, class_labels=cond).sample
    torch.testing.assert_close(mini.denoise(x, torch.tensor(500), cond), expected)


def test_the_prompt_changes_the_clip(mini: MusicLDMFamily) -> None:
    """The conditioning reaches the UNet: two captions give different clips for one seed (the
    first trained model gave the same clip for every prompt; docs/mini.md)."""
    import numpy as np

    a = generate(mini, "a piano playing A5", 0, steps=8)
    b = generate(mini, "a bass guitar playing E2", 0, steps=8)
    assert np.isfinite(a).all() and np.isfinite(b).all()
    assert float(np.abs(a - b).mean()) > 0.1 * float(np.abs(a).mean())


#: (prompt, instrument, MIDI pitch): four trained families, low and high, chosen before the
#: shipped model was measured (not its best prompts)
PROMPTS = (("a flute playing A5", "flute", 81), ("a bass guitar playing E2", "bass", 40),
           ("a trumpet playing E4", "trumpet", 64), ("a piano playing A5", "piano", 81))
SEEDS = (0, 1)


def test_mini_follows_its_prompt(mini: MusicLDMFamily, classifier: object) -> None:
    """On fixed seeds, the classifier (fitted on rendered clips) recognises the named
    instrument in at least 6 of 8 clips and pYIN finds the named note within a semitone in at
    least 5 of 8 (the shipped model here: 7 and 6; "a bass guitar playing E2" is its documented
    miss, docs/mini.md; over 20 seeds and 19 prompts it measures 77.9 % and 90.7 %). One below
    what it does here: another CPU's kernels may tip a borderline clip."""
    instrument_hits, pitch_hits, seen = 0, 0, []
    for prompt, instrument, pitch in PROMPTS:
        for seed in SEEDS:
            audio = generate(mini, prompt, seed)
            predicted = classifier.predict(audio[None])[0]  # type: ignore[attr-defined]
            estimate = estimate_pitch(audio)
            instrument_hits += predicted == instrument
            pitch_hits += pitch_correct(estimate, pitch)
            seen.append((prompt, seed, predicted, estimate))
    assert instrument_hits >= 6, seen
    assert pitch_hits >= 5, seen


def test_style_transfer_trades_the_inputs_structure_for_the_prompt(
        mini: MusicLDMFamily, classifier: object, tmp_path: Path) -> None:
    """SDEdit on a rendered piano phrase toward "a flute playing A4": at strength 0.05 the
    phrase's pitch contour survives (as through the VAE alone) and at 0.5 it is gone, the flute
    far more probable and its note played (the whole curve over 9 strengths: docs/mini.md)."""
    from dreamsampler.mini.evaluate import transfer_curve

    result = transfer_curve(mini, classifier, tmp_path, [0], strengths=(0.05, 0.5),  # type: ignore[arg-type]
                            pairs=(("piano", ("C4", "E4", "G4"), "flute", "A4"),))
    low, high = result["rows"]
    assert low["contour_kept"] >= 0.8 * result["round_trip"]["contour_kept"], result
    assert low["contour_kept"] > high["contour_kept"] + 0.5, result["rows"]
    assert high["p_prompt_instrument"] > low["p_prompt_instrument"] + 0.3, result["rows"]
    assert high["pitch_to_prompt"] == 1.0 and low["pitch_to_prompt"] == 0.0, result["rows"]
