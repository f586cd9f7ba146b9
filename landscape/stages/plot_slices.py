"""Stage: loss-landscape slice figures from the slice tables and runs.parquet."""

from __future__ import annotations

import json
from pathlib import Path

from ..plots import save
from ..plots.slices import curves_1d, plane_contours, small_multiples, surface
from ..tables import read_table

NAME = "plot-slices"
HELP = "draw 1-D slice curves, per-run contour and surface plots and the small multiples"


def add_arguments(p) -> None:
    p.add_argument("--slice-1d", required=True)
    p.add_argument("--slice-2d", required=True)
    p.add_argument("--trajectory", required=True)
    p.add_argument("--pca", required=True)
    p.add_argument("--runs", required=True, help="runs.parquet (labels)")
    p.add_argument("--params", default="{}", help="JSON of the config's `plots` section")
    p.add_argument("--curves", required=True, help="output figure of the 1-D slices")
    p.add_argument("--multiples", required=True, help="output figure of all runs' planes")
    p.add_argument("--figdir", required=True,
                   help="folder for contour_<run>.png and surface_<run>.png")
    p.add_argument("--run-ids", nargs="*", default=[],
                   help="runs that get per-run figures (a placeholder if a run has no slices)")


def run(args) -> None:
    import matplotlib.pyplot as plt

    params = json.loads(args.params)
    plt.style.use(params.get("style", "default"))
    dpi = params.get("dpi", 150)
    s1 = read_table(args.slice_1d, "slice_1d")
    s2 = read_table(args.slice_2d, "slice_2d")
    traj = read_table(args.trajectory, "trajectory_projection")
    pca = read_table(args.pca, "pca_variance")
    runs = read_table(args.runs, "runs")
    save(curves_1d(s1, runs), args.curves, dpi)
    save(small_multiples(s2, traj, pca, runs), args.multiples, dpi)
    figdir = Path(args.figdir)
    for run_id in args.run_ids:
        save(plane_contours(s2, traj, pca, runs, run_id), figdir / f"contour_{run_id}.png", dpi)
        save(surface(s2, runs, run_id), figdir / f"surface_{run_id}.png", dpi)
    print(f"wrote {args.curves}, {args.multiples} and {2 * len(args.run_ids)} per-run figures")
