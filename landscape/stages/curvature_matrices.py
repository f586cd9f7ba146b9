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
        "empirical Fisher of one run, on the curvature stage's evaluation set, and λ_max and "
        "trace of each layer's diagonal block")
# One job per run; only `hessian.matrices` and the evaluation keys it shares with the curvature
# stage rerun it.
STAGE = {
    "order": 12,
    "section": "hessian",
    "keys": ["eval_split", "eval_size", "eval_seed", "batch_size", "hvp_method", "max_cache_mb",
             "seed", "eigs.tol", "density.sigma_scale", "density.grid_size", "matrices"],
    "enabled": "hessian.matrices.names",
    "inputs": ["data", "checkpoint"],
    "tables": ["curvature_matrices", "matrix_density", "layer_curvature"],
    "group": "geometry",
    "resources": {"mem_mb": 2000, "runtime": 5},
    "findings": ["report.findings:finding_matrices", "report.findings:finding_layers"],
}


def operator(name: str, model, x, y, params: dict):
    if name == "hessian":
        return HessianOperator(model, x, y, batch_size=params["batch_size"],
                               method=params["hvp_method"], max_cache_mb=params["max_cache_mb"])
    return GaussNewtonOperator(model, x, y, name, batch_size=params["batch_size"],
                               max_cache_mb=params["max_cache_mb"])


def layer_blocks(op) -> list[tuple[str, int, int]]:
    """(layer, start, stop) of each module's own parameters in the operator's flat vector (a
    module's weight and bias are consecutive in ``named_parameters`` order)."""
    blocks: list[list] = []
    k = 0
    for name, numel in zip(op.names, op.numels, strict=True):
        layer = name.rsplit(".", 1)[0] if "." in name else name
        if blocks and blocks[-1][0] == layer:
            blocks[-1][2] = k + numel
        else:
            blocks.append([layer, k, k + numel])
        k += numel
    return [tuple(b) for b in blocks]


class _Recorder:
    """A matvec that also keeps z_l · (Mz)_l per layer block of every product it makes (the
    per-layer Hutchinson samples of the probes that pass through it)."""

    def __init__(self, matvec, blocks):
        self.matvec, self.blocks, self.samples = matvec, blocks, []

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        mz = self.matvec(z)
        zz = z.to(mz)
        self.samples.append([float(torch.dot(zz[a:b], mz[a:b])) for _, a, b in self.blocks])
        return mz


def _mean_se(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v)))


def _top(run, tol: float) -> tuple[float, float, bool, np.ndarray]:
    theta, s, res = run.ritz()
    top = int(np.argmax(theta))
    norm = max(float(np.max(np.abs(theta))), 1e-300)
    residual = 0.0 if run.invariant else float(res[top])
    return float(theta[top]), residual, bool(residual <= tol * norm), theta


def compare(model, x, y, params: dict, progress: bool = False):
    """(rows per matrix of ``params['matrices']['names']``, density frames, per-layer rows).
    Every matrix gets the same Lanczos start and the same Hutchinson probes (seeded by
    ``params['seed']``), so the numbers differ by the matrix only."""
    cfg = params["matrices"]
    tol = params["eigs"]["tol"]
    rows, densities, layers = [], [], []
    for name in cfg["names"]:
        t0 = time.perf_counter()
        op = operator(name, model, x, y, params)
        blocks = layer_blocks(op)
        v0 = random_start(op.dim, torch.Generator().manual_seed(params["seed"]), op.device,
                          "rademacher")
        run = lanczos(op.matvec, v0, min(cfg["lanczos_steps"], op.dim))
        lmax, residual, converged, theta = _top(run, tol)
        n = int(cfg["hutchinson"])
        rec = _Recorder(op.matvec, blocks)
        est = (estimate_trace("hutchinson", rec, op.dim, n,
                              torch.Generator().manual_seed(params["seed"] + 10), op.device)
               if n >= 2 else None)
        _, s, _ = run.ritz()
        dens = spectral_density(op.matvec, op.dim, n_starts=1, n_steps=len(theta),
                                sigma_scale=params["density"]["sigma_scale"],
                                grid_size=params["density"]["grid_size"],
                                first=(theta, s[0, :] ** 2))
        used = op.n_hvp
        for pos, (layer, a, b) in enumerate(blocks):
            row = {"matrix": name, "layer": layer, "position": pos, "n_params": b - a,
                   "lambda_max": float("nan"), "residual": float("nan"), "converged": False,
                   "n_mv": 0}
            row["trace"], row["trace_std_error"] = _mean_se([smp[pos] for smp in rec.samples])
            if name in cfg["layer_matrices"]:
                def block(u, a=a, b=b, op=op):
                    v = torch.zeros(op.dim, dtype=torch.float64, device=op.device)
                    v[a:b] = u
                    return op.matvec(v)[a:b]

                gen = torch.Generator().manual_seed(params["seed"] + 30 + pos)
                start = random_start(b - a, gen, op.device, "rademacher")
                before = op.n_hvp
                brun = lanczos(block, start, min(cfg["layer_steps"], b - a))
                row["lambda_max"], row["residual"], row["converged"], _ = _top(brun, tol)
                row["n_mv"] = op.n_hvp - before
            layers.append(row)
        rows.append({"matrix": name, "lambda_max": lmax, "residual": residual,
                     "converged": converged, "lambda_min": float(np.min(theta)),
                     "trace": est.trace if est else float("nan"),
                     "trace_std_error": est.std_error if est else float("nan"),
                     "lanczos_steps": run.n_hvp, "n_probes": n if est else 0,
                     "n_mv": used, "seconds": time.perf_counter() - t0})
        densities.append(pd.DataFrame({"matrix": name, "eigenvalue": dens.grid,
                                       "density": dens.density, "sigma": dens.sigma}))
        op.release()
        if progress:
            print(f"  {name}: λ_max {lmax:.4g}, trace {rows[-1]['trace']:.4g} "
                  f"({op.n_hvp} products with the layer blocks)")
    return rows, densities, layers


def measure(job) -> dict[str, pd.DataFrame]:
    params = job.params
    model, meta = job.model()
    x, y, eval_set, eval_size = eval_tensors(job.inputs["data"], params["eval_split"],
                                             params["eval_size"], params["eval_seed"], job.device)
    rows, densities, layers = compare(model, x, y, params, job.progress)
    table = pd.DataFrame([{"run": meta["run"], **r, "eval_set": eval_set, "eval_size": eval_size}
                          for r in rows])
    density = pd.concat(densities, ignore_index=True)
    density.insert(0, "run", meta["run"])
    layer = pd.DataFrame(layers)
    layer.insert(0, "run", meta["run"])
    job.meta = {"options": params}
    print(f"{meta['run']} on {eval_set}: " + "; ".join(
        f"{r['matrix']} λ_max {r['lambda_max']:.4g}, trace {r['trace']:.4g} ± "
        f"{r['trace_std_error']:.2g} ({r['n_mv']} products, {r['seconds']:.1f} s)" for r in rows))
    return {"curvature_matrices": table, "matrix_density": density, "layer_curvature": layer}
