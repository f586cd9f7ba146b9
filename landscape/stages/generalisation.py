"""Stage: the generalisation study — every measure of the pipeline beside the generalisation gap
of each finished run (``measures``), and how well each ranks the gap: Kendall τ over all runs and
the granulated Ψ of Jiang et al. (2020) with bootstrap intervals (``correlations``, with ψ per
hyper-parameter in ``granulated``)."""

from __future__ import annotations

import time

from ..generalisation import measure_table, study_correlations, varied_hparams
from ..schemas import generalisation as _tables  # noqa: F401  registers the tables written here
from ..tables import empty, read_table, write_table
from ._common import section

NAME = "generalisation"
HELP = ("measures.parquet (every flatness/curvature measure and the gaps, one row per finished "
        "run) and correlations.parquet (Kendall τ, granulated Ψ, bootstrap intervals)")


def add_arguments(p) -> None:
    p.add_argument("--runs", required=True, help="runs.parquet")
    p.add_argument("--flatness", required=True, help="flatness.parquet (gathered)")
    p.add_argument("--robustness", required=True, help="robustness.parquet (gathered)")
    p.add_argument("--eigs", help="hessian_eigs.parquet (λ_max); left out: NaN")
    p.add_argument("--trace", help="hessian_trace.parquet (Hutchinson trace); left out: NaN")
    p.add_argument("--params", required=True,
                   help="JSON of the config's `robustness.correlations` section")
    p.add_argument("--out-measures", required=True)
    p.add_argument("--out-correlations", required=True)
    p.add_argument("--out-granulated", required=True)


def run(args) -> None:
    cfg = section(args.params, "robustness", "correlations")
    t0 = time.perf_counter()
    measures = measure_table(
        read_table(args.runs, "runs"), read_table(args.flatness, "flatness"),
        read_table(args.robustness, "robustness"),
        read_table(args.eigs, "hessian_eigs") if args.eigs else None,
        read_table(args.trace, "hessian_trace") if args.trace else None)
    write_table(measures, "measures", args.out_measures)
    if len(measures):
        corr, gran = study_correlations(measures, cfg["gap"], cfg["n_boot"], cfg["seed"])
    else:
        corr, gran = empty("correlations"), empty("granulated")
    meta = {"options": cfg, "hparams": varied_hparams(measures) if len(measures) else []}
    write_table(corr, "correlations", args.out_correlations, extra_meta=meta)
    write_table(gran, "granulated", args.out_granulated, extra_meta=meta)
    print(f"wrote {args.out_measures}: {len(measures)} finished runs; Ψ over "
          f"{meta['hparams'] or 'no hyper-parameter (only seeds vary)'} with the seed held "
          f"fixed; gap {cfg['gap']}, {cfg['n_boot']} bootstrap resamples "
          f"({time.perf_counter() - t0:.1f} s)")
    for r in corr.itertuples():
        print(f"  {r.measure:24s} τ = {r.tau:+.3f} [{r.tau_lo:+.3f}, {r.tau_hi:+.3f}] "
              f"(p = {r.p_value:.3g}, n = {r.n}); Ψ = {r.psi:+.3f} [{r.psi_lo:+.3f}, "
              f"{r.psi_hi:+.3f}] ({r.n_groups} groups)")
