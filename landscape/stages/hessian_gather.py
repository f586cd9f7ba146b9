"""Stage: gather every run's curvature tables (four schemas) in one process.

The same as four ``gather`` calls (rows concatenated and sorted, skipped runs carried in the
metadata) without paying the interpreter start-up four times.
"""

from __future__ import annotations

from ..tables import concat_tables, write_table
from .gather import skipped_entries

NAME = "hessian-gather"
HELP = ("concatenate the per-run hessian_eigs, hessian_trace, hessian_density and "
        "sharpness_trajectory tables")
TABLES = {"eigs": ("hessian_eigs", ["run"]), "trace": ("hessian_trace", ["run"]),
          "density": ("hessian_density", ["run"]),
          "sharpness": ("sharpness_trajectory", ["run", "step"])}


def add_arguments(p) -> None:
    for key, (name, _) in TABLES.items():
        p.add_argument(f"--in-{key}", nargs="+", required=True, help=f"per-run {name} tables")
        p.add_argument(f"--out-{key}", required=True, help=f"gathered {name} table")


def run(args) -> None:
    for key, (name, sort) in TABLES.items():
        inputs = getattr(args, f"in_{key}")
        out = getattr(args, f"out_{key}")
        df = concat_tables(inputs, name)
        if len(df):
            df = df.sort_values(sort, kind="stable").reset_index(drop=True)
        skipped = skipped_entries(inputs)
        write_table(df, name, out, extra_meta={"skipped_runs": skipped} if skipped else None)
        print(f"wrote {out}: {len(df)} rows from {len(inputs)} files")
        for e in skipped:
            print(f"  skipped by {e['stage']}: {e['reason']}")
