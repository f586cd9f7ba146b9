"""Stage: training figures from training.parquet and runs.parquet."""

from __future__ import annotations

from ..plots import save
from ..plots.training import final_vs_hparams, training_curves
from ..tables import read_table
from ._common import plot_options

NAME = "plot-training"
HELP = "draw training curves and final metrics against hyper-parameters"

# The rule(s) drawing these figures (landscape/registry.py: plots; workflow/rules/plots.smk):
# CLI flag → gathered table, CLI flag → [figure file, caption, report category].
PLOTS = [{
    "order": 0,
    "tables": {"training": "training", "runs": "runs"},
    "figures": {"curves": ["training_curves.png", "training_curves.rst", "Training"],
                "hparams": ["final_vs_hparams.png", "final_vs_hparams.rst", "Training"]},
}]

def add_arguments(p) -> None:
    p.add_argument("--training", required=True)
    p.add_argument("--runs", required=True, help="runs.parquet (the colours of the runs)")
    p.add_argument("--params", default="{}", help="JSON of the config's `plots` section")
    p.add_argument("--curves", required=True, help="output figure of training curves")
    p.add_argument("--hparams", required=True, help="output figure of metrics vs hyper-parameters")


def run(args) -> None:
    opts = plot_options(args.params)
    kw = {"dpi": opts["dpi"], "formats": opts["formats"]}
    runs = read_table(args.runs, "runs")
    save(training_curves(read_table(args.training, "training"), runs), args.curves, **kw)
    save(final_vs_hparams(runs), args.hparams, **kw)
