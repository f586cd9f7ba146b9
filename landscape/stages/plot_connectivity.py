"""Stage: mode-connectivity figures from the connectivity, barriers, spawn_barriers and runs
tables (the path and barrier figures, or the spawning figure, or all three)."""

from __future__ import annotations

from ..tables import read_table
from ._common import plot_options

NAME = "plot-connectivity"
HELP = ("draw loss and error along the paths between pairs, the barriers across pairs and the "
        "barrier between spawned children against the spawn step")

# The rule(s) drawing these figures (landscape/registry.py: plots; workflow/rules/plots.smk):
# CLI flag → gathered table, CLI flag → [figure file, caption, report category].
PLOTS = [{
    "order": 30,
    "rule": "plot_connectivity",
    "tables": {"paths": "connectivity", "barriers": "barriers", "runs": "runs"},
    "figures": {"out-paths": ["connectivity_paths.png", "connectivity_paths.rst", "Connectivity"],
                "out-barriers": ["connectivity_barriers.png", "connectivity_barriers.rst",
                                 "Connectivity"]},
}, {
    "order": 31,
    "rule": "plot_spawn",
    "tables": {"spawn": "spawn_barriers", "runs": "runs"},
    "figures": {"out-spawn": ["connectivity_spawn.png", "connectivity_spawn.rst", "Connectivity"]},
}]

def add_arguments(p) -> None:
    p.add_argument("--paths", help="connectivity.parquet (with --barriers, --out-paths, "
                                   "--out-barriers)")
    p.add_argument("--barriers", help="barriers.parquet")
    p.add_argument("--spawn", help="spawn_barriers.parquet (with --out-spawn)")
    p.add_argument("--runs", required=True, help="runs.parquet (labels)")
    p.add_argument("--params", default="{}", help="JSON of the config's `plots` section")
    p.add_argument("--out-paths", help="output figure: loss and error along the paths")
    p.add_argument("--out-barriers", help="output figure: barriers across pairs")
    p.add_argument("--out-spawn", help="output figure: barrier against the spawn step")


def run(args) -> None:
    from ..plots import save  # matplotlib only in this stage's process
    from ..plots.connectivity import barrier_chart, path_curves, spawn_chart

    groups = {"pairs": (args.paths, args.barriers, args.out_paths, args.out_barriers),
              "spawn": (args.spawn, args.out_spawn)}
    for name, given in groups.items():
        if any(given) and not all(given):
            raise ValueError(f"plot-connectivity: the {name} figures need all of their inputs "
                             "and outputs (--paths --barriers --out-paths --out-barriers, or "
                             "--spawn --out-spawn)")
    if not (args.paths or args.spawn):
        raise ValueError("plot-connectivity: nothing to draw; give --paths ... or --spawn ...")
    opts = plot_options(args.params)
    kw = {"dpi": opts["dpi"], "formats": opts["formats"]}
    runs = read_table(args.runs, "runs")
    if args.paths:
        save(path_curves(read_table(args.paths, "connectivity"), runs), args.out_paths, **kw)
        save(barrier_chart(read_table(args.barriers, "barriers"), runs), args.out_barriers, **kw)
        print(f"wrote {args.out_paths} and {args.out_barriers}")
    if args.spawn:
        save(spawn_chart(read_table(args.spawn, "spawn_barriers"), runs), args.out_spawn, **kw)
        print(f"wrote {args.out_spawn}")
