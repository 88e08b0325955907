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
        expected = reference(x, 500, class_labels=cond).sample
    torch.testing.assert_close(mini.denoise(x, torch.tensor(500), cond), expected)


# (prompt, instrument, MIDI pitch or None): trained families, fixed seeds
PROMPTS = [
    ("a piano playing A5", "piano", 81),
    ("a flute playing E4", "flute", 64),
    ("a drum beat at 100 BPM", "drums", None),
]


@pytest.mark.parametrize(("prompt", "instrument", "pitch"), PROMPTS)
def test_mini_follows_its_prompt(mini: MusicLDMFamily, classifier: object, prompt: str,
                                 instrument: str, pitch: int | None) -> None:
    for seed in (0, 1):
        audio = generate(mini, prompt, seed, steps=12)
        assert classifier.predict(audio[None]) == [instrument], (prompt, seed)  # type: ignore[attr-defined]
        if pitch is not None:
            estimate = estimate_pitch(audio)
            assert pitch_correct(estimate, pitch), (prompt, seed, estimate)
