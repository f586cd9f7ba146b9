"""Stage: the curvature-matrix figure (curvature_matrices, matrix_density and runs tables)."""

from __future__ import annotations

from ..plots import save
from ..plots.hessian import matrices_figure
from ..schemas import matrices as _tables  # noqa: F401  registers the tables read here
from ..tables import read_table
from ._common import plot_options

NAME = "plot-matrices"
HELP = "draw λ_max, trace and spectral density of the Hessian, Gauss–Newton and empirical Fisher"


def add_arguments(p) -> None:
    p.add_argument("--matrices", required=True, help="curvature_matrices table")
    p.add_argument("--density", required=True, help="matrix_density table")
    p.add_argument("--runs", required=True)
    p.add_argument("--params", default="{}", help="JSON of the config's `plots` section")
    p.add_argument("--out", required=True)


def run(args) -> None:
    opts = plot_options(args.params)
    save(matrices_figure(read_table(args.matrices, "curvature_matrices"),
                         read_table(args.density, "matrix_density"),
                         read_table(args.runs, "runs")),
         args.out, dpi=opts["dpi"], formats=opts["formats"])
