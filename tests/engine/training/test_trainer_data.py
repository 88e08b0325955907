"""What the real trainer feeds its loss: MusicLDM's BAM/BLM mixup and DreamBooth's prior loss.

Spies wrap (never replace) the trainer's own functions and record what they were called with and
returned, so each test sees the training data of a real run on the tiny model.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from dreamsampler.engine.families import ModelFamily, load_model
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample
from dreamsampler.engine.training import beatmix, trainer
from dreamsampler.engine.training.trainer import TrainSettings, train

from .synth import SR, click_track

SECONDS = 4.0
#: A and B share a tempo (one group) with downbeats 0.25 s apart; C is alone at 90 BPM.
OFFSETS = {"a": 0.1, "b": 0.35}


def _clips() -> list[np.ndarray]:
    a = click_track(120, SECONDS, offset_s=OFFSETS["a"])
    b = click_track(120, SECONDS, offset_s=OFFSETS["b"])
    c = click_track(90, SECONDS, offset_s=0.2)
    return [0.5 * x / np.abs(x).max() for x in (a, b, c)]


def _spy(module: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """Wrap ``module.name``; return the list of (args+kwargs, result) it fills."""
    calls: list[tuple[Any, Any]] = []
    real = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        calls.append(((args, kwargs), result))
        return result

    monkeypatch.setattr(module, name, wrapper)
    return calls


def _encoded_waveforms(model: ModelFamily, monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    seen: list[np.ndarray] = []
    real = model.audio_to_latents

    def wrapper(waveform: torch.Tensor, duration: float) -> torch.Tensor:
        seen.append(waveform[0].numpy().copy())
        return real(waveform, duration)

    monkeypatch.setattr(model, "audio_to_latents", wrapper)
    return seen


def _settings(name: str, **kw: Any) -> TrainSettings:
    base: dict[str, Any] = {"method": "lora", "name": name, "steps": 2, "checkpoint_every": 0,
                            "mix_variants": 2, "mixup_probability": 1.0, "batch_size": 6}
    base.update(kw)
    return TrainSettings(**base)


def test_bam_mixes_tempo_groups_on_their_downbeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_model("tiny", "cpu")
    mixes = _spy(beatmix, "beat_aligned_mixup", monkeypatch)
    encoded = _encoded_waveforms(model, monkeypatch)
    clips = _clips()
    result = train(model, _settings("bam", mixup="bam"), clips, tmp_path)

    # 3 clips × 2 variants, each variant mixed with probability 1 when it has a partner
    assert len(encoded) == 6 and len(mixes) == 4
    for (args, _), mix in mixes:
        anchor = next(i for i, c in enumerate(clips) if np.array_equal(c, args[0]))
        assert anchor in (0, 1)  # the 90 BPM clip has no partner
        assert abs(mix.beats_a.tempo_bpm - mix.beats_b.tempo_bpm) <= 3.0
        assert 0.0 < mix.lam < 1.0
        # the partner is moved so its first downbeat falls on the anchor's
        other = 1 - anchor
        expected = (OFFSETS["ab"[anchor]] - OFFSETS["ab"[other]]) * SR
        assert abs(mix.shift_samples - expected) <= 256  # one onset frame
        # and the trainer encoded exactly that mix
        assert any(np.array_equal(mix.mix, w) for w in encoded)
    # the clip without a partner is trained on as it is
    assert sum(np.array_equal(w, clips[2]) for w in encoded) == 2
    meta = yaml.safe_load((result.folder / "concept.yaml").read_text())
    assert meta["training"]["mixup"] == "bam"


def test_blm_mixes_latents_on_their_downbeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_model("tiny", "cpu")
    mixes = _spy(trainer, "beat_aligned_latent_mixup", monkeypatch)
    losses = _spy(trainer, "denoising_loss", monkeypatch)
    encoded = _encoded_waveforms(model, monkeypatch)
    clips = _clips()
    train(model, _settings("blm", mixup="blm"), clips, tmp_path)

    # audio is encoded unmixed (6 variants + 3 clean partner latents); 4 variants are mixed
    assert all(any(np.array_equal(w, c) for c in clips) for w in encoded)
    assert len(mixes) == 4
    fps = model.latent_frame_rate  # type: ignore[attr-defined]
    assert fps == 50.0  # 16 kHz, hop 160, tiny VAE downsampling 2 (the full models: 4 → 25)
    for (args, _), mix in mixes:
        z_a, z_b = args[0], args[1]
        d_a, d_b = args[3].first_downbeat, args[4].first_downbeat
        assert mix.shift_frames == round((d_a - d_b) * fps)
        assert abs(abs(mix.shift_frames) - 0.25 * fps) <= 1  # 0.25 s apart, ±1 frame
        shift, n = mix.shift_frames, z_b.shape[-2]
        aligned = torch.zeros_like(z_b)  # z_b delayed by `shift` frames, zero-filled
        if shift >= 0:
            aligned[..., shift:, :] = z_b[..., : n - shift, :]
        else:
            aligned[..., : n + shift, :] = z_b[..., -shift:, :]
        torch.testing.assert_close(mix.mix, mix.lam * z_a + (1 - mix.lam) * aligned)
        assert 0.0 < mix.lam < 1.0
    # what the loss trained on: mixed latents among them
    mixed = [m.mix for _, m in mixes]
    batches = [call[0][0][2] for call in losses]
    assert any(torch.equal(row, m) for batch in batches for row in batch for m in mixed)


def test_dreambooth_prior_preservation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Class clips come from the base model before training (DreamBooth, Ruiz et al. 2022,
    Eq. 2); each step's loss is the instance loss plus prior_weight × the class loss."""
    class_word, weight, clips = "guitar", 0.5, [c[:16000] for c in _clips()[:2]]
    base = load_model("tiny", "cpu")
    expected_latents = [
        sample(base, GenerationRequest(prompt=f"a recording of a {class_word}", seed=3 + k,
                                       num_inference_steps=2, duration=1.0),
               return_latents=True).latents
        for k in range(2)
    ]
    model = load_model("tiny", "cpu")
    calls = _spy(trainer, "denoising_loss", monkeypatch)
    result = train(model, TrainSettings(
        method="dreambooth", name="db", steps=3, checkpoint_every=0, seed=3, lr=1e-3,
        class_word=class_word, prior_preservation=True, num_class_clips=2, class_steps=2,
        prior_weight=weight), clips, tmp_path)

    assert len(calls) == 2 * 3  # instance + prior per step
    class_cond = base.encode_text([f"a recording of a {class_word}"])
    for step in range(3):
        _, inst_loss = calls[2 * step]
        (prior_args, _), prior_loss = calls[2 * step + 1]
        z_class = prior_args[2]
        assert any(torch.equal(z_class, z) for z in expected_latents)
        torch.testing.assert_close(prior_args[3], class_cond, rtol=0, atol=0)
        assert result.losses[step] == pytest.approx(
            float(inst_loss.detach()) + weight * float(prior_loss.detach()), rel=1e-6)
    # without prior preservation: one loss per step
    calls.clear()
    train(load_model("tiny", "cpu"), TrainSettings(method="dreambooth", name="db2", steps=2,
                                                   checkpoint_every=0), clips, tmp_path)
    assert len(calls) == 2


def test_readme_names_the_default_lora_targets() -> None:
    """The README's LoRA description and the trainer's defaults say the same."""
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**LoRA**"):readme.index("Put 3–10 clips")]
    named = set(re.findall(r"`([a-z_.0-9]+)`", section))
    assert named == set(trainer.DEFAULT_LORA_TARGETS)


def test_captions_are_each_clips_prompt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--captions``: every training example is encoded with its own clip's caption (the
    placeholder in its ``{}``), never a template, and concept.yaml records each clip's caption."""
    import soundfile as sf

    from dreamsampler.engine.training.clips import load_concept_clips

    from .synth import tone

    folder = tmp_path / "clips"
    folder.mkdir()
    for name, freq in (("a", 220.0), ("b", 330.0), ("c", 440.0)):
        sf.write(folder / f"{name}.wav", tone(freq, 1.0, sr=SR), SR)
        (folder / f"{name}.txt").write_text(f"\n{{}} playing note {name}\n")
    model = load_model("tiny", "cpu")
    clips = load_concept_clips(folder, model.sample_rate, model.sample_rate, captions=True)
    assert [c.caption for c in clips] == ["{} playing note a", "{} playing note b",
                                          "{} playing note c"]
    latents: list[torch.Tensor] = []
    real_latents = model.audio_to_latents

    def keep(waveform: torch.Tensor, duration: float) -> torch.Tensor:
        latents.append(real_latents(waveform, duration))
        return latents[-1]

    monkeypatch.setattr(model, "audio_to_latents", keep)
    losses = _spy(trainer, "denoising_loss", monkeypatch)
    result = train(model, TrainSettings(method="lora", name="cap", steps=3, batch_size=3,
                                        checkpoint_every=0), clips, tmp_path / "concepts",
                   clip_paths=[c.path for c in clips])
    assert len(latents) == 3 and len(losses) == 3
    with torch.no_grad():
        expected = [real_encode(model, f"<cap> playing note {n}") for n in "abc"]
    for (args, _kw), _loss in losses:
        z0, cond = args[2], args[3]
        for row in range(z0.shape[0]):
            k = next(i for i, z in enumerate(latents) if torch.equal(z0[row], z[0]))
            torch.testing.assert_close(cond[row], expected[k], rtol=0, atol=1e-6)
    meta = yaml.safe_load((result.folder / "concept.yaml").read_text())
    assert [c["caption"] for c in meta["clips"]] == [c.caption for c in clips]


def real_encode(model: ModelFamily, prompt: str) -> torch.Tensor:
    """The conditioning of one prompt ``(...)`` (first row of the family's text encoding)."""
    return model.encode_text([prompt])[0]


def test_a_clip_without_its_caption_is_refused_with_its_path(tmp_path: Path) -> None:
    import soundfile as sf

    from dreamsampler.engine.training.clips import CaptionError, load_concept_clips

    wave = _clips()[0][:SR]
    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", wave, SR)
    (tmp_path / "a.txt").write_text("{} playing C4")
    with pytest.raises(CaptionError, match=r"b\.txt"):
        load_concept_clips(tmp_path, SR, SR, captions=True)
    (tmp_path / "b.txt").write_text("a marimba playing C4")  # no {} for the concept
    with pytest.raises(CaptionError, match=r"b\.txt.*exactly one \{\}"):
        load_concept_clips(tmp_path, SR, SR, captions=True)
    assert [c.caption for c in load_concept_clips(tmp_path, SR, SR)] == [None, None]
