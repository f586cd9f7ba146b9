"""Stage: generated findings (findings.parquet) and the self-contained findings page."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..report.findings import (
    Finding,
    finding_curvature,
    finding_training,
    findings_frame,
    run_table,
)
from ..schemas import report as _tables  # noqa: F401  registers the tables written here
from ..tables import read_table, write_table
from ._common import section

NAME = "findings"
HELP = ("generate the findings (each statement with the numbers it rests on) from the tables, "
        "and the findings page with every figure")


def add_arguments(p) -> None:
    p.add_argument("--runs", required=True, help="runs table")
    p.add_argument("--table", action="append", default=[], metavar="NAME=PATH",
                   help="a gathered table of the study (repeat; every one the study made: a "
                        "stage's findings are generated when its tables are there, and every "
                        "table is listed on the page)")
    p.add_argument("--figures", nargs="*", default=[], help="figures to embed (PNG/SVG)")
    p.add_argument("--params", default="{}", help="JSON of the config's `report` section")
    p.add_argument("--study", default="", help="one line describing the study")
    p.add_argument("--out-table", required=True, help="findings table (.parquet)")
    p.add_argument("--out-html", required=True, help="findings page (.html)")


def load(args) -> dict[str, pd.DataFrame]:
    from ..schemas import load_all

    load_all()  # any table may be given: its schema verifies it
    tables = {"runs": read_table(args.runs, "runs")}
    for item in args.table:
        name, sep, path = item.partition("=")
        if not sep:
            raise UserError(f"--table {item!r}: expected NAME=PATH")
        tables[name] = read_table(path, name)
    return tables


def table_list(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per table the page was made from: its stage, rows, and what one row is."""
    from ..registry import tables as writers
    from ..tables import SORT_KEYS

    stage = {t: m.name for t, m in writers().items()}
    return pd.DataFrame([{"table": name, "stage": stage.get(name, "train"), "rows": len(df),
                          "columns": len(df.columns),
                          "one row per": ", ".join(SORT_KEYS.get(name, []))}
                         for name, df in tables.items()])


def generate(tables: dict[str, pd.DataFrame]) -> tuple[list[Finding], pd.DataFrame]:
    """Every stage's findings (a stage without tables is simply absent) and the run table."""
    from ..report import findings as f

    runs = tables["runs"]
    extra = []
    if "stop_at_loss" in runs and runs["stop_at_loss"].notna().any():
        # train.stop_at_loss: runs end at different epochs; show when and why each stopped
        extra.append(runs[["run", "epochs", "stop_reason", "train_loss"]])
    if "measures" in tables:
        keep = [c for c in tables["measures"].columns
                if c in ("run", "eps_sharpness", "adaptive_worst", "pacbayes_mag_flatness",
                         "sigma_half_absolute")]
        extra.append(tables["measures"][keep])
    if "barriers" in tables and hasattr(f, "barrier_per_run"):
        extra.append(f.barrier_per_run(tables["barriers"]))
    table = run_table(runs, tables.get("curvature_repeats"), extra)
    out = finding_training(runs)
    if "curvature_repeats" in tables:  # needs the run table above (λ_max with its spread)
        out += finding_curvature(table, tables.get("sharpness_trajectory"))
    out += registered_findings(tables)
    return out, table


def registered_findings(tables: dict[str, pd.DataFrame]) -> list[Finding]:
    """The findings functions the measurements declare (STAGE ``findings``), in stage order,
    for each stage whose tables are all here."""
    import importlib

    from ..registry import measurements

    out = []
    for m in measurements():
        if not m.findings or not set(m.tables) <= set(tables):
            continue
        for spec in m.findings:
            module, name = spec.split(":")
            fn = getattr(importlib.import_module(f"landscape.{module}"), name)
            out += fn(tables)
    return out


def measure_summary(correlations: pd.DataFrame | None) -> pd.DataFrame | None:
    """Every measure's τ, p (unadjusted and Holm-adjusted), interval and Ψ per gap, ordered by
    |τ| within each gap: the table the findings' selected "largest |τ|" is read beside. None
    (no table) when no gap has the runs a rank correlation needs (``MIN_RUNS_FOR_RANKS``): the
    findings say so instead of listing τ = ±1 of two runs."""
    from ..report.findings import MIN_RUNS_FOR_RANKS

    if correlations is None or correlations.empty:
        return None
    correlations = correlations[correlations.groupby("gap")["n"].transform("max")
                                >= MIN_RUNS_FOR_RANKS]
    if correlations.empty:
        return None
    cols = ["gap", "measure", "sign", "tau", "tau_lo", "tau_hi", "p_value", "p_holm", "psi",
            "psi_lo", "psi_hi", "n"]
    c = correlations[[col for col in cols if col in correlations]].copy()
    c = c.assign(_key=-c["tau"].abs()).sort_values(["gap", "_key"], kind="stable")
    return c.drop(columns="_key").reset_index(drop=True)


def run(args) -> None:
    from ..report.html import page

    params = section(args.params, "report")
    tables = load(args)
    findings, table = generate(tables)
    reference = None
    if params["reference"]:
        from ..report.reference import comparison, load_reference

        ref = load_reference(params["reference"])
        reference = comparison(ref, tables)
        reference["source"] = ""
        reference.loc[0, "source"] = " ".join(ref["source"].split())
    write_table(findings_frame(findings).assign(order=range(len(findings))), "findings",
                args.out_table)
    interactive = ""
    if params["surfaces"]:
        from ..report.surfaces import surface_data, surfaces_html

        interactive = surfaces_html(surface_data(tables.get("slice_2d"),
                                                 tables.get("trajectory_projection")))
    text = page(findings, table, reference, [Path(p) for p in args.figures], params["title"],
                args.study, sections=[("measures", "Measures against the generalisation gap",
                                       measure_summary(tables.get("correlations"))),
                                      ("tables", "Tables of this study (results/tables/, "
                                       "columns in docs/tables.md)", table_list(tables))],
                interactive=interactive)
    from ..io import atomic_path

    with atomic_path(args.out_html) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    print(f"wrote {args.out_html}: {len(findings)} findings, {len(table)} runs, "
          f"{len(args.figures)} figures")
    for f in findings:
        print(f"  [{f.stage}] {f.text}")
