"""Stage: gather every run's and shard's slice tables into results/tables."""

from __future__ import annotations

from ..slices import SORT_KEYS
from ..tables import concat_tables, write_table
from .gather import skipped_entries

NAME = "slices-gather"
HELP = "concatenate per-run, per-shard slice tables into slice_1d, slice_2d, " \
       "trajectory_projection and pca_variance (sorted, so the result is shard-count independent)"


def add_arguments(p) -> None:
    for key, table in (("1d", "slice_1d"), ("2d", "slice_2d"),
                       ("trajectory", "trajectory_projection"), ("pca", "pca_variance")):
        p.add_argument(f"--in-{key}", nargs="+", required=True, help=f"input {table} files")
        p.add_argument(f"--out-{key}", required=True, help=f"output {table} table")


def gather(inputs: list[str], table: str, out: str) -> int:
    """Concatenate, sort by the table's key columns, refuse duplicate points, write (skip
    reasons of the inputs go to the metadata's ``skipped_runs``, as the ``gather`` stage does)."""
    df = concat_tables(inputs, table)
    keys = SORT_KEYS[table]
    if len(df):
        dup = df.duplicated(keys)
        if dup.any():
            raise ValueError(f"{table}: {int(dup.sum())} duplicate points, e.g. "
                             f"{df[dup].iloc[0][keys].to_dict()}; shards overlap (stale files?)")
        df = df.sort_values(keys, kind="stable").reset_index(drop=True)
    skipped = skipped_entries(inputs)  # diverged runs' reasons stay visible downstream
    write_table(df, table, out, extra_meta={"skipped_runs": skipped} if skipped else None)
    return len(df)


def run(args) -> None:
    for key, table in (("1d", "slice_1d"), ("2d", "slice_2d"),
                       ("trajectory", "trajectory_projection"), ("pca", "pca_variance")):
        inputs = getattr(args, f"in_{key}")
        out = getattr(args, f"out_{key}")
        n = gather(inputs, table, out)
        print(f"wrote {out}: {n} rows from {len(inputs)} files")
