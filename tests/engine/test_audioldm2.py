"""AudioLDM 2 through our sampling loop equals diffusers' AudioLDM2Pipeline on the same weights.

The reference is the pipeline itself (diffusers 0.42.1) with its own text path. Under
transformers 5 its GPT-2 generation calls ``GPT2Model._update_model_kwargs_for_generation``,
which no longer exists (diffusers issue 12630); the reference binds transformers' own
``GenerationMixin._update_model_kwargs_for_generation`` to the language model, which is what the
pipeline relied on, so the reference text path is upstream code throughout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AudioLDM2Pipeline
from transformers import GenerationMixin

from dreamsampler.engine.audioldm2 import AudioLDM2Family, generate_language_model
from dreamsampler.engine.families import load_model
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample
from dreamsampler.engine.tiny import build_tiny_components, save_tiny_pipeline
from tests.conftest import write_pluck
from tests.engine.tolerance import LOAD_PATH_ATOL

DURATION = 0.32  # s: 32 mel frames, a multiple of the tiny VAE × UNet downsampling (4)
N_SAMPLES = 5120


@pytest.fixture(scope="module")
def model() -> AudioLDM2Family:
    loaded = load_model("tiny:audioldm2", "cpu")
    assert isinstance(loaded, AudioLDM2Family)
    return loaded


def _reference_pipeline(*, fix_generation: bool = True) -> AudioLDM2Pipeline:
    _, components = build_tiny_components("tiny:audioldm2")
    pipe = AudioLDM2Pipeline(feature_extractor=None, **components)  # type: ignore[arg-type]
    pipe.set_progress_bar_config(disable=True)
    if fix_generation:
        lm = pipe.language_model
        lm._update_model_kwargs_for_generation = (  # type: ignore[method-assign]
            GenerationMixin._update_model_kwargs_for_generation.__get__(lm)
        )
    return pipe


def test_pipeline_text_path_is_broken_under_transformers_5() -> None:
    """Why the family has its own generation loop (diffusers issue 12630)."""
    pipe = _reference_pipeline(fix_generation=False)
    with pytest.raises(AttributeError, match="_update_model_kwargs_for_generation"):
        pipe(prompt="a techno beat", num_inference_steps=2, audio_length_in_s=DURATION)


@pytest.mark.parametrize(
    ("prompt", "negative", "guidance", "steps", "scheduler"),
    [
        ("a techno beat with a warm bass", "", 3.0, 4, "ddim"),
        ("a slow piano ballad", "noise", 2.5, 3, "dpm++"),
        ("birds", None, 1.0, 3, "ddim"),  # no guidance: one text branch
    ],
)
def test_text_to_audio_equals_the_pipeline(
    model: AudioLDM2Family, prompt: str, negative: str | None, guidance: float, steps: int,
    scheduler: str,
) -> None:
    """Same weights, seed, steps, guidance and scheduler: bit-identical audio."""
    from dreamsampler.engine.sampler import make_scheduler

    request = GenerationRequest(prompt=prompt, negative_prompt=negative or "", seed=11,
                                num_inference_steps=steps, guidance_scale=guidance,
                                duration=DURATION, scheduler=scheduler)
    ours = sample(model, request)
    pipe = _reference_pipeline()
    pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    ref = pipe(prompt=prompt, negative_prompt=negative, num_inference_steps=steps,
               guidance_scale=guidance, audio_length_in_s=DURATION,
               generator=torch.Generator("cpu").manual_seed(11), output_type="np").audios
    assert ours.audio.shape == ref.shape == (1, N_SAMPLES)
    assert np.abs(ref).max() > 1e-3  # not silence
    np.testing.assert_array_equal(ours.audio, ref)


def test_conditioning_equals_the_pipelines_encode_prompt(model: AudioLDM2Family) -> None:
    """CLAP + T5 → projection → GPT-2: the generated states, T5 states and mask are equal."""
    pipe = _reference_pipeline()
    prompt = "a recording of a rhodes piano"
    with torch.no_grad():
        t5, mask, generated = pipe.encode_prompt(prompt, torch.device("cpu"), 1, True,
                                                 negative_prompt="lo-fi", max_new_tokens=8)
    cond = model.encode_prompt(["lo-fi", prompt])
    assert generated.shape == (2, 8, 16) and t5.shape[0] == 2
    torch.testing.assert_close(cond.generated, generated, rtol=0, atol=0)
    torch.testing.assert_close(cond.t5, t5, rtol=0, atol=0)
    torch.testing.assert_close(cond.t5_mask, mask, rtol=0, atol=0)
    # the negative prompt is padded to the prompt's T5 length (its last positions masked)
    assert mask[0].sum() < mask[1].sum() == mask.shape[1]


def test_generation_loop_equals_transformers_generation_update(model: AudioLDM2Family) -> None:
    """Our loop vs the pipeline's ``generate_language_model`` with transformers' update step."""
    pipe = _reference_pipeline()
    embeds = torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        ref = pipe.generate_language_model(embeds, attention_mask=mask, max_new_tokens=5)
        ours = generate_language_model(model.components["language_model"], embeds, mask, 5)
    assert ours.shape == (2, 5, 16)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_sdedit_runs_the_shared_front_end_and_strength_mapping(
    model: AudioLDM2Family, tmp_path: Path
) -> None:
    """Style transfer: strength sets the steps (sampler's SDEdit mapping) and the distance from
    the input's latent; strength 0 is the input's VAE reconstruction, independent of the seed."""
    from dreamsampler.engine.audio_io import load_audio

    source = write_pluck(tmp_path / "pluck.wav", sample_rate=16000)
    # the whole file, as the sampler hands it to a family that normalises over all of it
    clean = model.audio_to_latents(torch.from_numpy(load_audio(source, 16000))[None, :], DURATION)
    cosines, counts = [], []
    for strength in (0.0, 0.2, 0.6, 1.0):
        seen: list[int] = []
        out = sample(model, GenerationRequest(prompt="a guitar", input_path=source,
                                              strength=strength, num_inference_steps=10,
                                              duration=DURATION, seed=5),
                     on_step=lambda i, n, s=seen: s.append(n), return_latents=True)
        counts.append(seen[0] if seen else 0)
        cosines.append(torch.nn.functional.cosine_similarity(
            out.latents.flatten(), clean.flatten(), dim=0).item())
    assert counts == [0, 2, 6, 10]
    assert cosines[0] == pytest.approx(1.0, abs=1e-6)
    assert cosines[0] > cosines[1] > cosines[2] > cosines[3], cosines


def test_a_saved_pipeline_loads_through_from_pretrained(
    model: AudioLDM2Family, tmp_path: Path
) -> None:
    """The diffusers folder layout (model_index.json naming AudioLDM2Pipeline) loads as the
    family and gives the same audio as the in-memory build."""
    folder = save_tiny_pipeline(tmp_path / "audioldm2", "tiny:audioldm2")
    loaded = load_model(str(folder), "cpu")
    assert isinstance(loaded, AudioLDM2Family)
    request = GenerationRequest(prompt="a techno beat", seed=2, num_inference_steps=2,
                                duration=DURATION)
    # two load paths: other kernels may round differently per CPU (see tests/engine/tolerance)
    np.testing.assert_allclose(sample(loaded, request).audio, sample(model, request).audio,
                               rtol=0, atol=LOAD_PATH_ATOL)


def test_a_longer_negative_prompt_is_not_cut(model: AudioLDM2Family) -> None:
    """Where the pipeline truncates a negative prompt to the prompt's T5 length, both are padded
    to the longer one here: the negative keeps all its tokens, the prompt's padding is masked."""
    negative, prompt = "muffled and noisy", "a bell"  # tiny T5: 1 token per character
    lengths = [len(model.components["tokenizer_2"](p).input_ids) for p in (negative, prompt)]
    cond = model.encode_prompt([negative, prompt])
    assert cond.t5.shape[1] == lengths[0] > lengths[1]
    assert cond.t5_mask.sum(dim=1).tolist() == lengths
    alone = model.encode_prompt([negative])
    torch.testing.assert_close(cond.generated[:1], alone.generated, rtol=0, atol=0)
