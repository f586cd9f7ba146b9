"""Stage: accuracy under weight noise, per run (from the robustness and runs tables)."""

from __future__ import annotations

from ..plots import save
from ..plots.robustness import noise_curves
from ..tables import read_table
from ._common import plot_options

NAME = "plot-robustness"
HELP = "draw accuracy under Gaussian weight noise against σ, one panel per mode"

# The rule(s) drawing these figures (landscape/registry.py: plots; workflow/rules/plots.smk):
# CLI flag → gathered table, CLI flag → [figure file, caption, report category].
PLOTS = [{
    "order": 40,
    "tables": {"robustness": "robustness", "runs": "runs"},
    "figures": {"out": ["robustness_noise.png", "robustness_noise.rst", "Robustness"]},
}]

def add_arguments(p) -> None:
    p.add_argument("--robustness", required=True, help="robustness.parquet")
    p.add_argument("--runs", required=True, help="runs.parquet")
    p.add_argument("--params", default="{}", help="JSON of the config's `plots` section")
    p.add_argument("--out", required=True, help="output figure")


def run(args) -> None:
    opts = plot_options(args.params)
    kw = {"dpi": opts["dpi"], "formats": opts["formats"]}
    save(noise_curves(read_table(args.robustness, "robustness"), read_table(args.runs, "runs")),
         args.out, **kw)
