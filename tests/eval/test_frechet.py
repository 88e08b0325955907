"""Fréchet distance against closed forms and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from dreamsampler.eval.frechet import fad, fad_infinity, fit_gaussian, frechet_distance


def _random_spd(rng: np.random.Generator, dim: int) -> np.ndarray:
    a = rng.standard_normal((dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


def test_equal_covariances_give_squared_mean_distance() -> None:
    rng = np.random.default_rng(0)
    sigma = _random_spd(rng, 6)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    expected = float(((mu1 - mu2) ** 2).sum())
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(expected, rel=1e-8, abs=1e-9)


def test_diagonal_covariances_closed_form() -> None:
    rng = np.random.default_rng(1)
    v1, v2 = rng.uniform(0.2, 3.0, 5), rng.uniform(0.2, 3.0, 5)
    mu1, mu2 = rng.standard_normal(5), rng.standard_normal(5)
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum())
    got = frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-9)


def test_matches_scipy_sqrtm() -> None:
    rng = np.random.default_rng(2)
    s1, s2 = _random_spd(rng, 12), _random_spd(rng, 12)
    mu1, mu2 = rng.standard_normal(12), rng.standard_normal(12)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    ref = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-7, abs=1e-9)


def test_identical_sets_give_zero_and_fad_sample_estimate() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 4))
    assert fad(x, x).value == pytest.approx(0.0, abs=1e-9)
    # large samples from N(0, I) and N(m, 4I): true FD = |m|^2 + dim * (2 - 1)^2
    m = np.array([1.0, -1.0, 0.5, 0.0])
    a = rng.standard_normal((20000, 4))
    b = m + 2.0 * rng.standard_normal((20000, 4))
    res = fad(a, b)
    assert res.value == pytest.approx(float(m @ m) + 4.0, rel=0.02)
    assert res.n == 20000 and res.dim == 4 and res.warning is None


def test_small_n_is_flagged() -> None:
    rng = np.random.default_rng(4)
    res = fad(rng.standard_normal((20, 32)), rng.standard_normal((100, 32)))
    assert res.n == 20
    assert res.warning is not None and "dim" in res.warning and "50" in res.warning


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"\(n, dim\)"):
        fad(np.zeros(5), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="dims differ"):
        fad(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        fit_gaussian(np.zeros((1, 3)))


def test_fad_infinity_is_closer_to_truth_than_small_n() -> None:
    rng = np.random.default_rng(5)
    dim = 16
    shift = np.full(dim, 0.25)
    true_fd = float(shift @ shift)  # same covariance (identity)
    ref = rng.standard_normal((20000, dim))
    gen = shift + rng.standard_normal((1000, dim))
    small = fad(ref, gen[:50]).value
    inf = fad_infinity(ref, gen, num_points=8, trials=3, min_n=100, seed=0)
    assert abs(inf.value - true_fd) < abs(small - true_fd)
    assert abs(inf.value - true_fd) < 0.1
    assert inf.slope > 0  # FAD falls as n grows
    assert inf.r2 > 0.9
    assert inf.fads[0] > inf.fads[-1]
