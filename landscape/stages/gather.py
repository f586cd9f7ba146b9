"""Stage: concatenate per-job tables of one schema into a single table."""

from __future__ import annotations

from ..tables import SCHEMAS, concat_tables, write_table

NAME = "gather"
HELP = "concatenate tables of one schema (e.g. every run's metrics) into one Parquet file"


def add_arguments(p) -> None:
    p.add_argument("--table", required=True, choices=sorted(SCHEMAS), help="schema name")
    p.add_argument("--out", required=True, help="output Parquet file")
    p.add_argument("--sort", nargs="*", default=None, help="columns to sort by")
    p.add_argument("inputs", nargs="+", help="input Parquet files")


def run(args) -> None:
    df = concat_tables(args.inputs, args.table)
    if args.sort and len(df):
        df = df.sort_values(args.sort, kind="stable").reset_index(drop=True)
    write_table(df, args.table, args.out)
    print(f"wrote {args.out}: {len(df)} rows from {len(args.inputs)} files")
