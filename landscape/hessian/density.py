"""Eigenvalue spectral density by stochastic Lanczos quadrature (SLQ).

For a unit random start v, m Lanczos steps give the Gauss quadrature nodes θ_j (Ritz values) and
weights τ_j² (squared first components of T_m's eigenvectors) of the spectral measure
μ_v = Σ_i (u_iᵀ v)² δ_{λ_i}; with Rademacher v/√dim, E[μ_v] = (1/dim) Σ_i δ_{λ_i} is the empirical
eigenvalue distribution (Lin, Saad & Yang 2016, "Approximating spectral densities of large
matrices"; Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019; Yao et al. 2020 PyHessian).
Averaging over ``n_starts`` starts and smoothing each node with a Gaussian of width σ gives

    ρ(λ) = (1/n_v) Σ_v Σ_j τ_{v,j}² N(λ; θ_{v,j}, σ²),

which integrates to 1 exactly; on the returned grid (θ range padded by 6σ) it is renormalised
by the trapezoid rule so that the discrete integral is 1 too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .lanczos import MatVec, lanczos, random_start


@dataclass
class Density:
    """ρ on ``grid`` [G] (1/eigenvalue units), SLQ ``nodes``/``weights`` [n_v, m], σ, products."""

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    n_hvp: int


def slq_nodes(matvec: MatVec, dim: int, n_starts: int, n_steps: int, generator: torch.Generator,
              device: torch.device | str = "cpu",
              progress=None) -> tuple[np.ndarray, np.ndarray, int]:
    """Quadrature nodes and weights [n_starts, m] of SLQ with Rademacher starts; products used.

    A start whose Krylov space closes early (an invariant subspace) is padded with zero weights."""
    m = min(n_steps, dim)
    nodes = np.zeros((n_starts, m))
    weights = np.zeros((n_starts, m))
    used = 0
    for i in range(n_starts):
        v0 = random_start(dim, generator, device, "rademacher")
        run = lanczos(matvec, v0, m, progress=progress)
        theta, s, _ = run.ritz()
        nodes[i, :len(theta)] = theta
        weights[i, :len(theta)] = s[0, :] ** 2
        used += run.n_hvp
    return nodes, weights, used


def smooth_density(nodes: np.ndarray, weights: np.ndarray, sigma: float,
                   grid: np.ndarray) -> np.ndarray:
    """(1/n_v) Σ weights · N(grid; nodes, σ²), renormalised to unit trapezoid integral on grid."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    d = np.zeros_like(grid, dtype=np.float64)
    for th, w in zip(nodes.reshape(-1), weights.reshape(-1), strict=True):
        if w > 0:
            d += w * np.exp(-0.5 * ((grid - th) / sigma) ** 2)
    d /= nodes.shape[0] * sigma * np.sqrt(2 * np.pi)
    area = np.trapezoid(d, grid)
    return d / area if area > 0 else d


def spectral_density(matvec: MatVec, dim: int, n_starts: int = 3, n_steps: int = 30,
                     sigma_scale: float = 1.0, grid_size: int = 512,
                     generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                     first: tuple[np.ndarray, np.ndarray] | None = None,
                     progress=None) -> Density:
    """SLQ spectral density of H from ``n_starts`` starts of ``n_steps`` steps.

    σ = ``sigma_scale`` × (θ_max − θ_min) / (m − 1), m the nodes per start: m Gauss nodes resolve
    the spectrum no finer than its range over m − 1 (Lin, Saad & Yang 2016, Sec. 3), and a
    narrower kernel draws a comb of separate bumps, one per node, that is not in the spectrum.
    Other tools choose differently: curvlinops' ``lanczos_approximate_spectrum`` (after Papyan
    2020) uses σ = h/√(8 ln κ) (κ = 3 by default) with h set by the node range padded by a
    margin, a kernel about 0.37× as wide as ours at the defaults; its densities are therefore
    spikier than ours for the same nodes. The grid spans [θ_min − 6σ, θ_max + 6σ], ``grid_size``
    points.

    ``first`` = (nodes, weights) of a Lanczos run already made from a uniformly random unit start
    (``EigResult.ritz_values``/``ritz_weights``) serves as the first start at no cost; its number
    of steps may differ from ``n_steps``.
    """
    if n_starts < 1 or n_steps < 1:
        raise ValueError(f"n_starts and n_steps must be >= 1, got {n_starts} and {n_steps}")
    if grid_size < 16:
        raise ValueError(f"grid_size must be >= 16, got {grid_size}")
    generator = generator or torch.Generator().manual_seed(0)
    fresh = n_starts - (first is not None)
    nodes, weights, used = slq_nodes(matvec, dim, fresh, n_steps, generator, device, progress)
    if first is not None:
        m = max(nodes.shape[1], len(first[0]))
        pad = lambda a: np.pad(a, ((0, 0), (0, m - a.shape[1])))  # noqa: E731
        nodes = np.vstack([pad(np.asarray(first[0])[None]), pad(nodes)])
        weights = np.vstack([pad(np.asarray(first[1])[None]), pad(weights)])
    live = nodes[weights > 0]
    lo, hi = float(live.min()), float(live.max())
    m = max(int((weights > 0).sum(axis=1).max()), 2)
    sigma = sigma_scale * max(hi - lo, 1e-12 * max(abs(lo), abs(hi), 1.0)) / (m - 1)
    grid = np.linspace(lo - 6 * sigma, hi + 6 * sigma, grid_size)
    return Density(grid, smooth_density(nodes, weights, sigma, grid), nodes, weights, sigma, used)
