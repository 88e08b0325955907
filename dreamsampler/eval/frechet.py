"""Fréchet distance between Gaussians fitted to embedding sets (FAD) and its FAD∞ extrapolation.

References:
    - Kilgour et al., "Fréchet Audio Distance: A Metric for Evaluating Music Enhancement
      Algorithms", Interspeech 2019 (arXiv:1812.08466).
    - Chong & Forsyth, "Effectively Unbiased FID and Inception Score and where to find them",
      CVPR 2020 (arXiv:1911.07023): FID∞ by linear extrapolation in 1/n.
    - Gui et al., "Adapting Fréchet Audio Distance for Generative Music Evaluation", ICASSP 2024
      (arXiv:2311.01616): FAD∞ for audio (fadtk).
    - Jayasumana et al., "Rethinking FID: Towards a Better Evaluation Metric for Image
      Generation", CVPR 2024 (arXiv:2401.09603): on the bias of FID at small n.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Below this many samples per set a FAD value is flagged as unreliable (small-n bias).
MIN_RELIABLE_N = 50

__all__ = [
    "MIN_RELIABLE_N",
    "FadInfinityResult",
    "FadResult",
    "fad",
    "fad_infinity",
    "fit_gaussian",
    "frechet_distance",
]


@dataclass(frozen=True)
class FadResult:
    """A Fréchet audio distance with the sample sizes it rests on.

    Attributes:
        value: the squared Fréchet distance (embedding units squared).
        n: the smaller of the two set sizes.
        n_a: number of embeddings in the first set.
        n_b: number of embeddings in the second set.
        dim: embedding dimension.
        warning: why the value is unreliable (``n < dim`` or ``n < 50``), or ``None``.
    """

    value: float
    n: int
    n_a: int
    n_b: int
    dim: int
    warning: str | None = None


@dataclass(frozen=True)
class FadInfinityResult:
    """FAD∞: the intercept of a linear fit of FAD against ``1/n``.

    Attributes:
        value: extrapolated FAD at ``n → ∞`` (the fit's intercept).
        slope: the fit's slope (FAD units × n): the small-n bias coefficient.
        r2: coefficient of determination of the fit.
        ns: subset sizes of the generated set used for the fit.
        fads: mean FAD at each subset size.
        n: size of the full generated set.
        warning: why the value is unreliable, or ``None``.
    """

    value: float
    slope: float
    r2: float
    ns: tuple[int, ...]
    fads: tuple[float, ...]
    n: int
    warning: str | None = None


def _as_embeddings(x: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n, dim); got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(
            f"{name} needs at least 2 embeddings to fit a covariance; got {arr.shape[0]}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def fit_gaussian(emb: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Fit a Gaussian to a set of embeddings.

    Args:
        emb: embeddings, shape ``(n, dim)``, ``n >= 2``.

    Returns:
        ``(mu, sigma)``: mean, shape ``(dim,)``, and unbiased sample covariance (``ddof=1``),
        shape ``(dim, dim)``.

    Raises:
        ValueError: wrong shape, fewer than 2 rows, or non-finite values.
    """
    arr = _as_embeddings(emb, "emb")
    mu = arr.mean(axis=0)
    sigma = np.atleast_2d(np.cov(arr, rowvar=False))
    return mu, sigma


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Squared Fréchet (2-Wasserstein) distance between two Gaussians.

    ``d² = |mu1 - mu2|² + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^½)``

    The trace of the matrix square root is the sum of the square roots of the eigenvalues of
    ``sigma1 @ sigma2`` (similar to the PSD matrix ``sigma1^½ sigma2 sigma1^½``, so its eigenvalues
    are real and >= 0 up to round-off, which is clipped). This equals the trace of
    ``scipy.linalg.sqrtm(sigma1 @ sigma2)`` without its instability on near-singular products.

    Args:
        mu1: mean of the first Gaussian, shape ``(dim,)``.
        sigma1: covariance of the first Gaussian, shape ``(dim, dim)``.
        mu2: mean of the second Gaussian, shape ``(dim,)``.
        sigma2: covariance of the second Gaussian, shape ``(dim, dim)``.

    Returns:
        The squared distance (>= 0), in squared embedding units.

    Raises:
        ValueError: inconsistent shapes.

    Source: Fréchet (1957); Dowson & Landau (1982); used as FID by Heusel et al. (2017) and as
    FAD by Kilgour et al. (2019).
    """
    m1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    m2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    dim = m1.shape[0]
    if m1.shape != (dim,) or m2.shape != (dim,):
        raise ValueError(f"means must both have shape ({dim},); got {m1.shape} and {m2.shape}")
    if s1.shape != (dim, dim) or s2.shape != (dim, dim):
        raise ValueError(
            f"covariances must have shape ({dim}, {dim}); got {s1.shape} and {s2.shape}"
        )
    eig = np.linalg.eigvals(s1 @ s2)
    tr_covmean = float(np.sqrt(np.clip(eig.real, 0.0, None)).sum())
    diff = m1 - m2
    d2 = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(d2, 0.0)


def _small_n_warning(n: int, dim: int) -> str | None:
    problems = []
    if n < dim:
        problems.append(f"n={n} < dim={dim}: covariance is singular")
    if n < MIN_RELIABLE_N:
        problems.append(f"n={n} < {MIN_RELIABLE_N}: FAD is strongly biased upwards at small n")
    return "; ".join(problems) or None


def fad(emb_a: ArrayLike, emb_b: ArrayLike) -> FadResult:
    """Fréchet audio distance between two embedding sets.

    Args:
        emb_a: embeddings of the first set (e.g. reference/training audio), shape ``(n_a, dim)``.
        emb_b: embeddings of the second set (e.g. generated audio), shape ``(n_b, dim)``.

    Returns:
        :class:`FadResult` with the value, ``n = min(n_a, n_b)`` and a warning when
        ``n < dim`` or ``n < 50`` (FAD is biased upwards at small n).

    Raises:
        ValueError: not 2-D, fewer than 2 rows, non-finite values or different dims.

    Source: Kilgour et al. 2019, arXiv:1812.08466.
    """
    a = _as_embeddings(emb_a, "emb_a")
    b = _as_embeddings(emb_b, "emb_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embedding dims differ: {a.shape[1]} vs {b.shape[1]}")
    mu_a, s_a = fit_gaussian(a)
    mu_b, s_b = fit_gaussian(b)
    n = min(a.shape[0], b.shape[0])
    return FadResult(
        value=frechet_distance(mu_a, s_a, mu_b, s_b),
        n=n,
        n_a=a.shape[0],
        n_b=b.shape[0],
        dim=a.shape[1],
        warning=_small_n_warning(n, a.shape[1]),
    )


def fad_infinity(
    reference: ArrayLike,
    generated: ArrayLike,
    ns: Sequence[int] | None = None,
    num_points: int = 10,
    trials: int = 3,
    min_n: int | None = None,
    seed: int = 0,
) -> FadInfinityResult:
    """FAD∞: FAD extrapolated to an infinite generated set.

    The reference Gaussian is fitted once on all of ``reference``; the generated set is
    subsampled without replacement at several sizes ``n``, FAD is averaged over ``trials`` draws
    at each size, and ``FAD(n) = value + slope / n`` is fitted by least squares. The intercept
    is reported (Chong & Forsyth 2020; Gui et al. 2024 use the same procedure in fadtk).

    Args:
        reference: reference embeddings, shape ``(n_ref, dim)``.
        generated: generated embeddings, shape ``(n, dim)``.
        ns: explicit subset sizes (each in ``[2, n]``); default ``num_points`` sizes evenly spaced
            between ``min_n`` and ``n``.
        num_points: number of subset sizes when ``ns`` is not given (>= 2).
        trials: draws averaged per subset size (>= 1).
        min_n: smallest subset size (default ``max(2, n // 4)``, at least ``dim + 1`` when the
            set allows).
        seed: seed of the subsampling RNG.

    Returns:
        :class:`FadInfinityResult`; its warning is set when the set is small (``n < 50`` or
        ``n < dim``) or fewer than 2 distinct sizes are available.

    Raises:
        ValueError: bad shapes, fewer than 2 distinct subset sizes, or sizes out of range.

    Source: Chong & Forsyth, CVPR 2020, arXiv:1911.07023; Gui et al., ICASSP 2024,
    arXiv:2311.01616.
    """
    ref = _as_embeddings(reference, "reference")
    gen = _as_embeddings(generated, "generated")
    if ref.shape[1] != gen.shape[1]:
        raise ValueError(f"embedding dims differ: {ref.shape[1]} vs {gen.shape[1]}")
    n, dim = gen.shape
    if ns is None:
        if num_points < 2:
            raise ValueError(f"num_points must be >= 2; got {num_points}")
        lo = min_n if min_n is not None else max(2, n // 4, min(dim + 1, n // 2))
        sizes = np.unique(np.linspace(lo, n, num_points).round().astype(int))
    else:
        sizes = np.unique(np.asarray(list(ns), dtype=int))
    if sizes.size < 2:
        raise ValueError(f"need at least 2 distinct subset sizes; got {sizes.tolist()}")
    if sizes.min() < 2 or sizes.max() > n:
        raise ValueError(f"subset sizes must lie in [2, {n}]; got {sizes.tolist()}")
    if trials < 1:
        raise ValueError(f"trials must be >= 1; got {trials}")

    rng = np.random.default_rng(seed)
    mu_r, s_r = fit_gaussian(ref)
    means: list[float] = []
    for size in sizes:
        reps = 1 if size == n else trials
        vals = []
        for _ in range(reps):
            idx = rng.choice(n, size=int(size), replace=False)
            mu_g, s_g = fit_gaussian(gen[idx])
            vals.append(frechet_distance(mu_r, s_r, mu_g, s_g))
        means.append(float(np.mean(vals)))

    x = 1.0 / sizes.astype(np.float64)
    y = np.asarray(means)
    design = np.stack([np.ones_like(x), x], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ np.array([intercept, slope])
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return FadInfinityResult(
        value=float(intercept),
        slope=float(slope),
        r2=r2,
        ns=tuple(int(s) for s in sizes),
        fads=tuple(means),
        n=n,
        warning=_small_n_warning(min(n, ref.shape[0]), dim),
    )
