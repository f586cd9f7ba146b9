"""Stage: the Hessian, generalised Gauss–Newton and empirical Fisher of one trained run, compared
on the curvature stage's evaluation set: λ_max, trace and spectral density of each."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from ..data import eval_tensors
from ..hessian.density import spectral_density
from ..hessian.gauss_newton import GaussNewtonOperator
from ..hessian.lanczos import lanczos, random_start
from ..hessian.operator import HessianOperator
from ..hessian.trace import estimate_trace
from ..schemas import matrices as _tables  # noqa: F401  registers the tables written here

HELP = ("λ_max, trace and spectral density of the Hessian, the generalised Gauss–Newton and the "
        "empirical Fisher of one run, on the curvature stage's evaluation set")
# One job per run; only `hessian.matrices` and the evaluation keys it shares with the curvature
# stage rerun it.
STAGE = {
    "order": 12,
    "section": "hessian",
    "keys": ["eval_split", "eval_size", "eval_seed", "batch_size", "hvp_method", "max_cache_mb",
             "seed", "eigs.tol", "density.sigma_scale", "density.grid_size", "matrices"],
    "enabled": "hessian.matrices.names",
    "inputs": ["data", "checkpoint"],
    "tables": ["curvature_matrices", "matrix_density"],
    "group": "geometry",
    "resources": {"mem_mb": 2000, "runtime": 5},
}


def operator(name: str, model, x, y, params: dict):
    if name == "hessian":
        return HessianOperator(model, x, y, batch_size=params["batch_size"],
                               method=params["hvp_method"], max_cache_mb=params["max_cache_mb"])
    return GaussNewtonOperator(model, x, y, name, batch_size=params["batch_size"])


def compare(model, x, y, params: dict, progress: bool = False) -> tuple[list[dict], list]:
    """One row per matrix of ``params['matrices']['names']`` and its density frame. Every matrix
    gets the same Lanczos start and the same Hutchinson probes (seeded by ``params['seed']``), so
    the numbers differ by the matrix only."""
    cfg = params["matrices"]
    tol = params["eigs"]["tol"]
    rows, densities = [], []
    for name in cfg["names"]:
        t0 = time.perf_counter()
        op = operator(name, model, x, y, params)
        v0 = random_start(op.dim, torch.Generator().manual_seed(params["seed"]), op.device,
                          "rademacher")
        run = lanczos(op.matvec, v0, min(cfg["lanczos_steps"], op.dim))
        theta, s, res = run.ritz()
        top = int(np.argmax(theta))
        norm = max(float(np.max(np.abs(theta))), 1e-300)
        n = int(cfg["hutchinson"])
        est = (estimate_trace("hutchinson", op.matvec, op.dim, n,
                              torch.Generator().manual_seed(params["seed"] + 10), op.device)
               if n >= 2 else None)
        dens = spectral_density(op.matvec, op.dim, n_starts=1, n_steps=len(theta),
                                sigma_scale=params["density"]["sigma_scale"],
                                grid_size=params["density"]["grid_size"],
                                first=(theta, s[0, :] ** 2))
        rows.append({"matrix": name, "lambda_max": float(theta[top]),
                     "residual": 0.0 if run.invariant else float(res[top]),
                     "converged": bool(run.invariant or res[top] <= tol * norm),
                     "lambda_min": float(np.min(theta)),
                     "trace": est.trace if est else float("nan"),
                     "trace_std_error": est.std_error if est else float("nan"),
                     "lanczos_steps": run.n_hvp, "n_probes": n if est else 0,
                     "n_mv": op.n_hvp, "seconds": time.perf_counter() - t0})
        densities.append(pd.DataFrame({"matrix": name, "eigenvalue": dens.grid,
                                       "density": dens.density, "sigma": dens.sigma}))
        op.release()
        if progress:
            print(f"  {name}: λ_max {theta[top]:.4g}, trace "
                  f"{rows[-1]['trace']:.4g} ({op.n_hvp} products)")
    return rows, densities


def measure(job) -> dict[str, pd.DataFrame]:
    params = job.params
    model, meta = job.model()
    x, y, eval_set, eval_size = eval_tensors(job.inputs["data"], params["eval_split"],
                                             params["eval_size"], params["eval_seed"], job.device)
    rows, densities = compare(model, x, y, params, job.progress)
    table = pd.DataFrame([{"run": meta["run"], **r, "eval_set": eval_set, "eval_size": eval_size}
                          for r in rows])
    density = pd.concat(densities, ignore_index=True)
    density.insert(0, "run", meta["run"])
    job.meta = {"options": params}
    print(f"{meta['run']} on {eval_set}: " + "; ".join(
        f"{r['matrix']} λ_max {r['lambda_max']:.4g}, trace {r['trace']:.4g} ± "
        f"{r['trace_std_error']:.2g} ({r['n_mv']} products, {r['seconds']:.1f} s)" for r in rows))
    return {"curvature_matrices": table, "matrix_density": density}
