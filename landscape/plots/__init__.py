"""Figures: one module per family. Plot functions take DataFrames (read from tables) and return
matplotlib figures; they never read checkpoints or models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import atomic_path  # noqa: E402
from ..labels import optimizer_of  # noqa: E402


def save(fig, path: str | Path, dpi: int = 150, formats: Sequence[str] = ()) -> list[Path]:
    """Save a figure atomically (format from the suffix) and close it; warn (in the job's log)
    when tick labels overlap at the produced size.

    ``formats`` (the config's ``plots.formats``, e.g. ``["png", "pdf"]``) adds a copy of the
    same figure in each other format, next to ``path`` with that suffix (figures/x.png →
    figures/x.pdf); the workflow's ``vector_copies`` names the same files. Returns the files
    written, ``path`` first.
    """
    path = Path(path)
    clashes = overlapping_tick_labels(fig)
    if clashes:
        print(f"warning: {path.name}: overlapping tick labels {clashes[:3]}")
    fig.text(0.999, 0.001, machine_stamp(), ha="right", va="bottom", fontsize=5, color="0.55")
    own = path.suffix.lstrip(".") or "png"
    written = []
    for fmt in [own, *(f for f in dict.fromkeys(formats) if f != own)]:
        out = path if fmt == own else path.with_suffix(f".{fmt}")
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=fmt)
        written.append(out)
    plt.close(fig)
    return written


def machine_stamp() -> str:
    """Where and when a figure was drawn, e.g. 'vm · x86_64, 2 CPUs · 2026-11-28' (plots read
    tables only, so the GPU of the run is not known here; see the job logs)."""
    import datetime
    import os
    import platform

    return (f"{platform.node()} · {platform.machine()}, {os.cpu_count()} CPUs · "
            f"{datetime.date.today().isoformat()}")


def empty_figure(message: str) -> plt.Figure:
    """A small figure that says why there is nothing to draw (a rule's PNG always exists)."""
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def log_axis(ax, which: str = "x", base: float = 10) -> None:
    """A log scale whose tick labels stay readable at any span.

    Matplotlib labels the minor ticks of an axis that spans less than a decade with strings like
    "2×10⁰", which run into each other; here minor ticks are never labelled and the major ticks
    are 1-2-5 per decade (plain numbers such as 0.02, 5, 200) when the span is short.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log", base=base)
    lo, hi = (ax.get_xlim() if which == "x" else ax.get_ylim())
    decades = np.log10(max(hi, 1e-300) / max(lo, 1e-300)) if lo > 0 else 10.0
    subs = (1.0, 2.0, 5.0) if decades < 2.5 and base == 10 else (1.0,)
    axis.set_major_locator(LogLocator(base=base, subs=subs, numticks=12))
    axis.set_minor_locator(LogLocator(base=base, subs=np.arange(2, 10) * 1.0, numticks=12))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def overlapping_tick_labels(fig) -> list[tuple[str, str]]:
    """Pairs of visible tick labels (text) whose drawn boxes overlap, over every axis of ``fig``."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    clashes = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels(which="both")
                      if t.get_visible() and t.get_text()]
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    a, b = boxes[i][1], boxes[j][1]
                    if a.overlaps(b) and a.width > 0 and b.width > 0:
                        clashes.append((boxes[i][0], boxes[j][0]))
    return clashes


def run_label(row) -> str:
    """Short legend label of a run: optimiser (with SAM's radius), η and batch size (seed
    separate)."""
    return f"{optimizer_of(row)} η={row['lr']:g} B={row['batch_size']}"
