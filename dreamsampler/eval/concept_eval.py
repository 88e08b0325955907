"""Evaluate a trained concept the way Plitsis et al. (2023) do: generate, then measure.

Reconstruction prompts ("a recording of a S*") measure how well the concept's sound comes back
(CLAP-A against the training clips, SIM_AA copying risk, FAD, music features); editability prompts
("S* in a jazz trio") measure whether text still steers the result (CLAP-T over the editability
clips, with S* replaced by the class word, since CLAP does not know the learned token). Generation
goes through the engine's one sampling loop with the concept active.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dreamsampler.engine.concepts import ConceptManager, ConceptMeta
from dreamsampler.engine.families import ModelFamily
from dreamsampler.engine.request import GenerationRequest
from dreamsampler.engine.sampler import sample
from dreamsampler.eval.runner import GeneratedClip, collect_audio
from dreamsampler.server.folder_sink import FolderSink, slugify

#: Reconstruction prompts; ``{}`` is the concept (its placeholder token, plus the class word for
#: DreamBooth/LoRA), as in DreamSound's evaluation.
RECONSTRUCTION_PROMPTS = ("a recording of a {}", "the sound of a {}", "a {} sound")
#: Editability prompts: the concept in a new context.
EDITABILITY_PROMPTS = (
    "{} in a jazz trio",
    "{} with a heavy drum beat",
    "{} playing in a large reverberant hall",
    "a lo-fi hip hop track with {}",
    "{} in a dub reggae mix",
)


class EvalSetupError(ValueError):
    """The evaluation cannot start; the message names the file or value and the reason."""


class PromptSet(BaseModel):
    """``--prompts FILE``: YAML with ``reconstruction`` and ``editability`` lists; ``{}`` marks
    where the concept goes."""

    model_config = ConfigDict(extra="forbid")

    reconstruction: list[str] = Field(default_factory=lambda: list(RECONSTRUCTION_PROMPTS),
                                      min_length=1)
    editability: list[str] = Field(default_factory=lambda: list(EDITABILITY_PROMPTS))

    @classmethod
    def load(cls, path: Path | None) -> PromptSet:
        """The default prompts, or those of a YAML file.

        Raises:
            EvalSetupError: unreadable file, wrong keys, or a prompt without ``{}``.
        """
        if path is None:
            return cls()
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            prompts = cls.model_validate(data)
        except (OSError, yaml.YAMLError) as exc:
            raise EvalSetupError(f"{path}: cannot read prompts ({exc})") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise EvalSetupError(f"{path}: {loc}: {first['msg']}") from None
        for prompt in [*prompts.reconstruction, *prompts.editability]:
            if "{}" not in prompt:
                raise EvalSetupError(f"{path}: prompt {prompt!r} has no {{}} for the concept")
        return prompts


def concept_phrase(meta: ConceptMeta) -> str:
    """How prompts name the concept: the TI token, or ``<token> <class word>`` (DreamBooth)."""
    if meta.method != "ti" and meta.class_word:
        return f"{meta.placeholder_token} {meta.class_word}"
    return meta.placeholder_token


def plain_phrase(meta: ConceptMeta) -> str:
    """The words CLAP knows in place of the concept: its class word, else ``sound``."""
    return meta.class_word or "sound"


def training_clips(meta: ConceptMeta, clips_dir: Path | None) -> list[Path]:
    """The concept's training clips: ``clips_dir`` if given, else the paths in concept.yaml.

    Raises:
        EvalSetupError: none found; names the missing files and suggests ``--clips``.
    """
    if clips_dir is not None:
        files = collect_audio(clips_dir)
        if not files:
            raise EvalSetupError(f"{clips_dir}: no audio files")
        return files
    paths = [Path(c.path) for c in meta.clips]
    missing = [p for p in paths if not p.exists()]
    if not paths or missing:
        shown = ", ".join(map(str, missing[:3])) or "(concept.yaml lists none)"
        raise EvalSetupError(
            f"concept {meta.name}: training clips not found: {shown}; pass --clips DIR"
        )
    return paths


@dataclass
class GeneratedSet:
    """Clips generated for an evaluation and their final latents ``(n, channels, frames, bins)``."""

    clips: list[GeneratedClip] = field(default_factory=list)
    latents: torch.Tensor | None = None


def generate_set(
    model: ModelFamily,
    concepts: ConceptManager,
    meta: ConceptMeta,
    prompts: PromptSet,
    n: int,
    out_dir: Path,
    settings: dict[str, Any],
    on_clip: Callable[[int, int], None] | None = None,
) -> GeneratedSet:
    """Generate ``n`` clips (seeds 0..n-1) per prompt with the concept active; write them.

    Args:
        model: the concept's base model.
        concepts: manager of ``model`` (the concept is loaded if it is not yet).
        meta: the concept.
        prompts: reconstruction and editability prompts.
        n: clips per prompt.
        out_dir: the WAVs (+ JSON sidecars) land here.
        settings: ``num_inference_steps``, ``guidance_scale``, ``duration``, ``scheduler``.
        on_clip: progress callback ``(done, total)``.

    Raises:
        ConceptError: the concept cannot be loaded on this model.
    """
    if not concepts.is_loaded(meta.name):
        concepts.load(meta.name)
    sink = FolderSink(out_dir, subtype="FLOAT")
    phrase, plain = concept_phrase(meta), plain_phrase(meta)
    jobs = [(t, True) for t in prompts.reconstruction] + [(t, False) for t in prompts.editability]
    total = len(jobs) * n
    out = GeneratedSet()
    latents = []
    for k, (template, reconstruction) in enumerate(jobs):
        for seed in range(n):
            request = GenerationRequest(
                prompt=template.format(phrase),
                seed=seed,
                concept=None if meta.method == "ti" else meta.name,
                **settings,
            )
            result = sample(model, request, return_latents=True)
            kind = "rec" if reconstruction else "edit"
            path = sink.write(result, f"{kind}{k:02d}-{slugify(template, 30)}-seed{seed}")
            text = None if reconstruction else template.format(plain)  # CLAP-T: editability
            out.clips.append(GeneratedClip(path, text, reconstruction))
            latents.append(result.latents[0])
            if on_clip is not None:
                on_clip(len(out.clips), total)
    out.latents = torch.stack(latents)
    return out


def read_generated(folder: Path, meta: ConceptMeta) -> GeneratedSet:
    """Already generated clips (``--generated DIR``): prompts come from the JSON sidecars.

    A clip whose prompt is one of the default reconstruction prompts (or has no prompt) counts as
    reconstruction; others as editability.

    Raises:
        EvalSetupError: no audio files in the folder.
    """
    files = collect_audio(folder)
    if not files:
        raise EvalSetupError(f"{folder}: no audio files")
    phrase, plain = concept_phrase(meta), plain_phrase(meta)
    reconstruction = {t.format(phrase) for t in RECONSTRUCTION_PROMPTS}
    clips = []
    for path in files:
        sidecar = path.with_suffix(".json")
        prompt = None
        if sidecar.exists():
            prompt = json.loads(sidecar.read_text()).get("prompt")
        is_rec = prompt is None or prompt in reconstruction
        text = None if is_rec else prompt.replace(phrase, plain).replace(meta.placeholder_token,
                                                                          plain)
        clips.append(GeneratedClip(path, text, is_rec))
    return GeneratedSet(clips=clips)


def summary_settings(settings: dict[str, Any], n: int, model_id: str) -> dict[str, Any]:
    """What the report's ``meta.info`` records about the run."""
    return {"model": model_id, "n_per_prompt": n, "seeds": f"0..{n - 1}", **settings}
