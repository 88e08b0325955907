"""Latent distances on VAE-shaped tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamsampler.eval.latent import latent_cosine, latent_l2, pairwise_latent_stats


def test_paired_cosine_and_l2() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 8, 16, 4, generator=g)
    other = torch.stack([z[0], -z[1], 2 * z[2]])
    np.testing.assert_allclose(latent_cosine(z, other), [1.0, -1.0, 1.0], atol=1e-12)
    l2 = latent_l2(z, other)
    norms = z.reshape(3, -1).double().norm(dim=1).numpy()
    np.testing.assert_allclose(l2, [0.0, 2 * norms[1], norms[2]], rtol=1e-6, atol=1e-9)
    rms = latent_l2(z, other, normalize=True)
    np.testing.assert_allclose(rms, l2 / np.sqrt(8 * 16 * 4), rtol=1e-9)
    with pytest.raises(ValueError, match="equal shapes"):
        latent_l2(z, z[:2])


def test_pairwise_stats_known_set() -> None:
    # three clips: e1, e2, -e1 (flattened) -> distances sqrt2, 2, sqrt2; cosines 0, -1, 0
    z = np.zeros((3, 1, 2, 1))
    z[0, 0, 0, 0] = 1.0
    z[1, 0, 1, 0] = 1.0
    z[2, 0, 0, 0] = -1.0
    s = pairwise_latent_stats(z)
    assert s.n == 3 and s.pairs == 3
    assert s.mean_l2 == pytest.approx((2 * np.sqrt(2) + 2) / 3)
    assert s.mean_cosine == pytest.approx(-1 / 3)
    with pytest.raises(ValueError, match="at least 2"):
        pairwise_latent_stats(z[:1])
