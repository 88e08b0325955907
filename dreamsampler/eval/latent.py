"""Distances between VAE latents of clips (per-clip flattening).

The engine supplies latents of shape ``(batch, channels, frames, bins)`` (AudioLDM/MusicLDM VAE)
or any ``(batch, ...)`` shape; each clip is flattened to one vector.

The mean pairwise latent distance of a generated set is the variation (diversity) measure used
in textual-inversion work on Stable Audio: low spread across seeds signals over-fitting to the
concept. (The exact paper was not verified offline; the metric itself is the plain mean over
unordered pairs.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

__all__ = ["LatentSpread", "latent_cosine", "latent_l2", "pairwise_latent_stats"]

LatentLike = torch.Tensor | NDArray[np.floating]


def _flatten(z: LatentLike, name: str) -> torch.Tensor:
    t = z.detach() if isinstance(z, torch.Tensor) else torch.as_tensor(np.asarray(z))
    if t.ndim < 2:
        raise ValueError(f"{name} must have shape (batch, ...); got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    t = t.to(device="cpu", dtype=torch.float64).reshape(t.shape[0], -1)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _paired(z_a: LatentLike, z_b: LatentLike) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _flatten(z_a, "z_a"), _flatten(z_b, "z_b")
    if a.shape != b.shape:
        raise ValueError(
            f"latents must have equal shapes; got {tuple(a.shape)} vs {tuple(b.shape)}"
        )
    return a, b


def latent_cosine(z_a: LatentLike, z_b: LatentLike) -> NDArray[np.float64]:
    """Per-clip cosine similarity of paired latents.

    Args:
        z_a: latents, shape ``(batch, channels, frames, bins)`` (any ``(batch, ...)``).
        z_b: latents of the same shape.

    Returns:
        Shape ``(batch,)``, values in ``[-1, 1]`` (0 where a latent is all zeros).

    Raises:
        ValueError: different shapes, no batch axis, non-finite values.
    """
    a, b = _paired(z_a, z_b)
    return torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12).numpy()


def latent_l2(z_a: LatentLike, z_b: LatentLike, normalize: bool = False) -> NDArray[np.float64]:
    """Per-clip Euclidean distance of paired latents.

    Args:
        z_a: latents, shape ``(batch, channels, frames, bins)`` (any ``(batch, ...)``).
        z_b: latents of the same shape.
        normalize: divide by ``sqrt(elements per clip)`` (an RMS difference), so that values
            do not grow with clip length.

    Returns:
        Shape ``(batch,)``, in latent units.

    Raises:
        ValueError: different shapes, no batch axis, non-finite values.
    """
    a, b = _paired(z_a, z_b)
    d = torch.linalg.vector_norm(a - b, dim=1)
    if normalize:
        d = d / float(a.shape[1]) ** 0.5
    return d.numpy()


@dataclass(frozen=True)
class LatentSpread:
    """Mean pairwise similarity/distance within one set of latents.

    Attributes:
        mean_cosine: mean cosine over the ``n (n - 1) / 2`` unordered pairs.
        mean_l2: mean Euclidean distance over the pairs (latent units).
        std_l2: standard deviation of the pairwise distances.
        n: number of clips.
        pairs: number of pairs.
    """

    mean_cosine: float
    mean_l2: float
    std_l2: float
    n: int
    pairs: int


def pairwise_latent_stats(latents: LatentLike) -> LatentSpread:
    """Variation of a generated set: mean pairwise cosine and L2 distance of its latents.

    Args:
        latents: shape ``(n, channels, frames, bins)`` (any ``(n, ...)``), ``n >= 2``.

    Returns:
        :class:`LatentSpread`. Low ``mean_l2`` / high ``mean_cosine`` means little variation.

    Raises:
        ValueError: fewer than 2 clips, no batch axis, non-finite values.
    """
    z = _flatten(latents, "latents")
    n = z.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 latents for pairwise statistics; got {n}")
    iu = torch.triu_indices(n, n, offset=1)
    dist = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")[iu[0], iu[1]]
    zn = torch.nn.functional.normalize(z, dim=1, eps=1e-12)
    cos = (zn @ zn.T)[iu[0], iu[1]]
    return LatentSpread(
        mean_cosine=float(cos.mean()),
        mean_l2=float(dist.mean()),
        std_l2=float(dist.std(unbiased=False)),
        n=n,
        pairs=int(dist.numel()),
    )
