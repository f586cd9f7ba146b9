"""Figures: one module per family. Plot functions take DataFrames (read from tables) and return
matplotlib figures; they never read checkpoints or models."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import atomic_path  # noqa: E402


def save(fig, path: str | Path, dpi: int = 150) -> None:
    """Save a figure atomically (format from the suffix) and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)


def run_label(row) -> str:
    """Short legend label of a run: optimiser, η and batch size (seed separate)."""
    return f"{row['optimizer']} η={row['lr']:g} B={row['batch_size']}"
