"""Helpers shared by stage entry points (I/O edge only; no maths)."""

from __future__ import annotations

import json

from ..tables import empty, write_table


def section(params_json: str, *name: str) -> dict:
    """A stage's ``--params`` JSON (one config section) with the schema's defaults filled in;
    the schema is the only place defaults are written, so stages index keys directly."""
    from ..schema import with_defaults

    return with_defaults(json.loads(params_json), *name)


def plot_options(params_json: str) -> dict:
    """The ``plots`` section, with matplotlib's style applied."""
    import matplotlib.pyplot as plt

    params = section(params_json, "plots")
    plt.style.use(params["style"])
    return params


def skip_reason(meta: dict) -> str | None:
    """Why a per-run geometry stage must skip this run (None: go ahead)."""
    if meta.get("status", "ok") != "ok":
        return (f"run {meta.get('run')} {meta.get('status')} at step {meta.get('diverged_step')}; "
                "its geometry is not measured")
    return None


def write_skipped(outputs: dict[str, str], stage: str, run: str, reason: str) -> None:
    """Write each output table empty, with the run and the skip reason in its metadata (the
    gather carries them on to ``skipped.parquet``), and say so."""
    for name, path in outputs.items():
        write_table(empty(name), name, path,
                    extra_meta={"skipped": reason, "stage": stage, "run": run})
    print(f"{stage}: skipped: {reason}")
