"""Prompt adherence and the style-transfer curve of a model in the mini world, measured without
the model's help (personalization: :mod:`dreamsampler.mini.personalize`).

Adherence: for every prompt and seed, one clip comes out of the engine's own sampling loop
(:func:`dreamsampler.engine.sampler.sample`, as ``dreamsampler generate`` makes it); the
instrument classifier (:mod:`dreamsampler.mini.measures`, fitted on rendered clips) names its
instrument and pYIN estimates its pitch. A clip follows its prompt when the named instrument is the
classifier's first choice, and (note prompts) when the pitch is within a semitone of the named note.

    dreamsampler eval --mini adherence --model mini --n 20 --out eval-mini
    dreamsampler eval --mini transfer --model mini --n 5 --out eval-mini

Transfer: :func:`transfer_curve`.
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


def parse_prompt(text: str) -> tuple[str, int | None]:
    """What a mini-world caption names: ``"a flute playing A5"`` → ``("flute", 81)``,
    ``"a piano playing a C major chord"`` → ``("piano", None)``.

    Raises:
        ValueError: the text does not start with an instrument's words.
    """
    for inst in data.TRAINED + data.HELD_OUT:
        if text.startswith(inst.words + " "):
            last = text.split()[-1]
            try:
                return inst.name, data.midi_number(last)
            except ValueError:
                return inst.name, None
    raise ValueError(f"{text!r} names no instrument of the mini world")


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
             duration: float = data.CLIP_SAMPLES / data.SAMPLE_RATE,
             concept: str | None = None) -> np.ndarray:
    """One clip ``(samples,)`` through the engine's sampling loop (with a loaded DreamBooth or
    LoRA ``concept`` active when named)."""
    from dreamsampler.engine.request import GenerationRequest
    from dreamsampler.engine.sampler import sample

    request = GenerationRequest(prompt=prompt, seed=seed, num_inference_steps=steps,
                                guidance_scale=guidance, duration=duration, concept=concept)
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


#: (input family, input phrase, prompt family, prompt note) of the style-transfer curve: the
#: prompt names another instrument AND one other note, so the input's melody, rhythm and timbre
#: can each be seen to give way
TRANSFER_PAIRS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("piano", ("C4", "E4", "G4"), "flute", "A4"),
    ("guitar", ("E3", "G3", "B3"), "trumpet", "D5"),
    ("bass", ("A2", "C3", "E3"), "piano", "C4"),
    ("organ", ("G3", "B3", "D4"), "strings", "E4"),
)
STRENGTHS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
#: the transfer curve's measures: (key, label) — what stays of the input, what moves to the prompt
TRANSFER_MEASURES: tuple[tuple[str, str], ...] = (
    ("contour_kept", "input's pitch contour kept (pYIN frames within a semitone)"),
    ("onsets_kept", "input's onsets kept (F-measure, 50 ms)"),
    ("p_input_instrument", "p(input's instrument)"),
    ("p_prompt_instrument", "p(prompt's instrument)"),
    ("pitch_to_prompt", "pitch = prompt's note (within a semitone)"),
)


def transfer_curve(model: Any, classifier: InstrumentClassifier, workdir: Path,
                   seeds: list[int], strengths: tuple[float, ...] = STRENGTHS,
                   steps: int = 25, guidance: float = 2.5,
                   on_clip: Callable[[int, int], None] | None = None,
                   pairs: tuple[tuple[str, tuple[str, ...], str, str], ...] = TRANSFER_PAIRS,
                   ) -> dict[str, Any]:
    """SDEdit style transfer (Meng et al. 2022; the personalized style transfer of Plitsis et al.
    2023) of rendered three-note phrases (:data:`TRANSFER_PAIRS`, written as WAV into
    ``workdir``) to a prompt naming another instrument and one note, at each strength.

    Returns:
        ``{"rows": [...], ...}``: per strength the means over pairs and seeds of
        :data:`TRANSFER_MEASURES` (contour and onsets against the input's own pYIN track and
        detected onsets, :mod:`dreamsampler.mini.measures`), and the same of the inputs
        themselves (``"input"``) and of the inputs through the VAE and vocoder alone, no
        diffusion (``"round_trip"``: the most any strength can keep).
    """
    import soundfile as sf
    import torch

    from dreamsampler.engine.request import GenerationRequest
    from dreamsampler.engine.sampler import sample
    from dreamsampler.mini.measures import contour_kept, onset_f_measure, onsets

    workdir.mkdir(parents=True, exist_ok=True)
    inputs = []
    for src, names, dst, target in pairs:
        inst = data.INSTRUMENTS[src]
        wave = data.render_instrument(inst, [data.phrase(inst, names)])[0]
        path = workdir / f"{src}-{'-'.join(names)}.wav"
        sf.write(path, wave, data.SAMPLE_RATE, subtype="FLOAT")
        prompt = data.note_caption(data.INSTRUMENTS[dst], data.midi_number(target))
        inputs.append((path, wave, src, prompt, dst, data.midi_number(target)))

    def measures_of(clips: np.ndarray, meta: list[tuple[Any, ...]]) -> dict[str, float]:
        probs = classifier.probabilities(clips)
        col = classifier.classes.index
        kept = [contour_kept(m[1], c) for c, m in zip(clips, meta, strict=True)]
        return {
            "contour_kept": float(np.mean([k for k in kept if k is not None])),
            "onsets_kept": float(np.mean([onset_f_measure(onsets(m[1]), onsets(c))
                                          for c, m in zip(clips, meta, strict=True)])),
            "p_input_instrument": float(np.mean([probs[i, col(m[2])]
                                                 for i, m in enumerate(meta)])),
            "p_prompt_instrument": float(np.mean([probs[i, col(m[4])]
                                                  for i, m in enumerate(meta)])),
            "pitch_to_prompt": float(np.mean([pitch_correct(estimate_pitch(c), m[5])
                                              for c, m in zip(clips, meta, strict=True)])),
            "clips": len(clips),
        }

    rows = []
    total, done = len(strengths) * len(inputs) * len(seeds), 0
    for strength in strengths:
        outs, meta = [], []
        for item in inputs:
            for s in seeds:
                request = GenerationRequest(prompt=item[3], seed=s, num_inference_steps=steps,
                                            guidance_scale=guidance, input_path=item[0],
                                            strength=strength,
                                            duration=data.CLIP_SAMPLES / data.SAMPLE_RATE)
                outs.append(sample(model, request).audio[0][: data.CLIP_SAMPLES])
                meta.append(item)
                done += 1
                if on_clip is not None:
                    on_clip(done, total)
        rows.append({"strength": strength, **measures_of(np.stack(outs), meta)})
    originals = np.stack([item[1] for item in inputs])
    with torch.no_grad():  # strength → 0: what the VAE and vocoder alone keep of the input
        duration = data.CLIP_SAMPLES / data.SAMPLE_RATE
        trip = np.stack([model.latents_to_audio(model.audio_to_latents(
            torch.from_numpy(w)[None], duration)).reshape(-1)[: data.CLIP_SAMPLES].numpy()
            for w in originals])
    return {"pairs": [[src, list(names), dst, note] for src, names, dst, note in pairs],
            "rows": rows, "input": measures_of(originals, inputs),
            "round_trip": measures_of(trip, inputs),
            "settings": {"seeds": seeds, "num_inference_steps": steps,
                         "guidance_scale": guidance}}


def plot_transfer(result: dict[str, Any], path: Path) -> None:
    """The transfer curve: what stays of the input (solid) against what moves to the prompt
    (dashed), over strength."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    x = [r["strength"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ("o-", "s-", "^-", "^--", "o--")
    for (key, label), style in zip(TRANSFER_MEASURES, styles, strict=True):
        ax.plot(x, [r[key] for r in rows], style, label=label)
    ax.set_xlabel("strength (SDEdit)")
    ax.set_ylabel("share / probability")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{result['settings'].get('model', 'mini')}: style transfer of rendered "
                 "phrases to another instrument's note", fontsize=9)
    ax.legend(fontsize=7, loc="center left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def transfer_markdown(result: dict[str, Any]) -> str:
    """The transfer curve as a Markdown table (the inputs themselves and their VAE round trip
    first)."""
    keys = [k for k, _ in TRANSFER_MEASURES]
    lines = ["| strength | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for label, row in [("input", result["input"]),
                       ("VAE + vocoder only", result["round_trip"])] + [
                           (f"{r['strength']:.2f}", r) for r in result["rows"]]:
        lines.append(f"| {label} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def run_transfer(model_id: str = "mini", n: int = 5, out: Path = Path("eval-mini"),
                 steps: int = 25, guidance: float = 2.5, device: str = "cpu",
                 on_clip: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Load ``model_id`` and measure :func:`transfer_curve` over seeds ``0..n-1``; write
    ``transfer.json`` and ``transfer.png`` to ``out``."""
    from dreamsampler.engine.families import load_model
    from dreamsampler.mini.measures import fit_classifier

    model = load_model(model_id, device)
    classifier = fit_classifier()
    out.mkdir(parents=True, exist_ok=True)
    result = transfer_curve(model, classifier, out / "transfer-inputs", list(range(n)),
                            steps=steps, guidance=guidance, on_clip=on_clip)
    result["settings"]["model"] = model_id
    (out / "transfer.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "transfer.md").write_text(transfer_markdown(result))
    plot_transfer(result, out / "transfer.png")
    return result
