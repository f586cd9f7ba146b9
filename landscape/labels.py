"""How runs are named where people read them (legends, panel titles, findings sentences).

Kept apart from ``landscape.study``: the run table is an input of every job, a label only of
the figures and pages, so rewording a label reruns plots and the findings page, not training.
"""

from __future__ import annotations


def optimizer_label(optimizer: str, rho: float = 0.0) -> str:
    """The optimiser as legends and sentences name it: 'sgd', or with its radius 'sam ρ=0.05'."""
    return f"{optimizer} ρ={rho:g}" if rho else str(optimizer)


def optimizer_of(row) -> str:
    """``optimizer_label`` of a run-table row (a row without ``rho`` is a run without a radius)."""
    return optimizer_label(row["optimizer"], row.get("rho", 0) or 0)
