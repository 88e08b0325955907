"""Personalization in miniature: Textual Inversion, DreamBooth and LoRA of the instruments the
``mini`` model never heard, measured without the model's help.

For each held-out instrument (:data:`dreamsampler.mini.data.HELD_OUT`) five rendered notes are
written as WAV files with a caption each (``{} playing C4``: the clip's note, ``{}`` for the
concept), and each method learns the concept through ``dreamsampler train METHOD --captions``
(the command-line path a user takes). Then, over seeds, the model is prompted for notes the
concept's clips do not hold (``<concept> playing D4``: the edit) and the clips are measured:

- ``p``: the instrument classifier's probability of the concept's instrument, and
  ``recognised``: its first choice is that instrument (:mod:`dreamsampler.mini.measures`);
- ``similarity``: mean cosine to the five training clips in the mini world's embedding (the
  papers' CLAP-A, Plitsis et al. 2023, with :meth:`InstrumentClassifier.embed` for CLAP), and
  ``sim_aa_90``: the share of clips whose nearest training clip is above cosine 0.9 (SIM_AA,
  Chen et al. 2023: how close to a copy);
- ``edit_pitch``: pYIN puts the clip within a semitone of the prompt's note: the edit is kept.

"Before" is the base model prompted with the instrument's words (``a marimba playing D4``),
which it never heard. Settings per method are the defaults of :data:`TRAIN_SETTINGS` (chosen for
this model's size on a CPU; the full-size defaults of ``dreamsampler train`` are for the real
models).

    dreamsampler eval --mini personalization --model mini --n 5 --out eval-mini
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from dreamsampler.mini import data
from dreamsampler.mini.evaluate import generate
from dreamsampler.mini.measures import InstrumentClassifier, estimate_pitch, pitch_correct

METHODS = ("ti", "dreambooth", "lora")
#: the notes of the five training clips (within each instrument's octaves) and the notes asked
#: for afterwards (the edit: none of them is in the training clips)
TRAIN_NOTES = {"marimba": ("C4", "E4", "G4", "C5", "E5"),
               "saxophone": ("C3", "E3", "G3", "C4", "E4")}
EDIT_NOTES = {"marimba": ("D4", "A4", "F5"), "saxophone": ("D3", "A3", "F4")}
#: ``dreamsampler train`` options per method for the mini model (steps, learning rate, …)
TRAIN_SETTINGS: dict[str, list[str]] = {
    "ti": ["--steps", "300", "--lr", "5e-3"],
    "dreambooth": ["--steps", "200", "--lr", "2e-4"],
    "lora": ["--steps", "300", "--lr", "2e-3", "--rank", "4"],
}
RENDER_SEED = 2  # the concept clips' rendering (the classifier is fitted on seed 0)


def write_concept_clips(instrument: str, folder: Path) -> list[Path]:
    """Render the instrument's :data:`TRAIN_NOTES` (seed :data:`RENDER_SEED`) into ``folder``:
    ``<note>.wav`` (16 kHz mono, 0.96 s) and ``<note>.txt`` (``{} playing <note>``).

    Returns:
        The WAV paths, in note order.
    """
    inst = data.INSTRUMENTS[instrument]
    clips = [c for c in data.plan(inst, 1, RENDER_SEED)
             if c.kind == "note" and data.note_name(c.notes[0]) in TRAIN_NOTES[instrument]]
    audio = data.render_instrument(inst, clips)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for clip, wave in zip(clips, audio, strict=True):
        name = data.note_name(clip.notes[0])
        sf.write(folder / f"{name}.wav", wave, data.SAMPLE_RATE, subtype="FLOAT")
        (folder / f"{name}.txt").write_text("{} playing " + name + "\n")
        paths.append(folder / f"{name}.wav")
    return paths


def train_concept(method: str, name: str, model_id: str, device: str, clips: Path, n_clips: int,
                  concepts_dir: Path) -> None:
    """``dreamsampler train METHOD --captions`` with :data:`TRAIN_SETTINGS`, as its own process
    (the command a user runs).

    Raises:
        RuntimeError: the command failed (its exit status and the end of its error output).
    """
    command = [sys.executable, "-m", "dreamsampler", "train", method, "--model", model_id,
               "--device", device, "--concepts-dir", str(concepts_dir), "--name", name,
               "--clips", str(clips), "--captions",
               "--clip-seconds", str(data.CLIP_SAMPLES / data.SAMPLE_RATE),
               "--min-clips", str(n_clips), "--seed", "0", *TRAIN_SETTINGS[method]]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"dreamsampler train {method} {name} exited {run.returncode}: "
                           f"{run.stderr.strip()[-500:]}")


def measure(classifier: InstrumentClassifier, audio: np.ndarray, instrument: str,
            notes: list[int], reference: np.ndarray) -> dict[str, float]:
    """The module docstring's measures of clips ``(n, samples)`` asked for ``instrument`` at MIDI
    ``notes`` (one per clip), against the training clips ``reference`` ``(m, samples)``."""
    from dreamsampler.eval.similarity import clap_a, sim_aa

    probs = classifier.probabilities(audio)[:, classifier.classes.index(instrument)]
    predicted = classifier.predict(audio)
    gen, ref = classifier.embed(audio), classifier.embed(reference)
    pitches = [estimate_pitch(a) for a in audio]
    return {
        "p": round(float(probs.mean()), 4),
        "recognised": round(float(np.mean([p == instrument for p in predicted])), 4),
        "similarity": round(clap_a(gen, ref), 4),
        "sim_aa_90": round(sim_aa(gen, ref, 0.9), 4),
        "edit_pitch": round(float(np.mean([pitch_correct(e, m)
                                           for e, m in zip(pitches, notes, strict=True)])), 4),
        "clips": len(audio),
    }


def _clips(model: Any, prompt_of: Callable[[str], str], notes: tuple[str, ...],
           seeds: list[int], concept: str | None, steps: int, guidance: float,
           tick: Callable[[], None]) -> tuple[np.ndarray, list[int]]:
    out, midi = [], []
    for note in notes:
        for seed in seeds:
            out.append(generate(model, prompt_of(note), seed, steps, guidance, concept=concept))
            midi.append(data.midi_number(note))
            tick()
    return np.stack(out), midi


def run_personalization(model_id: str = "mini", n: int = 5, out: Path = Path("eval-mini"),
                        steps: int = 25, guidance: float = 2.5, device: str = "cpu",
                        methods: tuple[str, ...] = METHODS,
                        instruments: tuple[str, ...] = tuple(TRAIN_NOTES),
                        on_clip: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train every method on every held-out instrument through ``dreamsampler train`` and
    measure it (module docstring) over seeds ``0..n-1``; write ``personalization.json`` and
    ``personalization.md`` to ``out`` (concepts under ``out/concepts``, clips under
    ``out/concept-clips``). A concept already in ``out/concepts`` is measured, not retrained
    (delete its folder to retrain it with other :data:`TRAIN_SETTINGS`).

    Raises:
        RuntimeError: a ``dreamsampler train`` run failed (its exit status).
    """
    from dreamsampler.engine.concepts import ConceptManager
    from dreamsampler.engine.families import load_model
    from dreamsampler.mini.measures import fit_classifier

    classifier = fit_classifier()
    concepts_dir = out / "concepts"
    seeds = list(range(n))
    total = sum(len(EDIT_NOTES[i]) for i in instruments) * (1 + len(methods)) * n
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if on_clip is not None:
            on_clip(done, total)

    rows: list[dict[str, Any]] = []
    for instrument in instruments:
        paths = write_concept_clips(instrument, out / "concept-clips" / instrument)
        reference = np.stack([sf.read(p, dtype="float32")[0] for p in paths])
        words = data.INSTRUMENTS[instrument].words
        edits = EDIT_NOTES[instrument]
        model = load_model(model_id, device)
        audio, midi = _clips(model, lambda note, w=words: f"{w} playing {note}", edits, seeds,
                             None, steps, guidance, tick)
        rows.append({"instrument": instrument, "method": "none (words)",
                     **measure(classifier, audio, instrument, midi, reference)})
        for method in methods:
            name = f"{instrument}-{method}"
            if not (concepts_dir / name / "concept.yaml").is_file():
                train_concept(method, name, model_id, device, paths[0].parent, len(paths),
                              concepts_dir)
            model = load_model(model_id, device)  # a fresh base: DreamBooth replaces the UNet
            token = ConceptManager(model, concepts_dir).load(name).placeholder_token
            audio, midi = _clips(model, lambda note, t=token: f"{t} playing {note}", edits,
                                 seeds, None if method == "ti" else name, steps, guidance, tick)
            rows.append({"instrument": instrument, "method": method,
                         **measure(classifier, audio, instrument, midi, reference)})
    result = {"rows": rows, "settings": {
        "model": model_id, "seeds": seeds, "num_inference_steps": steps,
        "guidance_scale": guidance, "train_notes": TRAIN_NOTES, "edit_notes": EDIT_NOTES,
        "train": TRAIN_SETTINGS, "render_seed": RENDER_SEED}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "personalization.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "personalization.md").write_text(markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    """One row per instrument and method, as the papers' comparison tables."""
    lines = ["| instrument | method | p(instrument) | recognised | similarity (CLAP-A-like) | "
             "SIM_AA@90 | edit: pitch within a semitone |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['instrument']} | {r['method']} | {r['p']:.2f} | "
                     f"{r['recognised']:.0%} | {r['similarity']:.3f} | {r['sim_aa_90']:.0%} | "
                     f"{r['edit_pitch']:.0%} |")
    return "\n".join(lines) + "\n"
