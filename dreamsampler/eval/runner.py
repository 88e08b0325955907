"""Evaluate a concept from audio files: every metric into one :class:`EvalReport`.

Meant to be called by a CLI (``dreamsampler eval --concept NAME ...``) after the engine has
generated clips, or directly on folders of files.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from dreamsampler.eval.audio import SILENCE_DBFS, AudioClip, load_clip, peak_dbfs
from dreamsampler.eval.frechet import fad, fad_infinity
from dreamsampler.eval.latent import pairwise_latent_stats
from dreamsampler.eval.music import ClipFeatures, Delta, clip_features, feature_deltas
from dreamsampler.eval.report import (
    CORE_METRICS,
    EvalReport,
    ReportMeta,
    plot_metric_bars,
    plot_reconstruction_editability,
    print_comparison,
)
from dreamsampler.eval.similarity import clap_a, clap_t, nearest_cosine, sim_aa

if TYPE_CHECKING:  # transformers is heavy to import; only the caller's embedder needs it
    from dreamsampler.eval.clap import ClapEmbedder

__all__ = [
    "AUDIO_SUFFIXES",
    "GeneratedClip",
    "collect_audio",
    "compare_reports",
    "evaluate_folders",
]

#: File suffixes :func:`collect_audio` picks up.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")
#: FAD∞ is attempted from this many generated clips on.
FAD_INF_MIN_N = 10


@dataclass(frozen=True)
class GeneratedClip:
    """A generated file and the prompt it is scored against.

    Attributes:
        path: the audio file.
        prompt: text for CLAP-T, with the concept's placeholder token already replaced by
            words CLAP knows (e.g. ``"a recording of a guitar in a jazz style"``); ``None``
            leaves the clip out of CLAP-T.
        reconstruction: generated for a reconstruction prompt ("a recording of a S*"). The
            audio-audio metrics (CLAP-A, SIM_AA, FAD, music features) use the reconstruction
            clips when some are marked, else all clips; editability clips (``False``) serve
            CLAP-T (Plitsis et al. 2023, DreamSound's evaluate.py).
    """

    path: Path
    prompt: str | None = None
    reconstruction: bool = True


GeneratedSpec = Sequence[GeneratedClip] | Mapping[str, Sequence[str | Path]] | Sequence[str | Path]


def collect_audio(folder: str | Path) -> list[Path]:
    """Audio files (by suffix, see :data:`AUDIO_SUFFIXES`) directly in ``folder``, sorted.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
    """
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: not a directory")
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def _normalise_generated(generated: GeneratedSpec) -> list[GeneratedClip]:
    if isinstance(generated, (str, Path)):
        raise TypeError("generated must be a list of files or clips, not a single path")
    if isinstance(generated, Mapping):
        return [
            GeneratedClip(Path(f), str(prompt))
            for prompt, files in generated.items()
            for f in files
        ]
    out = []
    for item in generated:
        out.append(item if isinstance(item, GeneratedClip) else GeneratedClip(Path(item)))
    return out


def _load_set(paths: Sequence[Path], what: str) -> tuple[list[AudioClip], list[Path]]:
    """Load every file; return (sounding clips, silent files). Raise when none sounds."""
    if not paths:
        raise ValueError(f"no {what} clips given")
    clips: list[AudioClip] = []
    silent: list[Path] = []
    for p in paths:
        clip = load_clip(p)
        if peak_dbfs(clip.audio) < SILENCE_DBFS:
            silent.append(p)
        else:
            clips.append(clip)
    if not clips:
        names = ", ".join(str(p) for p in silent)
        raise ValueError(
            f"all {len(paths)} {what} clips are silent (peak < {SILENCE_DBFS:.0f} dBFS): {names}"
        )
    return clips, silent


def _embed(clap: ClapEmbedder, clips: Sequence[AudioClip]) -> NDArray[np.float32]:
    """CLAP audio embeddings, shape ``(n, dim)``, grouping clips by sample rate, order kept."""
    out = np.zeros((len(clips), clap.dim), dtype=np.float32)
    for sr in sorted({c.sr for c in clips}):
        idx = [i for i, c in enumerate(clips) if c.sr == sr]
        out[idx] = clap.embed_audio([clips[i].audio for i in idx], sr)
    return out


def _small_n(n: int, what: str, minimum: int = 5) -> str | None:
    return f"only {n} {what}; treat as indicative" if n < minimum else None


def _record_delta(report: EvalReport, key: str, d: Delta) -> None:
    if d.value is None:
        report.fail(key, d.error or "not computable", d.n)
    else:
        report.set(key, d.value, d.n, warning=_small_n(d.n, "clips"))


def _clap_metrics(
    report: EvalReport,
    clap: ClapEmbedder | None,
    gen: list[AudioClip],
    prompts: list[str | None],
    ref: list[AudioClip],
    recon: list[bool] | None = None,
) -> None:
    clap_keys = ("clap_a", "clap_t", "sim_aa_90", "sim_aa_95", "fad")
    if clap is None:
        for k in clap_keys:
            report.fail(k, "no CLAP model given")
        return
    try:
        g = _embed(clap, gen)
        r = _embed(clap, ref)
    except Exception as exc:  # a model failure must not sink the other metrics
        for k in clap_keys:
            report.fail(k, f"CLAP audio embedding failed: {exc}")
        return
    g_all = g
    if recon is not None and any(recon):
        g = g[np.asarray(recon, dtype=bool)]
    ng, nr = len(g), len(r)
    pairs_warn = _small_n(min(ng, nr), "clips on one side")
    report.set(
        "clap_a", clap_a(g, r), ng, warning=pairs_warn, detail={"pairs": ng * nr, "n_reference": nr}
    )
    best, _ = nearest_cosine(g, r)
    for key, thr in (("sim_aa_90", 0.90), ("sim_aa_95", 0.95)):
        report.set(
            key,
            sim_aa(g, r, thr),
            ng,
            warning=pairs_warn,
            detail={"threshold": thr, "mean_nearest_cosine": float(best.mean())},
        )
    try:
        res = fad(r, g)
        report.set(
            "fad",
            res.value,
            res.n,
            warning=res.warning,
            detail={"n_reference": nr, "n_generated": ng},
        )
    except ValueError as exc:
        report.fail("fad", str(exc), min(ng, nr))
    if ng >= FAD_INF_MIN_N:
        try:
            inf = fad_infinity(r, g)
            report.set(
                "fad_inf",
                inf.value,
                inf.n,
                warning=inf.warning,
                detail={
                    "slope": inf.slope,
                    "r2": inf.r2,
                    "ns": list(inf.ns),
                    "fads": list(inf.fads),
                },
            )
        except ValueError as exc:
            report.fail("fad_inf", str(exc), ng)
    have = [i for i, p in enumerate(prompts) if p]
    if not have:
        report.fail("clap_t", "no prompts given for the generated clips", 0)
        return
    try:
        texts = [prompts[i] or "" for i in have]
        t = clap.embed_text(texts)
        a = g_all[have]
        per_prompt: dict[str, list[float]] = {}
        cos = (t * a).sum(axis=1) / (np.linalg.norm(t, axis=1) * np.linalg.norm(a, axis=1))
        for text, c in zip(texts, cos, strict=True):
            per_prompt.setdefault(text, []).append(float(c))
        report.set(
            "clap_t",
            clap_t(t, a),
            len(have),
            warning=_small_n(len(have), "prompted clips"),
            detail={"per_prompt": {k: float(np.mean(v)) for k, v in per_prompt.items()}},
        )
    except Exception as exc:
        report.fail("clap_t", f"CLAP text embedding failed: {exc}", len(have))


def _music_metrics(report: EvalReport, gen: list[AudioClip], ref: list[AudioClip]) -> None:
    def feats(clips: list[AudioClip]) -> list[ClipFeatures]:
        return [
            clip_features(c.audio, c.sr, name=str(c.path or f"clip {i}"))
            for i, c in enumerate(clips)
        ]

    gf, rf = feats(gen), feats(ref)
    d = feature_deltas(gf, rf)
    _record_delta(report, "bpm", d.generated_bpm)
    label, n_keys = d.generated_key
    if label is None:
        report.fail("key", "no generated clip has a key estimate", 0)
    else:
        report.set("key", label, n_keys, warning=_small_n(n_keys, "clips"))
    _record_delta(report, "lufs", d.generated_lufs)
    _record_delta(report, "bpm_delta", d.bpm_delta)
    _record_delta(report, "key_match", d.key_match)
    _record_delta(report, "lufs_delta", d.lufs_delta)
    _record_delta(report, "ref_bpm", d.reference_bpm)
    if d.reference_key is None:
        report.fail("ref_key", "no training clip has a key estimate")
    else:
        report.set("ref_key", d.reference_key, sum(f.key is not None for f in rf))
    _record_delta(report, "ref_lufs", d.reference_lufs)
    per_clip: dict[str, Any] = {}
    for f in gf:
        per_clip[f.name] = {
            "bpm": f.bpm,
            "key": f.key.label if f.key else None,
            "lufs": f.lufs,
            "errors": f.errors,
        }
    report.metrics["bpm"].detail.setdefault("per_clip", per_clip)


def evaluate_folders(
    generated: GeneratedSpec,
    training_clips: Sequence[str | Path],
    clap: ClapEmbedder | None,
    out_dir: str | Path | None = None,
    concept: str = "concept",
    generated_latents: torch.Tensor | NDArray[np.floating] | None = None,
    music: bool = True,
    plots: bool = True,
    info: Mapping[str, Any] | None = None,
) -> EvalReport:
    """Evaluate generated clips of a concept against its training clips.

    Files are read with soundfile at any sample rate (each analysis resamples with soxr as it
    needs: CLAP 48 kHz, tempo/key 22.05 kHz, loudness at the file's rate).

    Args:
        generated: the generated files, as :class:`GeneratedClip` items (file + prompt for
            CLAP-T), a mapping prompt text → files, or plain paths (no CLAP-T).
        training_clips: the concept's training (reference) files.
        clap: a :class:`ClapEmbedder`, or ``None`` (CLAP metrics are then recorded as errors).
        out_dir: where to write ``report.json``, ``report.csv`` and plots; ``None`` writes
            nothing.
        concept: the concept's name.
        generated_latents: VAE latents of the generated clips, shape
            ``(n, channels, frames, bins)``, for the variation metrics ``latent_cosine`` and
            ``latent_l2`` (optional).
        music: compute tempo/key/loudness metrics.
        plots: write PNG plots with the report.
        info: free-form context stored in ``meta.info`` (model, seeds, steps, ...).

    Returns:
        The :class:`EvalReport`. Metrics that could not run carry an ``error``; silent generated
        clips are left out and listed in ``meta.warnings``.

    Raises:
        ValueError: no generated or no training clips, or every clip of a set is silent (the
            message names the files).
        AudioError: a file cannot be read (the message names it).
    """
    items = _normalise_generated(generated)
    gen_paths = [c.path for c in items]
    ref_paths = [Path(p) for p in training_clips]
    gen, gen_silent = _load_set(gen_paths, "generated")
    ref, ref_silent = _load_set(ref_paths, "training")
    prompt_of = {c.path: c.prompt for c in items}
    prompts = [prompt_of.get(c.path) if c.path else None for c in gen]
    recon_of = {c.path: c.reconstruction for c in items}
    recon = [c for c in gen if recon_of.get(c.path, True)] or gen

    meta = ReportMeta(
        concept=concept,
        n_generated=len(gen),
        n_reference=len(ref),
        generated_files=[str(c.path) for c in gen],
        reference_files=[str(c.path) for c in ref],
        info=dict(info or {}),
    )
    for what, silent in (("generated", gen_silent), ("training", ref_silent)):
        if silent:
            names = ", ".join(map(str, silent))
            meta.warnings.append(f"{len(silent)} silent {what} clip(s) left out: {names}")
    report = EvalReport(meta=meta)

    _clap_metrics(report, clap, gen, prompts, ref, recon=[recon_of.get(c.path, True) for c in gen])
    if music:
        _music_metrics(report, recon, ref)
    else:
        for k in ("bpm", "key", "lufs", "bpm_delta", "key_match", "lufs_delta"):
            report.fail(k, "music metrics disabled")
    if generated_latents is not None:
        try:
            spread = pairwise_latent_stats(generated_latents)
            report.set(
                "latent_cosine", spread.mean_cosine, spread.n, detail={"pairs": spread.pairs}
            )
            report.set(
                "latent_l2",
                spread.mean_l2,
                spread.n,
                detail={"pairs": spread.pairs, "std": spread.std_l2},
            )
        except ValueError as exc:
            report.fail("latent_cosine", str(exc))
            report.fail("latent_l2", str(exc))
    if out_dir is not None:
        report.write(out_dir, plots=plots)
    return report


def compare_reports(
    reports: Mapping[str, EvalReport],
    out_dir: str | Path,
    metrics: Sequence[str] = CORE_METRICS,
    print_table: bool = False,
) -> dict[str, Path]:
    """Side-by-side comparison of several concepts' reports.

    Writes ``compare.json`` (concept → report object), ``compare.csv`` (one row per concept and
    metric), ``compare_clap_a_vs_clap_t.png`` and ``compare_metrics.png``.

    Args:
        reports: concept name → report.
        out_dir: output folder.
        metrics: metric keys for the CSV rows order and the bar plot.
        print_table: also print a rich comparison table.

    Returns:
        Name → path of every file written.

    Raises:
        ValueError: no reports.
    """
    if not reports:
        raise ValueError("no reports to compare")
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["json"] = d / "compare.json"
    files["json"].write_text(
        json.dumps({k: r.to_dict() for k, r in reports.items()}, indent=2, ensure_ascii=False)
        + "\n",
        "utf-8",
    )
    files["csv"] = d / "compare.csv"
    with files["csv"].open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["concept", "metric", "value", "n", "warning", "error"])
        for name, r in reports.items():
            keys = list(metrics) + [k for k in r.metrics if k not in metrics]
            for key in keys:
                e = r.metrics.get(key)
                if e is not None:
                    w.writerow([name, key, e.value, e.n, e.warning or "", e.error or ""])
    files["scatter"] = plot_reconstruction_editability(reports, d / "compare_clap_a_vs_clap_t.png")
    numeric = [m for m in metrics if m not in ("key", "bpm", "lufs")]
    files["bars"] = plot_metric_bars(reports, d / "compare_metrics.png", metrics=numeric)
    if print_table:
        print_comparison(reports, metrics=metrics)
    return files
