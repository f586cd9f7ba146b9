"""Stage: list every run a downstream stage skipped, with the reason (skipped.parquet)."""

from __future__ import annotations

import pandas as pd

from ..schemas import report as _tables  # noqa: F401  registers the tables written here
from ..tables import empty, skipped_entries, write_table

NAME = "collect-skipped"
HELP = "collect the runs that geometry stages skipped (e.g. diverged) into skipped.parquet"


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="output Parquet file")
    p.add_argument("inputs", nargs="+", help="gathered tables")


def run(args) -> None:
    rows = skipped_entries(args.inputs)
    write_table(pd.DataFrame(rows) if rows else empty("skipped"), "skipped", args.out)
    print(f"wrote {args.out}: {len(rows)} skipped (run, stage) pairs")
    for r in rows:
        print(f"  {r['stage']}: {r['reason']}")
