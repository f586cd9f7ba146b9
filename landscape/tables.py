"""The table contract: one place defines every Parquet table's columns, types and meaning.

Each table is declared once, with its row key, by ``register`` in its stage family's module of
``landscape/schemas/`` (training, slices, hessian, connectivity, robustness, generalisation,
report); a module that writes or reads a table imports that module, so a job's code inputs hold
exactly the schemas it uses. ``write_table(df, name, path)`` checks ``df`` against
``SCHEMAS[name]`` (missing or extra columns are errors), casts to the declared types, stores a
content checksum in the Parquet metadata and writes atomically. ``read_table(path, name)``
verifies name and checksum. ``SORT_KEYS[name]`` is each table's unique row key and sort order;
``gather`` is the one way per-job tables become a study table. ``python -m landscape docs
tables`` prints every schema (``landscape.stages.docs.describe``; docs/tables.md is generated
from it).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .io import IntegrityError, atomic_path

SCHEMA_VERSION = 1
_ARROW = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}


@dataclass(frozen=True)
class Col:
    name: str
    dtype: str  # one of _ARROW
    doc: str


RUN_HPARAMS = [
    Col("run", "string", "run identifier: model_optimizer_lr…_bs…_wd…_s… (sam and asam runs: "
        "optimizer_rho…)"),
    Col("model", "string", "model name in the registry"),
    Col("optimizer", "string", "sgd (with momentum), adam, sam or asam (around that SGD)"),
    Col("rho", "float64", "ascent radius ρ of sam and asam (study.sam_rho, study.asam_rho); 0 "
        "for sgd and adam"),
    Col("lr", "float64", "learning rate η"),
    Col("batch_size", "int64", "mini-batch size"),
    Col("weight_decay", "float64", "L2 weight decay"),
    Col("seed", "int64", "seed of initialisation and data order"),
]
EVAL = [
    Col("eval_set", "string", "evaluation set, e.g. train[2048,seed=0] or test[all]"),
    Col("eval_size", "int64", "number of samples in the evaluation set"),
]

# Every table registers here from its stage family's module in landscape/schemas/ (``register``:
# name, row key and columns together). A table's rows are unique on its key and gathered tables
# are sorted by it, so a gathered table does not depend on job order or shard count.
SCHEMAS: dict[str, list[Col]] = {}
SORT_KEYS: dict[str, list[str]] = {}
_FAMILY: dict[str, str] = {}  # table → the module that registered it


def register(name: str, key: list[str], columns: list[Col]) -> str:
    """Declare table ``name``: its row ``key`` and its ``columns`` (called once, at the import of
    its schema module in ``landscape.schemas``). Returns ``name``."""
    names = [c.name for c in columns]
    problems = []
    if name in SCHEMAS:
        problems.append("registered twice")
    if len(set(names)) != len(names):
        problems.append(f"repeated columns {sorted({n for n in names if names.count(n) > 1})}")
    if not key or not set(key) <= set(names):
        problems.append(f"row key {key} is not a non-empty subset of its columns")
    bad = sorted({c.dtype for c in columns} - set(_ARROW))
    if bad:
        problems.append(f"unknown column types {bad} (allowed: {sorted(_ARROW)})")
    if problems:
        raise ValueError(f"table {name!r}: " + "; ".join(problems))
    SCHEMAS[name], SORT_KEYS[name] = list(columns), list(key)
    _FAMILY[name] = sys._getframe(1).f_globals.get("__name__", "")
    return name


def _coerce(df: pd.DataFrame, name: str) -> pa.Table:
    if name not in SCHEMAS:
        raise KeyError(f"Unknown table {name!r}: its schema module in landscape/schemas/ is not "
                       f"imported here (imported: {sorted(SCHEMAS)}).")
    cols = SCHEMAS[name]
    want = [c.name for c in cols]
    missing = [c for c in want if c not in df.columns]
    extra = [c for c in df.columns if c not in want]
    if missing or extra:
        raise ValueError(f"table {name!r}: missing columns {missing}, unexpected columns {extra}")
    arrays = []
    for c in cols:
        s = df[c.name]
        if c.dtype == "string":
            values = s.astype(object).where(s.notna(), None).tolist()
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
        elif c.dtype == "bool":
            arrays.append(pa.array(s.astype(bool).to_numpy(), pa.bool_()))
        elif c.dtype == "int64":
            arrays.append(pa.array(s.astype(np.int64).to_numpy(), pa.int64()))
        else:
            arrays.append(pa.array(s.astype(np.float64).to_numpy(), pa.float64()))
    return pa.Table.from_arrays(arrays, names=want)


def _digest(table: pa.Table) -> str:
    h = hashlib.sha256()
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        h.update(name.encode())
        if pa.types.is_string(col.type):
            h.update(json.dumps(col.to_pylist()).encode())
        else:
            h.update(col.to_numpy(zero_copy_only=False).tobytes())
    return h.hexdigest()


def write_table(df: pd.DataFrame, name: str, path: str | Path,
                extra_meta: dict | None = None) -> None:
    """Validate ``df`` against schema ``name`` and write it atomically to ``path``."""
    table = _coerce(df.reset_index(drop=True), name)
    meta = {"landscape.table": name, "landscape.schema_version": str(SCHEMA_VERSION),
            "landscape.sha256": _digest(table)}
    for k, v in (extra_meta or {}).items():
        meta[f"landscape.{k}"] = json.dumps(v)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | Path, name: str | None = None) -> pd.DataFrame:
    """Read a table written by ``write_table``, verifying its name and checksum."""
    path = Path(path)
    remedy = "delete it and rerun the stage that writes it"
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001
        raise IntegrityError(f"{path}: table is truncated or corrupt ({exc}); {remedy}.") from exc
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if name is not None and meta.get("landscape.table") != name:
        raise IntegrityError(f"{path}: expected table {name!r}, found "
                             f"{meta.get('landscape.table')!r}; {remedy}.")
    table = table.replace_schema_metadata(None)
    if meta.get("landscape.sha256") != _digest(table):
        raise IntegrityError(f"{path}: table content does not match its checksum (altered); "
                             f"{remedy}.")
    return table.to_pandas()


def table_meta(path: str | Path) -> dict:
    """The extra metadata stored with a table (decoded JSON values)."""
    raw = pq.read_schema(path).metadata or {}
    out = {}
    for k, v in raw.items():
        k = k.decode()
        if k.startswith("landscape.") and k not in ("landscape.table", "landscape.sha256",
                                                    "landscape.schema_version"):
            out[k[len("landscape."):]] = json.loads(v.decode())
    return out


def empty(name: str) -> pd.DataFrame:
    """An empty frame with schema ``name``'s columns."""
    return pd.DataFrame({c.name: pd.Series(dtype=object) for c in SCHEMAS[name]})


def concat_tables(paths: list[str | Path], name: str) -> pd.DataFrame:
    """Read and concatenate several tables of schema ``name`` (an empty frame if none)."""
    frames = [read_table(p, name) for p in paths]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else empty(name)


def skipped_entries(paths: list[str | Path]) -> list[dict]:
    """Skip records carried by tables: a per-job table's own ``skipped`` reason (with its
    ``run`` and ``stage``), or a gathered table's ``skipped_runs``; unique, sorted."""
    out = []
    for p in paths:
        meta = table_meta(p)
        if "skipped" in meta:
            out.append({"run": meta.get("run", ""), "stage": meta.get("stage", ""),
                        "reason": meta["skipped"]})
        out.extend(meta.get("skipped_runs", []))
    unique = {(e["run"], e["stage"], e["reason"]): e for e in out}
    return [unique[k] for k in sorted(unique)]


def gather(inputs: list[str | Path], name: str, out: str | Path) -> pd.DataFrame:
    """Concatenate per-job tables of schema ``name``, refuse duplicate rows (on
    ``SORT_KEYS[name]``: overlapping shards or stale files), sort by that key, carry the inputs'
    skip records in the metadata (``skipped_runs``) and write ``out`` atomically."""
    df = concat_tables(inputs, name)
    keys = SORT_KEYS[name]
    if len(df):
        dup = df.duplicated(keys)
        if dup.any():
            raise ValueError(f"{name}: {int(dup.sum())} duplicate rows, e.g. "
                             f"{df[dup].iloc[0][keys].to_dict()}; inputs overlap (stale files?)")
        df = df.sort_values(keys, kind="stable").reset_index(drop=True)
    skipped = skipped_entries(inputs)
    write_table(df, name, out, extra_meta={"skipped_runs": skipped} if skipped else None)
    return df
