"""Stage: accuracy under weight noise, per run (from the robustness and runs tables)."""

from __future__ import annotations

from ..plots import save
from ..plots.robustness import noise_curves
from ..tables import read_table
from ._common import plot_options

NAME = "plot-robustness"
HELP = "draw accuracy under Gaussian weight noise against σ, one panel per mode"


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
