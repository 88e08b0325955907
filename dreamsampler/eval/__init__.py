"""Evaluation metrics for generated audio (see each module's docstring for its sources).

Modules, one job each:

- :mod:`~dreamsampler.eval.frechet`: Fréchet distance, FAD and FAD∞ on embedding sets.
- :mod:`~dreamsampler.eval.similarity`: CLAP-A, CLAP-T, SIM-AA and cosine utilities.
- :mod:`~dreamsampler.eval.music`: tempo, key, loudness, chroma and melody similarity.
- :mod:`~dreamsampler.eval.latent`: distances between VAE latents.
- :mod:`~dreamsampler.eval.clap`: CLAP embeddings via transformers (HF dirs, LAION ``.pt``).
- :mod:`~dreamsampler.eval.clap_frontend`: LAION-CLAP's waveform fitting and log-mel.
- :mod:`~dreamsampler.eval.clap_convert`: LAION-CLAP checkpoints → transformers' ``ClapModel``.
- :mod:`~dreamsampler.eval.report`: :class:`EvalReport`, JSON/CSV/table/plots.
- :mod:`~dreamsampler.eval.runner`: :func:`evaluate_folders`, :func:`compare_reports`.
- :mod:`~dreamsampler.eval.audio`: audio loading and checks shared by the others.

Importing this package does not import transformers; the CLAP names load it on first use.
"""

from __future__ import annotations

from typing import Any

from dreamsampler.eval.frechet import (
    FadInfinityResult,
    FadResult,
    fad,
    fad_infinity,
    frechet_distance,
)
from dreamsampler.eval.latent import latent_cosine, latent_l2, pairwise_latent_stats
from dreamsampler.eval.music import (
    chroma_similarity,
    estimate_bpm,
    estimate_key,
    f0_similarity,
    feature_deltas,
    integrated_loudness,
)
from dreamsampler.eval.report import EvalReport, MetricEntry
from dreamsampler.eval.runner import GeneratedClip, compare_reports, evaluate_folders
from dreamsampler.eval.similarity import clap_a, clap_t, cosine_matrix, sim_aa

_LAZY = {"ClapEmbedder", "load_clap", "load_laion_checkpoint", "ClapCheckpointError"}

__all__ = [
    "ClapCheckpointError",
    "ClapEmbedder",
    "EvalReport",
    "FadInfinityResult",
    "FadResult",
    "GeneratedClip",
    "MetricEntry",
    "chroma_similarity",
    "clap_a",
    "clap_t",
    "compare_reports",
    "cosine_matrix",
    "estimate_bpm",
    "estimate_key",
    "evaluate_folders",
    "f0_similarity",
    "fad",
    "fad_infinity",
    "feature_deltas",
    "frechet_distance",
    "integrated_loudness",
    "latent_cosine",
    "latent_l2",
    "load_clap",
    "load_laion_checkpoint",
    "pairwise_latent_stats",
    "sim_aa",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from dreamsampler.eval import clap

        return getattr(clap, name)
    raise AttributeError(f"module 'dreamsampler.eval' has no attribute {name!r}")
