"""Stage: the curvature-matrix and by-layer figures (curvature_matrices, matrix_density,
layer_curvature and runs tables)."""

from __future__ import annotations

from ..plots import save
from ..plots.hessian import layers_figure, matrices_figure
from ..schemas import matrices as _tables  # noqa: F401  registers the tables read here
from ..tables import read_table
from ._common import plot_options

NAME = "plot-matrices"
HELP = ("draw λ_max, trace and spectral density of the Hessian, Gauss–Newton and empirical "
        "Fisher, and the curvature by layer")

# The rule(s) drawing these figures (landscape/registry.py: plots; workflow/rules/plots.smk):
# CLI flag → gathered table, CLI flag → [figure file, caption, report category].
PLOTS = [{
    "order": 12,
    "tables": {"matrices": "curvature_matrices", "density": "matrix_density",
               "layers": "layer_curvature", "runs": "runs"},
    "figures": {"out": ["hessian_matrices.png", "hessian_matrices.rst", "Curvature"],
                "out-layers": ["hessian_layers.png", "hessian_layers.rst", "Curvature"]},
}]

def add_arguments(p) -> None:
    p.add_argument("--matrices", required=True, help="curvature_matrices table")
    p.add_argument("--density", required=True, help="matrix_density table")
    p.add_argument("--layers", required=True, help="layer_curvature table")
    p.add_argument("--runs", required=True)
    p.add_argument("--params", default="{}", help="JSON of the config's `plots` section")
    p.add_argument("--out", required=True, help="figure of the three matrices")
    p.add_argument("--out-layers", required=True, help="figure of the curvature by layer")


def run(args) -> None:
    opts = plot_options(args.params)
    kw = {"dpi": opts["dpi"], "formats": opts["formats"]}
    runs = read_table(args.runs, "runs")
    save(matrices_figure(read_table(args.matrices, "curvature_matrices"),
                         read_table(args.density, "matrix_density"), runs), args.out, **kw)
    save(layers_figure(read_table(args.layers, "layer_curvature"), runs), args.out_layers, **kw)
