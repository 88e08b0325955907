"""Cosine-similarity metrics on CLAP embeddings: CLAP-A, CLAP-T and SIM-AA.

References:
    - Plitsis, Kouzelis, Paraskevopoulos, Katsouros, Panagakis, "Investigating Personalization
      Methods in Text to Music Generation", arXiv:2309.11140 (DreamSound): CLAP-A
      (reconstruction) and CLAP-T (editability).
    - Chen et al., "MusicLDM: Enhancing Novelty in Text-to-Music Generation Using
      Beat-Synchronous Mixup Strategies", arXiv:2308.01546: SIM-AA (share of generated clips
      whose nearest training clip exceeds a similarity threshold; a memorisation measure).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "clap_a",
    "clap_t",
    "cosine_matrix",
    "l2_normalize",
    "nearest_cosine",
    "paired_cosine",
    "sim_aa",
]

_EPS = 1e-12


def _as_2d(x: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have shape (n, dim) with n, dim >= 1; got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def l2_normalize(x: ArrayLike) -> NDArray[np.float64]:
    """Scale each row to unit L2 norm.

    Args:
        x: vectors, shape ``(n, dim)`` (or ``(dim,)``, treated as one row).

    Returns:
        Array of shape ``(n, dim)``; rows have norm 1.

    Raises:
        ValueError: wrong shape, non-finite values, or an all-zero row (no direction).
    """
    arr = _as_2d(x, "x")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if np.any(norms < _EPS):
        bad = np.flatnonzero(norms[:, 0] < _EPS).tolist()
        raise ValueError(f"zero vector(s) at rows {bad}: cosine similarity is undefined")
    return arr / norms


def cosine_matrix(a: ArrayLike, b: ArrayLike) -> NDArray[np.float64]:
    """All-pairs cosine similarity.

    Args:
        a: shape ``(n, dim)``.
        b: shape ``(m, dim)``.

    Returns:
        Matrix of shape ``(n, m)`` with values in ``[-1, 1]``.

    Raises:
        ValueError: mismatched dims, zero rows, non-finite values.
    """
    an, bn = l2_normalize(a), l2_normalize(b)
    if an.shape[1] != bn.shape[1]:
        raise ValueError(f"embedding dims differ: {an.shape[1]} vs {bn.shape[1]}")
    return np.clip(an @ bn.T, -1.0, 1.0)


def paired_cosine(a: ArrayLike, b: ArrayLike) -> NDArray[np.float64]:
    """Row-wise cosine similarity of paired vectors.

    Args:
        a: shape ``(n, dim)``.
        b: shape ``(n, dim)``.

    Returns:
        Shape ``(n,)``.

    Raises:
        ValueError: different shapes, zero rows, non-finite values.
    """
    an, bn = l2_normalize(a), l2_normalize(b)
    if an.shape != bn.shape:
        raise ValueError(f"paired inputs must have equal shapes; got {an.shape} and {bn.shape}")
    return np.clip((an * bn).sum(axis=1), -1.0, 1.0)


def nearest_cosine(
    query: ArrayLike, pool: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Cosine similarity of each query to its nearest pool vector.

    Args:
        query: shape ``(n, dim)``.
        pool: shape ``(m, dim)``.

    Returns:
        ``(similarity, index)``, both shape ``(n,)``.
    """
    sim = cosine_matrix(query, pool)
    idx = sim.argmax(axis=1)
    return sim[np.arange(sim.shape[0]), idx], idx.astype(np.int64)


def clap_a(gen_audio_emb: ArrayLike, ref_audio_emb: ArrayLike) -> float:
    """CLAP-A (reconstruction): mean cosine over all (generated, training) clip pairs.

    Args:
        gen_audio_emb: CLAP audio embeddings of generated clips, shape ``(n_gen, dim)``.
        ref_audio_emb: CLAP audio embeddings of the concept's training clips, shape
            ``(n_ref, dim)``.

    Returns:
        Mean of the ``(n_gen, n_ref)`` cosine matrix, in ``[-1, 1]``.

    Raises:
        ValueError: mismatched dims, zero rows, non-finite values.

    Source: Plitsis et al. 2023, arXiv:2309.11140 (DreamSound ``evaluate.py``: mean over all
    pairs).
    """
    return float(cosine_matrix(gen_audio_emb, ref_audio_emb).mean())


def clap_t(text_emb: ArrayLike, audio_emb: ArrayLike) -> float:
    """CLAP-T (editability / text adherence): mean cosine of each clip with its own prompt.

    Args:
        text_emb: CLAP text embeddings of the prompts, shape ``(n, dim)``; row ``i`` is the
            prompt that generated clip ``i``.
        audio_emb: CLAP audio embeddings of the generated clips, shape ``(n, dim)``.

    Returns:
        Mean paired cosine, in ``[-1, 1]``.

    Raises:
        ValueError: different shapes, zero rows, non-finite values.

    Source: Plitsis et al. 2023, arXiv:2309.11140.
    """
    return float(paired_cosine(text_emb, audio_emb).mean())


def sim_aa(gen_emb: ArrayLike, train_emb: ArrayLike, threshold: float = 0.9) -> float:
    """SIM-AA: share of generated clips whose nearest training clip has cosine > ``threshold``.

    High values mean the model copies its training clips. MusicLDM reports it at thresholds
    0.90 and 0.95.

    Args:
        gen_emb: audio embeddings of generated clips, shape ``(n_gen, dim)``.
        train_emb: audio embeddings of training clips, shape ``(n_train, dim)``.
        threshold: cosine threshold in ``[-1, 1]`` (strict ``>``).

    Returns:
        Fraction in ``[0, 1]``.

    Raises:
        ValueError: bad shapes or a threshold outside ``[-1, 1]``.

    Source: Chen et al. 2023 (MusicLDM), arXiv:2308.01546.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [-1, 1]; got {threshold}")
    best, _ = nearest_cosine(gen_emb, train_emb)
    return float((best > threshold).mean())
