"""Stage: curvature figures from the hessian_*, sharpness_trajectory and runs tables."""

from __future__ import annotations

from ..plots import save
from ..plots.hessian import curvature_vs_generalisation, density_grid, sharpness_trajectories
from ..tables import read_table
from ._common import plot_options

NAME = "plot-hessian"
HELP = "draw spectral densities, curvature vs generalisation and sharpness along training"

# The rule(s) drawing these figures (landscape/registry.py: plots; workflow/rules/plots.smk):
# CLI flag → gathered table, CLI flag → [figure file, caption, report category].
PLOTS = [{
    "order": 10,
    "tables": {"eigs": "hessian_eigs", "trace": "hessian_trace", "density": "hessian_density",
               "sharpness": "sharpness_trajectory", "runs": "runs"},
    "figures": {"out-density": ["hessian_density.png", "hessian_density.rst", "Curvature"],
                "out-generalisation": ["hessian_generalisation.png",
                                       "hessian_generalisation.rst", "Curvature"],
                "out-sharpness": ["hessian_sharpness.png", "hessian_sharpness.rst", "Curvature"]},
}]

def add_arguments(p) -> None:
    p.add_argument("--eigs", required=True)
    p.add_argument("--trace", required=True)
    p.add_argument("--density", required=True)
    p.add_argument("--sharpness", required=True)
    p.add_argument("--runs", required=True)
    p.add_argument("--params", default="{}", help="JSON of the config's `plots` section")
    p.add_argument("--out-density", required=True)
    p.add_argument("--out-generalisation", required=True)
    p.add_argument("--out-sharpness", required=True)


def run(args) -> None:
    opts = plot_options(args.params)
    kw = {"dpi": opts["dpi"], "formats": opts["formats"]}
    eigs = read_table(args.eigs, "hessian_eigs")
    runs = read_table(args.runs, "runs")
    save(density_grid(read_table(args.density, "hessian_density"), eigs, runs),
         args.out_density, **kw)
    save(curvature_vs_generalisation(eigs, read_table(args.trace, "hessian_trace"), runs),
         args.out_generalisation, **kw)
    save(sharpness_trajectories(read_table(args.sharpness, "sharpness_trajectory"), runs),
         args.out_sharpness, **kw)
