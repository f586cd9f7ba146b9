"""The table contract and integrity checks on tables and checkpoints."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from landscape.checkpoints import load_checkpoint, save_checkpoint
from landscape.io import IntegrityError
from landscape.tables import SCHEMAS, read_table, write_table


def skipped_row(**kw):
    row = {"run": "r1", "stage": "hessian", "reason": "diverged"}
    row.update(kw)
    return row


def test_roundtrip_and_types(tmp_path):
    p = tmp_path / "t.parquet"
    write_table(pd.DataFrame([skipped_row(), skipped_row(run="r2")]), "skipped", p)
    df = read_table(p, "skipped")
    assert list(df.columns) == [c.name for c in SCHEMAS["skipped"]]
    assert df["run"].tolist() == ["r1", "r2"]


def test_missing_or_extra_columns_rejected(tmp_path):
    with pytest.raises(ValueError, match="missing columns \\['reason'\\]"):
        write_table(pd.DataFrame([{"run": "a", "stage": "b"}]), "skipped", tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="unexpected columns \\['extra'\\]"):
        write_table(pd.DataFrame([skipped_row(extra=1)]), "skipped", tmp_path / "x.parquet")


def test_interrupted_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    """The writer dies after putting real bytes on disk: no partial file may remain and the
    previous version of the table must still read back unchanged."""
    import pyarrow.parquet as pq

    p = tmp_path / "t.parquet"
    write_table(pd.DataFrame([skipped_row()]), "skipped", p)
    before = p.read_bytes()
    real = pq.write_table
    written = []

    def dies_midway(table, where, **kw):
        real(table, where, **kw)
        Path(where).write_bytes(Path(where).read_bytes()[:100])  # a torn file on disk
        written.append(Path(where).stat().st_size)
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", dies_midway)
    with pytest.raises(OSError, match="disk full"):
        write_table(pd.DataFrame([skipped_row(run="new")]), "skipped", p)
    assert written and written[0] > 0, "the write must really have started"
    assert [f.name for f in tmp_path.iterdir()] == ["t.parquet"], "partial file left behind"
    assert p.read_bytes() == before
    assert read_table(p, "skipped")["run"].tolist() == ["r1"]


def test_wrong_table_name_detected(tmp_path):
    p = tmp_path / "t.parquet"
    write_table(pd.DataFrame([skipped_row()]), "skipped", p)
    with pytest.raises(IntegrityError, match="expected table 'runs'"):
        read_table(p, "runs")


def test_truncated_table_detected(tmp_path):
    p = tmp_path / "t.parquet"
    write_table(pd.DataFrame([skipped_row()]), "skipped", p)
    p.write_bytes(p.read_bytes()[:-40])
    with pytest.raises(IntegrityError, match="t.parquet: table is truncated or corrupt"):
        read_table(p, "skipped")


def test_altered_table_detected(tmp_path):
    import pyarrow.parquet as pq

    p = tmp_path / "t.parquet"
    write_table(pd.DataFrame([skipped_row()]), "skipped", p)
    table = pq.read_table(p)
    meta = table.schema.metadata
    df = table.to_pandas()
    df.loc[0, "reason"] = "edited"
    import pyarrow as pa

    pq.write_table(pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(meta), p)
    with pytest.raises(IntegrityError, match="does not match its checksum"):
        read_table(p, "skipped")


def test_checkpoint_integrity(tmp_path):
    p = tmp_path / "checkpoint.pt"
    meta = {"config": {"lr": 0.1, "seed": 1}, "run": "r"}
    save_checkpoint(p, {"w": torch.arange(4.0)}, meta)
    assert torch.equal(load_checkpoint(p)["state_dict"]["w"], torch.arange(4.0))
    with pytest.raises(IntegrityError, match="checkpoint from another config.*lr"):
        load_checkpoint(p, expect={"lr": 0.2})
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(IntegrityError, match="checkpoint.pt: checkpoint is truncated"):
        load_checkpoint(p)
    # altered tensor with an intact file: checksum mismatch
    blob = {"kind": "checkpoint", "meta": meta, "state_dict": {"w": torch.arange(4.0) + 1}}
    from landscape.io import tensor_digest

    blob["sha256"] = tensor_digest({"kind": "checkpoint", "meta": meta,
                                    "state_dict": {"w": torch.arange(4.0)}})
    torch.save(blob, p)
    with pytest.raises(IntegrityError, match="does not match its checksum"):
        load_checkpoint(p)
    with pytest.raises(IntegrityError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_outputs_get_the_usual_permissions(tmp_path):
    """Atomic writes go through a temporary file (mkstemp: mode 0600); the output itself gets the
    mode a plain open() would give, so a report or a colleague can read it."""
    import os

    from landscape.io import _umask, atomic_path

    _umask.cache_clear()
    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "figure.png") as tmp:
            tmp.write_bytes(b"png")
    finally:
        os.umask(mask)
        _umask.cache_clear()
    assert (tmp_path / "figure.png").stat().st_mode & 0o777 == 0o644


def test_register_refuses_bad_declarations():
    from landscape.tables import _FAMILY, SORT_KEYS, Col, register

    cols = [Col("run", "string", "run"), Col("x", "float64", "x")]
    try:
        assert register("_toy", ["run"], cols) == "_toy"
        assert SORT_KEYS["_toy"] == ["run"]
        with pytest.raises(ValueError, match="registered twice"):
            register("_toy", ["run"], cols)
    finally:
        SCHEMAS.pop("_toy", None)
        SORT_KEYS.pop("_toy", None)
        _FAMILY.pop("_toy", None)
    with pytest.raises(ValueError, match="row key"):
        register("_toy2", ["seed"], cols)
    with pytest.raises(ValueError, match="repeated columns"):
        register("_toy3", ["run"], cols + cols[:1])
    with pytest.raises(ValueError, match="unknown column types"):
        register("_toy4", ["run"], [Col("run", "text", "run")])


def test_every_table_belongs_to_one_family_module():
    from landscape.schemas import FAMILIES, family_of

    assert {family_of(name) for name in SCHEMAS} == set(FAMILIES)
    assert family_of("flatness") == "robustness" and family_of("runs") == "training"
