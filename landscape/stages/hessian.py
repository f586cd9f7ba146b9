"""Stage: curvature of one trained model (eigenvalues, trace, spectral density of its Hessian)."""

from __future__ import annotations

import time

import pandas as pd

from ..data import eval_tensors
from ..hessian.analysis import CurvatureOptions, curvature, curvature_summary
from ..io import save_verified, tensor_digest
from ..params import detached, parameters
from ..schemas.hessian import lambda_max_rows  # (importing it registers the tables)

HELP = ("Hessian of one run's mean loss over its evaluation set: Lanczos top-k and λ_min, power "
        "iteration, Hutchinson/Hutch++ trace, SLQ spectral density")
# One job per run; the `sharpness` keys of the section are its own stage's.
STAGE = {
    "order": 10,
    "section": "hessian",
    "keys": ["eval_split", "eval_size", "eval_seed", "batch_size", "hvp_method", "max_cache_mb",
             "seed", "eigs", "trace", "density", "repeats", "warm_start"],
    "inputs": ["data", "checkpoint"],
    "tables": ["hessian_eigs", "hessian_trace", "hessian_density", "curvature_repeats"],
    "files": {"eigvecs": "eigvecs.pt"},
    "group": "geometry",
    "resources": {"mem_mb": 2000, "runtime": 5},
}


def repeats(data, model, params: dict, opts: CurvatureOptions, frames: dict, ids: dict, dev,
            progress: bool) -> pd.DataFrame:
    """λ_max and trace on ``hessian.repeats`` seeded subsets (subset 0: the main evaluation set,
    whose numbers are taken from ``frames``; subset r uses seed eval_seed + r). With
    ``hessian.warm_start`` the Lanczos run of each subset starts from the main set's top Ritz
    vector."""
    eigs, trace = frames["eigs"], frames["trace"]
    top = lambda_max_rows(eigs).iloc[0]
    hutch = trace[trace["method"] == "hutchinson"]
    rows = [{"run": ids["run"], "subset": 0, "eval_set": ids["eval_set"],
             "eval_size": ids["eval_size"], "lambda_max": top["eigenvalue"],
             "residual": top["residual"], "converged": top["converged"],
             "trace": hutch["trace"].iloc[0] if len(hutch) else float("nan"),
             "trace_std_error": hutch["std_error"].iloc[0] if len(hutch) else float("nan"),
             "n_hvp": int(top["n_hvp"]) + (int(hutch["n_hvp"].iloc[0]) if len(hutch) else 0),
             "warm_start": False, "seconds": float(top["seconds"])
             + (float(hutch["seconds"].iloc[0]) if len(hutch) else 0.0)}]
    start = frames["vectors"]["vectors"][0] if params["warm_start"] else None
    for r in range(1, params["repeats"]):
        x, y, name, size = eval_tensors(data, params["eval_split"], params["eval_size"],
                                        params["eval_seed"] + r, dev)
        rows.append({"run": ids["run"], "subset": r, "eval_set": name, "eval_size": size,
                     **curvature_summary(model, x, y, opts, progress, start)})
    return pd.DataFrame(rows)


def save_vectors(path: str, vectors: dict, model, ids: dict) -> None:
    """The top Hessian eigenvectors and the loss gradient of the run, checksummed, with the
    digest of the weights they belong to (the slices stage checks it)."""
    weights = detached([p.cpu() for p in parameters(model)])
    save_verified(path, {"kind": "hessian_vectors", **ids, "weights_digest": tensor_digest(weights),
                         "shapes": [list(w.shape) for w in weights], **vectors})


def measure(job) -> dict[str, pd.DataFrame]:
    params = job.params
    opts = CurvatureOptions.from_params(params)
    model, meta = job.model()
    dev = job.device
    x, y, eval_set, eval_size = eval_tensors(job.inputs["data"], params["eval_split"],
                                             params["eval_size"], params["eval_seed"], dev)
    t0 = time.perf_counter()
    frames = curvature(model, x, y, opts, progress=job.progress)
    ids = {"run": meta["run"], "eval_set": eval_set, "eval_size": eval_size}
    out = {"curvature_repeats": repeats(job.inputs["data"], model, params, opts, frames, ids, dev,
                                        job.progress)}
    for key, name in (("eigs", "hessian_eigs"), ("trace", "hessian_trace"),
                      ("density", "hessian_density")):
        df = frames[key]
        for col, val in reversed(ids.items()):
            df.insert(0, col, val)
        out[name] = df
    job.meta = {"options": params}
    save_vectors(job.files["eigvecs"], frames["vectors"], model, ids)
    eigs = frames["eigs"]
    lmax = lambda_max_rows(eigs)
    lmin = eigs[eigs["which"] == "smallest_algebraic"]
    print(f"{meta['run']} on {eval_set}: λ_max {lmax['eigenvalue'].iloc[0]:.4g}"
          + (f", λ_min {lmin['eigenvalue'].iloc[0]:.4g}" if len(lmin) else "")
          + "".join(f", {r.method} trace {r.trace:.4g} ± {r.std_error:.2g}"
                    for r in frames["trace"].itertuples())
          + f"; {time.perf_counter() - t0:.1f} s (with {params['repeats'] - 1} repeat subsets)")
    return out
