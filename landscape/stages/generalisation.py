"""Stage: the generalisation study — every measure of the pipeline beside the generalisation gap
of each finished run (``measures``), and how well each ranks the gap: Kendall τ over all runs and
the granulated Ψ of Jiang et al. (2020) with bootstrap intervals (``correlations``, with ψ per
hyper-parameter in ``granulated``)."""

from __future__ import annotations

import time

from ..generalisation import measure_table, study_correlations, varied_hparams
from ..schemas import generalisation as _tables  # noqa: F401  registers the tables written here
from ..tables import empty

HELP = ("measures.parquet (every flatness/curvature measure and the gaps, one row per finished "
        "run) and correlations.parquet (Kendall τ, granulated Ψ, bootstrap intervals)")
# One job for the study, after the gathers: it reads study tables and writes study tables.
STAGE = {
    "order": 41,
    "per": "study",
    "section": "robustness.correlations",
    "enabled": "robustness.enabled",
    "inputs": ["table:runs", "table:flatness", "table:robustness", "table:hessian_eigs",
               "table:hessian_trace"],
    "tables": ["measures", "correlations", "granulated"],
    "findings": ["report.findings:finding_robustness",
                 "report.findings:finding_generalisation"],
}


def measure(job) -> dict:
    cfg = job.params
    t0 = time.perf_counter()
    measures = measure_table(job.table("runs"), job.table("flatness"), job.table("robustness"),
                             job.table("hessian_eigs"), job.table("hessian_trace"))
    if len(measures):
        corr, gran = study_correlations(measures, cfg["gap"], cfg["n_boot"], cfg["seed"])
    else:
        corr, gran = empty("correlations"), empty("granulated")
    meta = {"options": cfg, "hparams": varied_hparams(measures) if len(measures) else []}
    job.table_meta = {"correlations": meta, "granulated": meta}
    print(f"measures: {len(measures)} finished runs; Ψ over "
          f"{meta['hparams'] or 'no hyper-parameter (only seeds vary)'} with the seed held "
          f"fixed; gap {cfg['gap']}, {cfg['n_boot']} bootstrap resamples "
          f"({time.perf_counter() - t0:.1f} s)")
    for r in corr.itertuples():
        print(f"  {r.measure:24s} τ = {r.tau:+.3f} [{r.tau_lo:+.3f}, {r.tau_hi:+.3f}] "
              f"(p = {r.p_value:.3g}, n = {r.n}); Ψ = {r.psi:+.3f} [{r.psi_lo:+.3f}, "
              f"{r.psi_hi:+.3f}] ({r.n_groups} groups)")
    return {"measures": measures, "correlations": corr, "granulated": gran}
