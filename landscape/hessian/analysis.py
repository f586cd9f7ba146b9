"""The curvature account of one model, as rows for the ``hessian_eigs``, ``hessian_trace`` and
``hessian_density`` tables (see ``landscape.tables``), and the sharpness trajectory rows.

``CurvatureOptions`` mirrors the config's ``hessian`` section (documented in
``landscape/config.schema.yaml``); functions here take tensors and models and return
DataFrames without the run/eval-set columns, which the stage adds.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from .density import spectral_density
from .lanczos import lanczos_eigs
from .operator import METHODS, HessianOperator
from .power import power_iteration
from .trace import ESTIMATORS, estimate_trace
from .trajectory import sharpness_trajectory


@dataclass
class EigOptions:
    """Lanczos top-k/λ_min and the power-iteration comparison (``power_k`` = 0 skips it)."""

    top_k: int
    smallest: bool
    tol: float
    max_iter: int
    power_k: int
    power_tol: float
    power_max_iter: int


@dataclass
class DensityOptions:
    """SLQ over ``n_starts`` starts: the eigenvalue Lanczos run (free) and ``n_starts`` − 1 more
    Rademacher starts of ``n_steps`` steps; Gaussian σ = ``sigma_scale`` × node range / (m − 1);
    ``grid_size`` points (``n_starts`` = 0 skips the density)."""

    n_starts: int
    n_steps: int
    sigma_scale: float
    grid_size: int


@dataclass
class SharpnessOptions:
    """λ_max at every snapshot: Lanczos tolerance (relative residual), product cap, and whether
    each snapshot starts from the previous one's top Ritz vector."""

    tol: float
    max_iter: int
    warm_start: bool = True


def _sub(cls, value):
    if isinstance(value, cls):
        return value
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        from ..errors import ConfigError

        raise ConfigError(f"Unknown option(s) {unknown} for {cls.__name__}; allowed are "
                          f"{sorted(names)}.")
    return cls(**value)


@dataclass
class CurvatureOptions:
    """All settings of the curvature stage except the evaluation set itself."""

    batch_size: int | None
    hvp_method: str
    max_cache_mb: float
    seed: int
    eigs: EigOptions
    trace: dict
    density: DensityOptions
    sharpness: SharpnessOptions

    def __post_init__(self) -> None:
        self.eigs = _sub(EigOptions, self.eigs)
        self.density = _sub(DensityOptions, self.density)
        self.sharpness = _sub(SharpnessOptions, self.sharpness)
        if self.hvp_method not in METHODS:
            raise ValueError(f"Unknown HVP method {self.hvp_method!r}. Supported methods are "
                             f"{list(METHODS)}.")
        bad = sorted(set(self.trace) - set(ESTIMATORS))
        if bad:
            raise ValueError(f"Unknown trace estimator(s) {bad}. Supported estimators are "
                             f"{list(ESTIMATORS)}.")

    @classmethod
    def from_params(cls, params: dict) -> CurvatureOptions:
        """Build from the config's ``hessian`` section (partial sections take the schema's
        defaults, the only place they are written); evaluation-set keys are ignored here."""
        from ..schema import with_defaults

        keep = {f.name for f in dataclasses.fields(cls)}
        full = with_defaults(params, "hessian")
        return cls(**{k: v for k, v in full.items() if k in keep})


def _progress(desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(desc=desc, unit="hvp", disable=not enabled, mininterval=1.0)


def make_operator(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  opts: CurvatureOptions) -> HessianOperator:
    return HessianOperator(model, x, y, batch_size=opts.batch_size, method=opts.hvp_method,
                           max_cache_mb=opts.max_cache_mb)


def curvature(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opts: CurvatureOptions,
              progress: bool = True) -> dict[str, pd.DataFrame]:
    """Eigenvalues (Lanczos and power iteration), trace estimates and spectral density of the
    Hessian of the mean loss of ``model`` over ``(x, y)``.

    Returns frames ``eigs`` (method, which, k, eigenvalue, residual, converged, tol, n_hvp,
    seconds), ``trace`` (method, trace, std_error, n_hvp, seconds, n_params) and ``density``
    (eigenvalue, density, sigma, n_starts, n_steps, n_hvp), and ``vectors``: the top-k Ritz
    values and unit Ritz vectors ([k, dim] float64) and the loss and its gradient (flat). Each
    part draws from its own generator seeded by ``opts.seed``, so disabling one does not change
    the others.
    """
    op = make_operator(model, x, y, opts)
    out: dict[str, pd.DataFrame] = {}
    e = opts.eigs
    bar = _progress("hessian", progress)
    rows = []

    t0 = time.perf_counter()
    n0 = op.n_hvp
    res = lanczos_eigs(op.matvec, op.dim, k=e.top_k, smallest=e.smallest, tol=e.tol,
                       max_iter=e.max_iter, generator=torch.Generator().manual_seed(opts.seed),
                       device=op.device, progress=bar)
    floor = torch.finfo(op.dtype).eps * res.norm_estimate  # products' rounding level
    common = {"method": "lanczos", "tol": e.tol, "n_hvp": op.n_hvp - n0,
              "seconds": time.perf_counter() - t0}
    for i, (val, r, ok) in enumerate(zip(res.largest, res.largest_residuals,
                                         res.largest_converged, strict=True)):
        rows.append({**common, "which": "largest_algebraic", "k": i + 1, "eigenvalue": val,
                     "residual": max(r, floor), "converged": ok})
    if e.smallest:
        rows.append({**common, "which": "smallest_algebraic", "k": 1, "eigenvalue": res.smallest,
                     "residual": max(res.smallest_residual, floor),
                     "converged": res.smallest_converged})
    for row in rows:
        row["relative_residual"] = row["residual"] / max(abs(row["eigenvalue"]), 1e-300)
    if e.power_k > 0:
        t0, n0 = time.perf_counter(), op.n_hvp
        pw = power_iteration(op.matvec, op.dim, k=e.power_k, tol=e.power_tol,
                             max_iter=e.power_max_iter,
                             generator=torch.Generator().manual_seed(opts.seed + 1),
                             device=op.device, progress=bar)
        common = {"method": "power", "tol": e.power_tol, "n_hvp": op.n_hvp - n0,
                  "seconds": time.perf_counter() - t0, "which": "largest_magnitude"}
        for i in range(e.power_k):
            rows.append({**common, "k": i + 1, "eigenvalue": pw.values[i],
                         "residual": pw.residuals[i], "converged": bool(pw.converged[i]),
                         "relative_residual": pw.residuals[i] / max(abs(pw.values[i]), 1e-300)})
    out["eigs"] = pd.DataFrame(rows)
    # the top eigenvectors and the gradient, for slices along them (not a table: the hessian
    # stage keeps them in a checksummed file beside its tables)
    loss, gradient = op.loss_and_gradient()
    out["vectors"] = {"values": [float(v) for v in res.largest],
                      "vectors": res.vectors.detach().cpu().to(torch.float64),
                      "gradient": gradient.detach().cpu(), "loss": float(loss)}

    rows = []
    for j, (method, n) in enumerate(sorted(opts.trace.items())):
        if not n:
            continue
        t0 = time.perf_counter()
        est = estimate_trace(method, op.matvec, op.dim, int(n),
                             torch.Generator().manual_seed(opts.seed + 10 + j), op.device, bar)
        lo, hi = est.interval(0.95)
        rows.append({"method": method, "trace": est.trace, "std_error": est.std_error,
                     "ci_low": lo, "ci_high": hi, "n_samples": len(est.samples),
                     "n_hvp": est.n_hvp, "seconds": time.perf_counter() - t0,
                     "n_params": op.dim})
    out["trace"] = pd.DataFrame(rows, columns=["method", "trace", "std_error", "ci_low",
                                               "ci_high", "n_samples", "n_hvp", "seconds",
                                               "n_params"])

    d = opts.density
    if d.n_starts > 0:
        dens = spectral_density(op.matvec, op.dim, n_starts=d.n_starts, n_steps=d.n_steps,
                                sigma_scale=d.sigma_scale, grid_size=d.grid_size,
                                generator=torch.Generator().manual_seed(opts.seed + 20),
                                device=op.device, first=(res.ritz_values, res.ritz_weights),
                                progress=bar)
        out["density"] = pd.DataFrame({"eigenvalue": dens.grid, "density": dens.density,
                                       "sigma": dens.sigma, "n_starts": d.n_starts,
                                       "n_steps": d.n_steps, "n_hvp": dens.n_hvp})
    else:
        out["density"] = pd.DataFrame(columns=["eigenvalue", "density", "sigma", "n_starts",
                                               "n_steps", "n_hvp"])
    bar.close()
    op.release()
    return out


def sharpness(model: nn.Module, states: list[dict], x: torch.Tensor, y: torch.Tensor,
              opts: CurvatureOptions, progress: bool = True) -> pd.DataFrame:
    """λ_max at each state dict (see ``sharpness.sharpness_trajectory``)."""
    s = opts.sharpness
    bar = _progress("sharpness", progress)
    df = sharpness_trajectory(model, states, x, y, tol=s.tol, max_iter=s.max_iter,
                              batch_size=opts.batch_size, method=opts.hvp_method,
                              max_cache_mb=opts.max_cache_mb, seed=opts.seed,
                              warm_start=s.warm_start, progress=bar)
    bar.close()
    return df


def curvature_summary(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      opts: CurvatureOptions, progress: bool = True,
                      start: torch.Tensor | None = None) -> dict:
    """λ_max (Lanczos, k = 1) and Hutchinson's tr(H) on one evaluation set: the two numbers
    repeated on other seeded subsets to measure how much they depend on the subset drawn.
    Same tolerance, product cap, probe count and seeds as ``curvature``. ``start``: the Lanczos
    start vector (e.g. the main set's top eigenvector: another subset's Hessian has a nearby
    one, so fewer products meet the same tolerance); None: the seeded Gaussian start."""
    op = make_operator(model, x, y, opts)
    bar = _progress("hessian repeat", progress)
    t0, e = time.perf_counter(), opts.eigs
    res = lanczos_eigs(op.matvec, op.dim, k=1, smallest=False, tol=e.tol, max_iter=e.max_iter,
                       generator=torch.Generator().manual_seed(opts.seed), device=op.device,
                       v0=None if start is None else start.to(op.device), progress=bar)
    n = int(opts.trace.get("hutchinson", 0))
    est = (estimate_trace("hutchinson", op.matvec, op.dim, n,
                          torch.Generator().manual_seed(opts.seed + 10), op.device, bar)
           if n >= 2 else None)
    bar.close()
    out = {"lambda_max": float(res.largest[0]), "residual": float(res.largest_residuals[0]),
           "converged": bool(res.largest_converged[0]),
           "trace": est.trace if est else float("nan"),
           "trace_std_error": est.std_error if est else float("nan"),
           "n_hvp": op.n_hvp, "warm_start": start is not None,
           "seconds": time.perf_counter() - t0}
    op.release()
    return out
