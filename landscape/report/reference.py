"""Published numbers of an earlier study, side by side with ours, and a generated verdict.

The reference numbers live in a small data file (``studies/seed_reference.yaml``: the original
assignment's notebook, source named in the file), never in code. Each entry names a ``measure``
that this module knows how to compute from our tables, plus the seed (or noise level) it is for.
Ours come with a spread (over seeds, noise draws or evaluation subsets); the note says whether
the published value lies beyond twice that spread.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

MEASURES = ("test_acc", "lambda_max_power", "interpolation_peak_train_loss",
            "interpolation_peak_t", "interpolation_end_train_loss", "noise_test_accuracy")


def load_reference(path: str | Path) -> dict:
    """Read and check a reference file: ``source`` and ``entries`` with known measures."""
    with open(path) as fh:
        ref = yaml.safe_load(fh)
    if not isinstance(ref, dict) or "entries" not in ref or "source" not in ref:
        raise ValueError(f"{path}: a reference file needs `source` and `entries`")
    for e in ref["entries"]:
        if e.get("measure") not in MEASURES:
            raise ValueError(f"{path}: measure {e.get('measure')!r} is not allowed; expected one "
                             f"of {list(MEASURES)}")
    return ref


def _run_of_seed(runs: pd.DataFrame, seed) -> pd.Series | None:
    r = runs[(runs["seed"] == seed) & (runs["status"] == "ok")]
    return None if r.empty else r.iloc[0]


def ours(entry: dict, tables: dict[str, pd.DataFrame]) -> tuple[float, float, str]:
    """(our value, our spread, what the spread is over) for one reference entry; NaN when the
    table it needs is absent."""
    nan = (math.nan, math.nan, "")
    runs = tables.get("runs")
    m = entry["measure"]
    if runs is None:
        return nan
    run = _run_of_seed(runs, entry.get("seed")) if "seed" in entry else None
    if m == "test_acc":
        ok = runs[runs["status"] == "ok"]["test_acc"]
        return (float(run["test_acc"]) if run is not None else math.nan,
                float(ok.std(ddof=1)) if len(ok) > 1 else math.nan, f"{len(ok)} seeds")
    if m == "lambda_max_power":
        eigs, rep = tables.get("hessian_eigs"), tables.get("curvature_repeats")
        if eigs is None or run is None:
            return nan
        p = eigs[(eigs["run"] == run["run"]) & (eigs["method"] == "power") & (eigs["k"] == 1)]
        sd = math.nan
        if rep is not None:
            r = rep[rep["run"] == run["run"]]["lambda_max"]
            sd = float(r.std(ddof=1)) if len(r) > 1 else math.nan
        return (float(p["eigenvalue"].iloc[0]) if len(p) else math.nan, sd,
                "evaluation subsets (Lanczos λ_max)")
    if m.startswith("interpolation"):
        con = tables.get("connectivity")
        if con is None or con.empty:
            return nan
        c = con[(con["method"] == "linear") & (con["split"] == "train")].sort_values("t")
        if c.empty:
            return nan
        if m == "interpolation_peak_train_loss":
            return float(c["loss"].max()), math.nan, "one pair"
        if m == "interpolation_peak_t":
            return float(c.loc[c["loss"].idxmax(), "t"]), math.nan, "one pair"
        end = 0.0 if entry.get("end", "a") == "a" else 1.0
        v = c[np.isclose(c["t"], end)]["loss"]
        return (float(v.iloc[0]) if len(v) else math.nan), math.nan, "one pair"
    if m == "noise_test_accuracy":
        rob = tables.get("robustness")
        if rob is None or run is None:
            return nan
        d = rob[(rob["run"] == run["run"]) & (rob["mode"] == "absolute")
                & (rob["split"] == "test") & np.isclose(rob["sigma"], float(entry["sigma"]))]
        if d.empty:
            return nan
        return (float(d["accuracy"].mean()),
                float(d["accuracy"].std(ddof=1)) if len(d) > 1 else math.nan,
                f"{len(d)} noise draws")
    return nan


def note(published: float, value: float, spread: float) -> str:
    """Generated verdict: beyond twice our spread, within it, or no spread to judge."""
    if not math.isfinite(value):
        return "not measured in this run"
    diff = value - published
    if not math.isfinite(spread) or spread == 0:
        return f"differs by {diff:+.3g}; no spread to judge it by"
    if abs(diff) > 2 * spread:
        return f"differs by {diff:+.3g}, beyond twice our spread ({2 * spread:.2g})"
    return f"within twice our spread ({diff:+.3g} vs ±{2 * spread:.2g})"


def comparison(ref: dict, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per reference entry: quantity, published, ours, our spread, spread over, note."""
    rows = []
    for e in ref["entries"]:
        value, spread, over = ours(e, tables)
        rows.append({"quantity": e["quantity"], "published": float(e["value"]), "ours": value,
                     "our_spread_sd": spread, "spread_over": over,
                     "note": note(float(e["value"]), value, spread)})
    return pd.DataFrame(rows)
