"""Helpers shared by stage entry points (I/O edge only; no maths)."""

from __future__ import annotations

from ..tables import empty, write_table


def skip_reason(meta: dict) -> str | None:
    """Why a per-run geometry stage must skip this run (None: go ahead)."""
    if meta.get("status", "ok") != "ok":
        return (f"run {meta.get('run')} {meta.get('status')} at step {meta.get('diverged_step')}; "
                "its geometry is not measured")
    return None


def write_skipped(outputs: dict[str, str], stage: str, reason: str) -> None:
    """Write each output table empty, with the skip reason in its metadata, and say so."""
    for name, path in outputs.items():
        write_table(empty(name), name, path, extra_meta={"skipped": reason, "stage": stage})
    print(f"{stage}: skipped: {reason}")
