"""CLAP-A, CLAP-T and SIM-AA on constructed embeddings with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from dreamsampler.eval.similarity import (
    clap_a,
    clap_t,
    cosine_matrix,
    l2_normalize,
    nearest_cosine,
    sim_aa,
)


def _unit_at_angle(theta: float, dim: int = 4) -> np.ndarray:
    v = np.zeros(dim)
    v[0], v[1] = np.cos(theta), np.sin(theta)
    return v


def test_cosine_matrix_is_scale_invariant() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[3.0, 0.0], [1.0, 1.0]])
    got = cosine_matrix(a, b)
    expected = np.array([[1.0, 1 / np.sqrt(2)], [0.0, 1 / np.sqrt(2)]])
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(l2_normalize(b), axis=1), 1.0)


def test_zero_vector_raises() -> None:
    with pytest.raises(ValueError, match="zero vector"):
        cosine_matrix(np.zeros((1, 3)), np.ones((1, 3)))


def test_clap_a_mean_over_all_pairs() -> None:
    # generated at angles 0 and 90 degrees; references at 0 and 60 degrees
    gen = np.stack([_unit_at_angle(0.0), 5 * _unit_at_angle(np.pi / 2)])
    ref = np.stack([_unit_at_angle(0.0), _unit_at_angle(np.pi / 3)])
    expected = np.mean([1.0, np.cos(np.pi / 3), 0.0, np.cos(np.pi / 6)])
    assert clap_a(gen, ref) == pytest.approx(expected, abs=1e-12)


def test_clap_t_is_paired_not_all_pairs() -> None:
    text = np.stack([_unit_at_angle(0.0), _unit_at_angle(np.pi / 2)])
    audio = np.stack([_unit_at_angle(np.pi / 3), _unit_at_angle(np.pi / 2)])
    assert clap_t(text, audio) == pytest.approx((0.5 + 1.0) / 2, abs=1e-12)
    with pytest.raises(ValueError, match="equal shapes"):
        clap_t(text, audio[:1])


def test_sim_aa_thresholds() -> None:
    train = np.stack([_unit_at_angle(0.0), _unit_at_angle(np.pi / 2)])
    # nearest-train cosines: 0.99, 0.93 and cos(45 deg) = 0.707
    angles = [np.arccos(0.99), np.pi / 2 - np.arccos(0.93), np.pi / 4]
    gen = np.stack([_unit_at_angle(t) for t in angles])
    best, idx = nearest_cosine(gen, train)
    np.testing.assert_allclose(best, [0.99, 0.93, np.cos(np.pi / 4)], atol=1e-12)
    assert idx.tolist()[:2] == [0, 1]
    assert sim_aa(gen, train, 0.90) == pytest.approx(2 / 3)
    assert sim_aa(gen, train, 0.95) == pytest.approx(1 / 3)
    assert sim_aa(train, train, 0.95) == 1.0
    with pytest.raises(ValueError, match="threshold"):
        sim_aa(gen, train, 1.5)
