"""Stage: loss-landscape slice figures from the slice tables and runs.parquet."""

from __future__ import annotations

from ..tables import read_table
from ._common import plot_options

NAME = "plot-slices"
HELP = "draw 1-D slice curves, per-run contour and surface plots and the small multiples"

# The rule(s) drawing these figures (landscape/registry.py: plots; workflow/rules/plots.smk):
# CLI flag → gathered table, CLI flag → [figure file, caption, report category].
PLOTS = [{
    "order": 20,
    "tables": {"slice-1d": "slice_1d", "slice-2d": "slice_2d",
               "trajectory": "trajectory_projection", "pca": "pca_variance", "runs": "runs"},
    "figures": {"curves": ["slices_1d.png", "slice_1d.rst", "Loss landscape"],
                "multiples": ["slices_multiples.png", "slice_multiples.rst", "Loss landscape"]},
    # one figure per sliced run (the runs of the slice_directions jobs), ids given as --run-ids
    "per_run": {"contours": ["slices/contour_{run}.png", "slice_contour.rst", "Loss landscape",
                             "contours"],
                "surfaces": ["slices/surface_{run}.png", "slice_surface.rst", "Loss landscape",
                             "surfaces"]},
    "runs_of": "slice_directions",
    "run_ids": "run-ids",
}]

def add_arguments(p) -> None:
    p.add_argument("--slice-1d", required=True)
    p.add_argument("--slice-2d", required=True)
    p.add_argument("--trajectory", required=True)
    p.add_argument("--pca", required=True)
    p.add_argument("--runs", required=True, help="runs.parquet (labels)")
    p.add_argument("--params", default="{}", help="JSON of the config's `plots` section")
    p.add_argument("--curves", required=True, help="output figure of the 1-D slices")
    p.add_argument("--multiples", required=True, help="output figure of all runs' planes")
    p.add_argument("--run-ids", nargs="*", default=[],
                   help="runs that get per-run figures (a placeholder if a run has no slices)")
    p.add_argument("--contours", nargs="*", default=[],
                   help="output contour figure of each run in --run-ids (same order)")
    p.add_argument("--surfaces", nargs="*", default=[],
                   help="output 3-D surface figure of each run in --run-ids (same order)")


def run(args) -> None:

    from ..plots import save  # matplotlib only in this stage's process, not in every CLI call
    from ..plots.slices import curves_1d, plane_contours, small_multiples, surface

    opts = plot_options(args.params)
    kw = {"dpi": opts["dpi"], "formats": opts["formats"]}
    s1 = read_table(args.slice_1d, "slice_1d")
    s2 = read_table(args.slice_2d, "slice_2d")
    traj = read_table(args.trajectory, "trajectory_projection")
    pca = read_table(args.pca, "pca_variance")
    runs = read_table(args.runs, "runs")
    save(curves_1d(s1, runs), args.curves, **kw)
    save(small_multiples(s2, traj, pca, runs), args.multiples, **kw)
    if not len(args.contours) == len(args.surfaces) == len(args.run_ids):
        raise ValueError(f"--run-ids has {len(args.run_ids)} runs but --contours "
                         f"{len(args.contours)} and --surfaces {len(args.surfaces)} files; "
                         "give one of each per run")
    for run_id, contour, surf in zip(args.run_ids, args.contours, args.surfaces, strict=True):
        save(plane_contours(s2, traj, pca, runs, run_id), contour, **kw)
        save(surface(s2, runs, run_id), surf, **kw)
    print(f"wrote {args.curves}, {args.multiples} and {2 * len(args.run_ids)} per-run figures")
