"""Stage: curvature of one trained model (eigenvalues, trace, spectral density of its Hessian)."""

from __future__ import annotations

import time

import pandas as pd

from ..checkpoints import load_model
from ..data import eval_tensors
from ..evaluate import resolve_device
from ..hessian.analysis import CurvatureOptions, curvature, curvature_summary
from ..schemas.hessian import lambda_max_rows  # (importing it registers the tables)
from ..tables import write_table
from ._common import section, skip_reason, write_skipped

NAME = "hessian"
HELP = ("Hessian of one run's mean loss over its evaluation set: Lanczos top-k and λ_min, power "
        "iteration, Hutchinson/Hutch++ trace, SLQ spectral density")


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="prepared data (.pt)")
    p.add_argument("--checkpoint", required=True, help="the run's checkpoint.pt")
    p.add_argument("--params", required=True, help="JSON of the config's `hessian` section")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out-eigs", required=True, help="output hessian_eigs rows (.parquet)")
    p.add_argument("--out-trace", required=True, help="output hessian_trace rows (.parquet)")
    p.add_argument("--out-density", required=True, help="output hessian_density rows (.parquet)")
    p.add_argument("--out-repeats", required=True,
                   help="output curvature_repeats rows (.parquet): λ_max and trace per subset")
    p.add_argument("--no-progress", action="store_true")


def repeats(data, model, params: dict, opts: CurvatureOptions, frames: dict, ids: dict, dev,
            progress: bool) -> pd.DataFrame:
    """λ_max and trace on ``hessian.repeats`` seeded subsets (subset 0: the main evaluation set,
    whose numbers are taken from ``frames``; subset r uses seed eval_seed + r)."""
    eigs, trace = frames["eigs"], frames["trace"]
    top = lambda_max_rows(eigs).iloc[0]
    hutch = trace[trace["method"] == "hutchinson"]
    rows = [{"run": ids["run"], "subset": 0, "eval_set": ids["eval_set"],
             "eval_size": ids["eval_size"], "lambda_max": top["eigenvalue"],
             "residual": top["residual"], "converged": top["converged"],
             "trace": hutch["trace"].iloc[0] if len(hutch) else float("nan"),
             "trace_std_error": hutch["std_error"].iloc[0] if len(hutch) else float("nan"),
             "n_hvp": int(top["n_hvp"]) + (int(hutch["n_hvp"].iloc[0]) if len(hutch) else 0),
             "seconds": float(top["seconds"])
             + (float(hutch["seconds"].iloc[0]) if len(hutch) else 0.0)}]
    for r in range(1, params["repeats"]):
        x, y, name, size = eval_tensors(data, params["eval_split"], params["eval_size"],
                                        params["eval_seed"] + r, dev)
        rows.append({"run": ids["run"], "subset": r, "eval_set": name, "eval_size": size,
                     **curvature_summary(model, x, y, opts, progress)})
    return pd.DataFrame(rows)


def run(args) -> None:
    params = section(args.params, "hessian")
    opts = CurvatureOptions.from_params(params)
    outputs = {"hessian_eigs": args.out_eigs, "hessian_trace": args.out_trace,
               "hessian_density": args.out_density, "curvature_repeats": args.out_repeats}
    dev = resolve_device(args.device)
    model, meta = load_model(args.checkpoint, dev)
    reason = skip_reason(meta)
    if reason:
        write_skipped(outputs, NAME, meta["run"], reason)
        return
    x, y, eval_set, eval_size = eval_tensors(args.data, params["eval_split"],
                                             params["eval_size"], params["eval_seed"], dev)
    t0 = time.perf_counter()
    frames = curvature(model, x, y, opts, progress=not args.no_progress)
    ids = {"run": meta["run"], "eval_set": eval_set, "eval_size": eval_size}
    write_table(repeats(args.data, model, params, opts, frames, ids, dev, not args.no_progress),
                "curvature_repeats", outputs["curvature_repeats"], extra_meta={"options": params})
    for key, name in (("eigs", "hessian_eigs"), ("trace", "hessian_trace"),
                      ("density", "hessian_density")):
        df = frames[key]
        for col, val in reversed(ids.items()):
            df.insert(0, col, val)
        write_table(df, name, outputs[name], extra_meta={"options": params})
    eigs = frames["eigs"]
    lmax = lambda_max_rows(eigs)
    lmin = eigs[eigs["which"] == "smallest_algebraic"]
    print(f"{meta['run']} on {eval_set}: λ_max {lmax['eigenvalue'].iloc[0]:.4g}"
          + (f", λ_min {lmin['eigenvalue'].iloc[0]:.4g}" if len(lmin) else "")
          + "".join(f", {r.method} trace {r.trace:.4g} ± {r.std_error:.2g}"
                    for r in frames["trace"].itertuples())
          + f"; {time.perf_counter() - t0:.1f} s (with {params['repeats'] - 1} repeat subsets)")
