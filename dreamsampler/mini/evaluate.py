"""Prompt adherence of a model in the mini world, measured without the model's help.

For every prompt and seed, one clip comes out of the engine's own sampling loop
(:func:`dreamsampler.engine.sampler.sample`, as ``dreamsampler generate`` makes it); the
instrument classifier (:mod:`dreamsampler.mini.measures`, fitted on rendered clips) names its
instrument and pYIN estimates its pitch. A clip follows its prompt when the named instrument is the
classifier's first choice, and (note prompts) when the pitch is within a semitone of the named note.

    dreamsampler eval --mini adherence --model mini --n 20 --out eval-mini
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dreamsampler.mini import data
from dreamsampler.mini.measures import InstrumentClassifier, estimate_pitch, pitch_correct


@dataclasses.dataclass(frozen=True)
class Prompt:
    """A prompt with what it names: the instrument family and, for a note, its MIDI pitch."""

    text: str
    instrument: str
    pitch: int | None = None


def adherence_prompts() -> list[Prompt]:
    """Two notes per pitched trained family (E in its lowest octave, A in its highest), one chord
    per chord family, and one drum beat: 7 × 2 + 4 + 1 = 19 prompts."""
    prompts: list[Prompt] = []
    for inst in data.TRAINED:
        if inst.program is None:
            prompts.append(Prompt(data.beat_caption(100), inst.name))
            continue
        for name in (f"E{inst.octaves[0]}", f"A{inst.octaves[-1]}"):
            midi = data.midi_number(name)
            prompts.append(Prompt(data.note_caption(inst, midi), inst.name, midi))
        if inst.chords:
            prompts.append(Prompt(data.chord_caption(inst, "A", "minor"), inst.name))
    return prompts


def generate(model: Any, prompt: str, seed: int, steps: int = 25, guidance: float = 2.5,
             duration: float = data.CLIP_SAMPLES / data.SAMPLE_RATE) -> np.ndarray:
    """One clip ``(samples,)`` through the engine's sampling loop."""
    from dreamsampler.engine.request import GenerationRequest
    from dreamsampler.engine.sampler import sample

    request = GenerationRequest(prompt=prompt, seed=seed, num_inference_steps=steps,
                                guidance_scale=guidance, duration=duration)
    return sample(model, request).audio[0]


def adherence(model: Any, classifier: InstrumentClassifier, prompts: list[Prompt],
              seeds: list[int], steps: int = 25, guidance: float = 2.5,
              on_clip: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Generate every prompt for every seed and measure it.

    Returns:
        ``{"instrument_accuracy", "pitch_within_semitone", "per_prompt": [...], "settings"}``:
        the instrument accuracy is over all clips, the pitch score over note prompts' clips.
    """
    rows: list[dict[str, Any]] = []
    total = len(prompts) * len(seeds)
    done = 0
    for p in prompts:
        clips = []
        for seed in seeds:
            clips.append(generate(model, p.text, seed, steps, guidance))
            done += 1
            if on_clip is not None:
                on_clip(done, total)
        audio = np.stack(clips)
        predicted = classifier.predict(audio)
        probs = classifier.probabilities(audio)[:, classifier.classes.index(p.instrument)]
        row: dict[str, Any] = {
            "prompt": p.text, "instrument": p.instrument,
            "instrument_hits": int(sum(x == p.instrument for x in predicted)),
            "mean_probability": round(float(probs.mean()), 4), "clips": len(seeds),
            "predicted": {k: predicted.count(k) for k in sorted(set(predicted))},
        }
        if p.pitch is not None:
            estimates = [estimate_pitch(a) for a in audio]
            row["pitch"] = data.note_name(p.pitch)
            row["pitch_hits"] = int(sum(pitch_correct(e, p.pitch) for e in estimates))
            row["pitch_estimates"] = [None if e is None else round(e, 2) for e in estimates]
        rows.append(row)
    clips_total = sum(r["clips"] for r in rows)
    note_rows = [r for r in rows if "pitch_hits" in r]
    families = sorted({r["instrument"] for r in rows})
    return {
        "instrument_accuracy": sum(r["instrument_hits"] for r in rows) / clips_total,
        "pitch_within_semitone": (sum(r["pitch_hits"] for r in note_rows)
                                  / sum(r["clips"] for r in note_rows)) if note_rows else None,
        "per_family": {f: sum(r["instrument_hits"] for r in rows if r["instrument"] == f)
                       / sum(r["clips"] for r in rows if r["instrument"] == f) for f in families},
        "per_prompt": rows,
        "settings": {"seeds": seeds, "num_inference_steps": steps, "guidance_scale": guidance,
                     "scheduler": "ddim", "duration": data.CLIP_SAMPLES / data.SAMPLE_RATE},
    }


def markdown(result: dict[str, Any]) -> str:
    """The adherence result as a Markdown table (one row per prompt, then the totals)."""
    lines = ["| prompt | instrument recognised | p(instrument) | pitch within a semitone |",
             "|---|---|---|---|"]
    for r in result["per_prompt"]:
        pitch = f"{r['pitch_hits']}/{r['clips']}" if "pitch_hits" in r else "–"
        lines.append(f"| {r['prompt']} | {r['instrument_hits']}/{r['clips']} | "
                     f"{r['mean_probability']:.2f} | {pitch} |")
    pitch = result["pitch_within_semitone"]
    lines.append(f"| **all** | **{result['instrument_accuracy']:.1%}** | | "
                 f"**{'–' if pitch is None else f'{pitch:.1%}'}** |")
    return "\n".join(lines) + "\n"


def run_adherence(model_id: str = "mini", n: int = 20, out: Path | None = None,
                  steps: int = 25, guidance: float = 2.5, device: str = "cpu",
                  on_clip: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Load ``model_id``, fit (or reuse) the classifier, measure seeds ``0..n-1``; write
    ``adherence.json`` and ``adherence.md`` to ``out`` when given."""
    from dreamsampler.engine.families import load_model
    from dreamsampler.mini.measures import fit_classifier

    model = load_model(model_id, device)
    classifier = fit_classifier()
    result = adherence(model, classifier, adherence_prompts(), list(range(n)), steps, guidance,
                       on_clip)
    result["settings"]["model"] = model_id
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "adherence.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "adherence.md").write_text(markdown(result))
    return result
