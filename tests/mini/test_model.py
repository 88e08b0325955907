"""The trained ``mini`` model: it loads by name through the real ``from_pretrained`` path, and on
fixed seeds it makes the instrument and the note its prompt names (judged by the classifier and
pYIN, fitted/run on rendered clips, not by the model)."""

from __future__ import annotations

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


# (prompt, instrument, MIDI pitch): a trained family on fixed seeds. The shipped model does NOT
# yet meet the bar (docs/mini.md: 20.5 % instrument, 12.9 % pitch over 20 seeds);
# strict xfail keeps the check and turns red (XPASS) once a retrained model passes.
@pytest.mark.xfail(strict=True, reason="the 12-minute UNet does not follow note prompts yet "
                   "(docs/mini.md, 'What it shows')")
def test_mini_follows_its_prompt(mini: MusicLDMFamily, classifier: object) -> None:
    prompt, instrument, pitch = "a flute playing A5", "flute", 81
    for seed in (0, 1):
        audio = generate(mini, prompt, seed, steps=12)
        assert classifier.predict(audio[None]) == [instrument], (prompt, seed)  # type: ignore[attr-defined]
        assert pitch_correct(estimate_pitch(audio), pitch), (prompt, seed)
