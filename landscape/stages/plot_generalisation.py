"""Stage: the generalisation figures (measures against the gap; τ and Ψ with intervals), from
the measures, correlations, granulated and runs tables."""

from __future__ import annotations

from ..plots import save
from ..plots.generalisation import correlation_bars, measures_vs_gap
from ..tables import read_table
from ._common import plot_options

NAME = "plot-generalisation"
HELP = "draw every measure against the generalisation gap, and the τ / Ψ chart"

# The rule(s) drawing these figures (landscape/registry.py: plots; workflow/rules/plots.smk):
# CLI flag → gathered table, CLI flag → [figure file, caption, report category].
PLOTS = [{
    "order": 41,
    "tables": {"measures": "measures", "correlations": "correlations", "granulated": "granulated",
               "runs": "runs"},
    "figures": {"out-measures": ["generalisation_measures.png", "generalisation_measures.rst",
                                 "Generalisation"],
                "out-correlations": ["generalisation_correlations.png",
                                     "generalisation_correlations.rst", "Generalisation"]},
}]

def add_arguments(p) -> None:
    p.add_argument("--measures", required=True, help="measures.parquet")
    p.add_argument("--correlations", required=True, help="correlations.parquet")
    p.add_argument("--granulated", required=True, help="granulated.parquet")
    p.add_argument("--runs", help="runs.parquet (the colours of the runs; without it, from "
                                  "the finished runs in --measures)")
    p.add_argument("--params", default="{}", help="JSON of the config's `plots` section")
    p.add_argument("--out-measures", required=True, help="output: measures vs gap")
    p.add_argument("--out-correlations", required=True, help="output: τ / Ψ chart")


def run(args) -> None:
    opts = plot_options(args.params)
    kw = {"dpi": opts["dpi"], "formats": opts["formats"]}
    measures = read_table(args.measures, "measures")
    corr = read_table(args.correlations, "correlations")
    runs = read_table(args.runs, "runs") if args.runs else None
    save(measures_vs_gap(measures, corr, runs), args.out_measures, **kw)
    save(correlation_bars(corr, read_table(args.granulated, "granulated")),
         args.out_correlations, **kw)
