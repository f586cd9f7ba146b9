"""Power iteration with deflation: the eigenvalues of largest magnitude |λ|.

This is the method of PyHessian (Yao et al. 2020, "PyHessian: Neural networks through the lens of
the Hessian"), kept as a second method to compare with Lanczos. It converges to the eigenvalue of
largest **magnitude**, which is λ_max only while λ_max > |λ_min|; near a saddle with a large
negative eigenvalue it returns that one. Columns built from it are therefore named
``largest_magnitude``, never λ_max.

Stopping rule (PyHessian's): the relative change of the Rayleigh quotient between consecutive
iterations falls below ``tol``. It is weaker than Lanczos' residual rule, so the residual
‖H v − θ v‖ of the final iterate is reported too (it costs no extra product).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .lanczos import MatVec, random_start


@dataclass
class PowerResult:
    """k eigenvalues of largest |λ| (signed, in the order found), their residual norms,
    convergence flags, products used per eigenvalue, and unit eigenvectors [k, dim]."""

    values: np.ndarray
    residuals: np.ndarray
    converged: np.ndarray
    n_hvp_each: np.ndarray
    vectors: torch.Tensor

    @property
    def n_hvp(self) -> int:
        return int(self.n_hvp_each.sum())


def power_iteration(matvec: MatVec, dim: int, k: int = 1, tol: float = 1e-3,
                    max_iter: int = 100, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu", progress=None) -> PowerResult:
    """k eigenvalues of largest |λ| by power iteration, deflating found eigenvectors by
    projection (each iterate is orthogonalised against them, as PyHessian does); ``max_iter``
    products per eigenvalue."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    generator = generator or torch.Generator().manual_seed(0)
    found: list[torch.Tensor] = []
    values, residuals, converged, counts = [], [], [], []
    for _ in range(k):
        v = random_start(dim, generator, device)
        theta, res, ok, n = float("nan"), float("nan"), False, 0
        for _ in range(max_iter):
            for u in found:
                v = v - torch.dot(u, v) * u
            v = v / v.norm()
            hv = matvec(v).to(torch.float64)
            n += 1
            if progress is not None:
                progress.update(1)
            new = float(torch.dot(v, hv))
            res = float((hv - new * v).norm())
            done = n > 1 and abs(new - theta) / (abs(theta) + 1e-6) < tol
            theta = new
            if done:
                ok = True
                break
            nrm = hv.norm()
            if nrm == 0:
                ok = True
                break
            v = hv / nrm
        found.append(v)
        values.append(theta)
        residuals.append(res)
        converged.append(ok)
        counts.append(n)
    return PowerResult(np.array(values), np.array(residuals), np.array(converged),
                       np.array(counts), torch.stack(found))
