"""Lanczos iteration with full reorthogonalisation, and extreme eigenvalues from one Krylov space.

``lanczos_eigs(matvec, dim, k=3)`` runs the symmetric Lanczos process (Lanczos 1950; Golub &
Van Loan, *Matrix Computations*, §10.1) from a seeded Gaussian start, reorthogonalising every new
vector against the whole basis twice (classical Gram–Schmidt, "twice is enough"), so the Ritz
values carry no ghost copies and the residual estimate ‖H u − θ u‖ = β_m |s_{m,i}| (``s`` the
eigenvector of the tridiagonal T_m) equals the true residual of each Ritz pair up to rounding.
From one Krylov space it returns the k largest algebraic eigenvalues (λ_1 = λ_max ≥ λ_2 ≥ …) and
the smallest algebraic one (λ_min, the most negative for a saddle), each with its residual norm.
It stops when every requested pair has residual ≤ ``tol`` · ‖H‖ (‖H‖ estimated by max |θ|), when
the Krylov space becomes invariant (then the values are exact), or after ``max_iter`` products.

For any Ritz pair |λ − θ| ≤ ‖r‖, and |λ − θ| ≤ ‖r‖² / gap when θ is separated from the rest of
the spectrum by ``gap`` (Parlett, *The Symmetric Eigenvalue Problem*, Thm 11.7.1).

Example (a dense matrix; tests check the same against ``numpy.linalg.eigvalsh``)::

    a = torch.randn(50, 50, dtype=torch.float64); a = a + a.T
    res = lanczos_eigs(lambda v: a @ v, 50, k=3, tol=1e-10, max_iter=50)
    res.largest  # ≈ eigvalsh(a)[::-1][:3]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

MatVec = Callable[[torch.Tensor], torch.Tensor]


class NonFiniteError(FloatingPointError, ValueError):
    """A Hessian-vector product overflowed (inf/NaN): the loss surface is not finite here.

    Raised by ``HessianOperator.matvec`` and by the solvers; catch this one class."""


def random_start(dim: int, generator: torch.Generator, device: torch.device | str = "cpu",
                 distribution: str = "normal") -> torch.Tensor:
    """A unit float64 vector [dim]: Gaussian or Rademacher, drawn on CPU for reproducibility."""
    if distribution == "normal":
        v = torch.randn(dim, generator=generator, dtype=torch.float64)
    elif distribution == "rademacher":
        v = torch.randint(0, 2, (dim,), generator=generator).to(torch.float64).mul_(2).sub_(1)
    else:
        raise ValueError(f"Unsupported distribution {distribution!r}. "
                         "Supported distributions are ['normal', 'rademacher'].")
    return (v / v.norm()).to(device)


@dataclass
class LanczosRun:
    """The tridiagonal T_m (diagonal ``alpha`` [m], off-diagonal ``beta`` [m-1]), the residual
    coefficient ``beta_last`` = ‖w_m‖, the orthonormal basis [m, dim] (float64), product count."""

    alpha: np.ndarray
    beta: np.ndarray
    beta_last: float
    basis: torch.Tensor
    n_hvp: int
    invariant: bool = False

    def tridiagonal(self) -> np.ndarray:
        m = len(self.alpha)
        t = np.diag(self.alpha)
        if m > 1:
            t += np.diag(self.beta, 1) + np.diag(self.beta, -1)
        return t

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values θ (ascending), eigenvectors S of T_m [m, m], residuals β_m |S[-1, i]|."""
        theta, s = np.linalg.eigh(self.tridiagonal())
        return theta, s, np.abs(self.beta_last * s[-1, :])


def lanczos(matvec: MatVec, v0: torch.Tensor, max_steps: int,
            stop: Callable[[LanczosRun], bool] | None = None, reorthogonalize: bool = True,
            progress=None) -> LanczosRun:
    """Run up to ``max_steps`` Lanczos steps from ``v0`` (normalised here); ``stop(run)`` is asked
    after each step whether to end early. Returns the ``LanczosRun``.

    With ``reorthogonalize`` every new vector is orthogonalised against the whole basis twice
    (O(m·dim) per step, negligible next to a Hessian-vector product).
    """
    dim = v0.shape[0]
    max_steps = min(max_steps, dim)
    q = (v0 / v0.norm()).to(torch.float64)
    basis = torch.empty(max_steps, dim, dtype=torch.float64, device=q.device)
    alpha: list[float] = []
    beta: list[float] = []
    scale = 0.0
    run = LanczosRun(np.zeros(0), np.zeros(0), 0.0, basis[:0], 0)
    for j in range(max_steps):
        basis[j] = q
        w = matvec(q).to(torch.float64)
        if not bool(torch.isfinite(w).all()):
            raise NonFiniteError(f"Hessian-vector product {j + 1} is not finite (inf/NaN): the "
                                 "loss or its curvature overflows at these parameters")
        a = float(torch.dot(q, w))
        w -= a * q
        if j > 0:
            w -= beta[-1] * basis[j - 1]
        if reorthogonalize:
            qb = basis[:j + 1]
            for _ in range(2):
                w -= qb.T @ (qb @ w)
        b = float(w.norm())
        alpha.append(a)
        scale = max(scale, abs(a), b)
        invariant = b <= 1e-12 * max(scale, 1e-300)
        run = LanczosRun(np.array(alpha), np.array(beta), b, basis[:j + 1], j + 1, invariant)
        if progress is not None:
            progress.update(1)
        if invariant or j + 1 == max_steps or (stop is not None and stop(run)):
            break
        beta.append(b)
        q = w / b
    return run


@dataclass
class EigResult:
    """Extreme eigenvalues from one Lanczos run.

    ``largest``: the k largest algebraic eigenvalues, descending (``largest[0]`` = λ_max);
    ``smallest``: λ_min (NaN when not requested); residuals are ‖H u − θ u‖ (absolute);
    ``largest_converged`` flags use residual ≤ tol · ``norm_estimate``, ``smallest_converged``
    residual ≤ tol · |λ_min| (relative to itself); ``vectors`` [k, dim] are the unit
    Ritz vectors of ``largest``; ``smallest_vector`` that of λ_min. ``ritz_values`` (ascending) and
    ``ritz_weights`` (squared first components) are the Gauss quadrature of the start vector's
    spectral measure, reusable as one start of stochastic Lanczos quadrature.
    """

    largest: np.ndarray
    largest_residuals: np.ndarray
    largest_converged: np.ndarray
    smallest: float
    smallest_residual: float
    smallest_converged: bool
    norm_estimate: float
    n_hvp: int
    vectors: torch.Tensor
    smallest_vector: torch.Tensor | None
    ritz_values: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    ritz_weights: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))


def _converged(run: LanczosRun, k: int, smallest: bool, tol: float) -> tuple[np.ndarray, bool]:
    theta, _, res = run.ritz()
    norm = max(float(np.max(np.abs(theta))), 1e-300)
    top = res[::-1][:k] <= tol * norm
    bottom = bool(res[0] <= tol * norm) if smallest else True
    return top, bottom


def lanczos_eigs(matvec: MatVec, dim: int, k: int = 3, smallest: bool = True, tol: float = 1e-3,
                 max_iter: int = 100, generator: torch.Generator | None = None,
                 v0: torch.Tensor | None = None, device: torch.device | str = "cpu",
                 progress=None) -> EigResult:
    """Top-k (largest algebraic) eigenvalues and, with ``smallest``, λ_min of the symmetric
    operator ``matvec`` on R^dim, by Lanczos with full reorthogonalisation.

    Stops once every requested Ritz pair has residual ≤ ``tol`` · ‖H‖ (at least k + 1 steps, so a
    start vector that happens to lie near an eigenvector does not end it at once), when the Krylov
    space is invariant (exact values) or after ``max_iter`` products. ``v0`` (e.g. the previous
    snapshot's top eigenvector) replaces the seeded Gaussian start.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    if v0 is None:
        v0 = random_start(dim, generator or torch.Generator().manual_seed(0), device)
    min_steps = min(k + 1, dim)

    def stop(run: LanczosRun) -> bool:
        if run.n_hvp < min_steps:
            return False
        top, bottom = _converged(run, k, smallest, tol)
        return bool(top.all() and len(top) == k and bottom)

    run = lanczos(matvec, v0, max_iter, stop=stop, progress=progress)
    theta, s, res = run.ritz()
    if run.invariant:
        res = np.zeros_like(res)
    norm = max(float(np.max(np.abs(theta))), 1e-300)
    order = np.argsort(theta)[::-1][:k]
    vecs = (torch.from_numpy(s[:, order].T.copy()).to(run.basis) @ run.basis)
    small_vec = (torch.from_numpy(s[:, 0].copy()).to(run.basis) @ run.basis) if smallest else None
    return EigResult(
        largest=theta[order], largest_residuals=res[order],
        largest_converged=res[order] <= tol * norm,
        smallest=float(theta[0]) if smallest else float("nan"),
        smallest_residual=float(res[0]) if smallest else float("nan"),
        # λ_min is usually tiny next to ‖H‖: a residual ≤ tol·‖H‖ (the stopping rule) may still
        # exceed |λ_min|, which would leave even its sign uncertain. Its flag is relative to
        # itself, so `converged` means the value is known to `tol` of its own size.
        smallest_converged=bool(res[0] <= tol * abs(float(theta[0]))) if smallest else False,
        norm_estimate=norm, n_hvp=run.n_hvp, vectors=vecs, smallest_vector=small_vec,
        ritz_values=theta, ritz_weights=s[0, :] ** 2)
