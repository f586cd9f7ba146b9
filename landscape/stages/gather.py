"""Stage: gather per-job tables into study tables (one or several schemas in one process).

Each ``--table NAME --out PATH --inputs FILE...`` triple is one ``landscape.tables.gather``:
rows concatenated, checked unique on the table's key, sorted, and the skip records of the
inputs (a diverged run, say) carried in the metadata for ``collect-skipped``.

Any table can be gathered, so this stage imports the schema families by name
(``landscape.schemas.load_all``); each gather rule lists the family module of the tables it
gathers among its code inputs (``schema_src`` in workflow/rules/common.smk).
"""

from __future__ import annotations

from ..schemas import load_all
from ..tables import SCHEMAS, gather

NAME = "gather"
HELP = "concatenate per-job tables of a schema (e.g. every run's metrics) into one table"


def add_arguments(p) -> None:
    load_all()
    p.add_argument("--table", action="append", required=True, choices=sorted(SCHEMAS),
                   help="schema name (repeat for each table)")
    p.add_argument("--out", action="append", required=True, help="output Parquet file")
    p.add_argument("--inputs", action="append", nargs="+", required=True,
                   help="input Parquet files of that table")


def run(args) -> None:
    if not len(args.table) == len(args.out) == len(args.inputs):
        raise ValueError(f"gather: {len(args.table)} --table, {len(args.out)} --out and "
                         f"{len(args.inputs)} --inputs; expected one of each per table")
    for name, out, inputs in zip(args.table, args.out, args.inputs, strict=True):
        df = gather(inputs, name, out)
        print(f"wrote {out}: {len(df)} rows from {len(inputs)} files")
