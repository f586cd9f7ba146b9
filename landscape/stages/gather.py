"""Stage: concatenate per-job tables of one schema into a single table.

Inputs that a stage skipped (a diverged run: an empty table whose metadata holds the reason) are
listed in the gathered table's metadata under ``skipped_runs``, so the reason stays visible
downstream (``collect-skipped`` turns them into ``skipped.parquet``).
"""

from __future__ import annotations

import re

from ..tables import SCHEMAS, concat_tables, table_meta, write_table

NAME = "gather"
HELP = "concatenate tables of one schema (e.g. every run's metrics) into one Parquet file"


def skipped_entries(paths) -> list[dict]:
    """Skip records carried by tables: their own `skipped` reason, or inherited `skipped_runs`."""
    out = []
    for p in paths:
        meta = table_meta(p)
        if "skipped" in meta:
            m = re.match(r"run (\S+)", meta["skipped"])
            out.append({"run": m.group(1) if m else "", "stage": meta.get("stage", ""),
                        "reason": meta["skipped"]})
        out.extend(meta.get("skipped_runs", []))
    unique = {(e["run"], e["stage"], e["reason"]): e for e in out}
    return [unique[k] for k in sorted(unique)]


def add_arguments(p) -> None:
    p.add_argument("--table", required=True, choices=sorted(SCHEMAS), help="schema name")
    p.add_argument("--out", required=True, help="output Parquet file")
    p.add_argument("--sort", nargs="*", default=None, help="columns to sort by")
    p.add_argument("inputs", nargs="+", help="input Parquet files")


def run(args) -> None:
    df = concat_tables(args.inputs, args.table)
    if args.sort and len(df):
        df = df.sort_values(args.sort, kind="stable").reset_index(drop=True)
    skipped = skipped_entries(args.inputs)
    write_table(df, args.table, args.out, extra_meta={"skipped_runs": skipped} if skipped else None)
    print(f"wrote {args.out}: {len(df)} rows from {len(args.inputs)} files")
    for e in skipped:
        print(f"  skipped by {e['stage']}: {e['reason']}")
