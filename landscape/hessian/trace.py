"""Stochastic trace estimators: Hutchinson (Rademacher) and Hutch++.

- Hutchinson (1989): tr(H) ≈ (1/m) Σ_j z_jᵀ H z_j with Rademacher z_j; unbiased, variance
  2(‖H‖_F² − Σ_i H_ii²)/m. The standard error is the sample standard deviation / √m.
- Hutch++ (Meyer, Musco, Musco & Woodruff 2021, "Hutch++: Optimal stochastic trace estimation"):
  with m products, sketch Q = orth(H S) from m/3 Rademacher columns S, take tr(Qᵀ H Q) exactly and
  apply Hutchinson with m/3 vectors to the deflated remainder (I − QQᵀ) H (I − QQᵀ). Unbiased;
  much lower variance when a few eigenvalues carry the trace (the case for network Hessians).
  Its standard error is that of the remainder's Hutchinson part.

Products are counted exactly: ``hutchinson`` uses m, ``hutchpp`` uses 3·⌊m/3⌋.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .lanczos import MatVec

ESTIMATORS = ("hutchinson", "hutchpp")


@dataclass
class TraceEstimate:
    """An estimate of tr(H), its standard error, and the products it used.

    ``samples`` are the i.i.d. terms behind the standard error (Hutch++: only its Hutchinson
    part, ``n_hvp``/3 of them), so intervals use Student's t with ``len(samples) − 1`` degrees of
    freedom: with 4 samples the 95 % factor is 3.18, not 1.96.
    """

    method: str
    trace: float
    std_error: float
    n_hvp: int
    samples: np.ndarray

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Two-sided Student-t confidence interval for tr(H) at ``level``."""
        return t_interval(self.trace, self.std_error, len(self.samples) - 1, level)


def t_interval(mean: float, std_error: float, dof: int, level: float = 0.95) -> tuple[float, float]:
    """mean ± t_{dof, (1+level)/2} · std_error (NaN when dof < 1)."""
    from scipy.stats import t

    if dof < 1 or not math.isfinite(std_error):
        return math.nan, math.nan
    half = float(t.ppf(0.5 + level / 2, dof)) * std_error
    return mean - half, mean + half


def _rademacher(n: int, dim: int, generator: torch.Generator, device) -> torch.Tensor:
    z = torch.randint(0, 2, (n, dim), generator=generator).to(torch.float64).mul_(2).sub_(1)
    return z.to(device)


def _mean_se(samples: np.ndarray) -> tuple[float, float]:
    m = len(samples)
    se = float(np.std(samples, ddof=1) / math.sqrt(m)) if m > 1 else float("nan")
    return float(np.mean(samples)), se


def hutchinson(matvec: MatVec, dim: int, n_samples: int, generator: torch.Generator,
               device: torch.device | str = "cpu", progress=None) -> TraceEstimate:
    """Hutchinson's estimate of tr(H) from ``n_samples`` Rademacher probes."""
    if n_samples < 2:
        raise ValueError(f"hutchinson needs n_samples >= 2 for a standard error, got {n_samples}")
    samples = []
    for z in _rademacher(n_samples, dim, generator, device):
        samples.append(float(torch.dot(z, matvec(z).to(torch.float64))))
        if progress is not None:
            progress.update(1)
    mean, se = _mean_se(np.array(samples))
    return TraceEstimate("hutchinson", mean, se, n_samples, np.array(samples))


def hutchpp(matvec: MatVec, dim: int, n_matvecs: int, generator: torch.Generator,
            device: torch.device | str = "cpu", progress=None) -> TraceEstimate:
    """Hutch++ estimate of tr(H) with ``n_matvecs`` products (rounded down to a multiple of 3,
    at least 6)."""
    s = n_matvecs // 3
    if s < 2:
        raise ValueError(f"hutchpp needs n_matvecs >= 6, got {n_matvecs}")
    s = min(s, dim)

    def mv(v: torch.Tensor) -> torch.Tensor:
        out = matvec(v).to(torch.float64)
        if progress is not None:
            progress.update(1)
        return out

    sketch = torch.stack([mv(z) for z in _rademacher(s, dim, generator, device)], dim=1)
    q, _ = torch.linalg.qr(sketch)  # [dim, s]
    low_rank = sum(float(torch.dot(qi, mv(qi))) for qi in q.T)
    samples = []
    for g in _rademacher(s, dim, generator, device):
        g = g - q @ (q.T @ g)
        samples.append(float(torch.dot(g, mv(g))))
    rest, se = _mean_se(np.array(samples))
    return TraceEstimate("hutchpp", low_rank + rest, se, 3 * s, np.array(samples))


def estimate_trace(method: str, matvec: MatVec, dim: int, n_hvp: int, generator: torch.Generator,
                   device: torch.device | str = "cpu", progress=None) -> TraceEstimate:
    """Dispatch to one of ``ESTIMATORS`` with a budget of ``n_hvp`` products."""
    if method == "hutchinson":
        return hutchinson(matvec, dim, n_hvp, generator, device, progress)
    if method == "hutchpp":
        return hutchpp(matvec, dim, n_hvp, generator, device, progress)
    raise ValueError(f"Unknown trace estimator {method!r}. Supported estimators are "
                     f"{list(ESTIMATORS)}.")
