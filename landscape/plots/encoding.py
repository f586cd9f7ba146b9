"""One encoding of runs for every figure, built from the runs table.

Colour = the first hyper-parameter the study varies, in the order η, batch size, weight decay,
optimiser, model, seed; marker and line style = the second (the first again when only one
varies, so that the figures still read without colour). Built from the whole runs table, so a run
has the same colour, marker and line style in every figure of a study (also where only some runs
are shown) and a value always the same colour.

Colours are sampled from viridis, whose lightness rises steadily from dark to light: values are
in their order (small η dark, large η light), and they stay apart when printed in greyscale.
The light yellow end is left out so that thin lines stay visible on white.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..labels import optimizer_label
from ..study import varied_hparams

SYMBOL = {"lr": "η", "batch_size": "B", "weight_decay": "wd", "optimizer": "opt", "rho": "ρ",
          "model": "model", "seed": "seed"}
ORDER = ["lr", "batch_size", "weight_decay", "optimizer", "rho", "model", "seed"]
MARKERS = "osD^vP*Xh<>p"
STYLES = ["-", "--", ":", "-.", (0, (5, 1)), (0, (1, 3)), (0, (3, 1, 1, 1))]
CMAP = "viridis"
SPAN = (0.0, 0.8)  # the part of CMAP used: dark purple to green
SINGLE = 0.3  # the position of the one colour when nothing varies
NEUTRAL = "0.55"  # runs that are not in the runs table


def value_text(v) -> str:
    """A hyper-parameter value as the legends write it (0.05, 256, sgd)."""
    return f"{v:g}" if isinstance(v, (int, float, np.integer, np.floating)) else str(v)


def _sortable(v):
    return (0, float(v), "") if isinstance(v, (int, float, np.integer, np.floating)) \
        else (1, 0.0, str(v))


class Encoding:
    """Colour, marker and line style of each run from the hyper-parameters its study varies.

    ``runs`` is the runs table (or any table with a ``run`` column and the hyper-parameter
    columns). The methods take a run id or a row (a mapping with the hyper-parameter columns);
    a run the table does not know is drawn in neutral grey with a circle and a solid line.
    """

    def __init__(self, runs: pd.DataFrame) -> None:
        self._fold = {"optimizer", "rho"} <= set(runs) and bool((runs["rho"].fillna(0) != 0).any())
        if self._fold:
            # one channel for the optimiser with its radius ('sam ρ=0.2'): ρ means nothing alone
            runs = runs.assign(optimizer=[optimizer_label(o, r) for o, r in
                                          zip(runs["optimizer"], runs["rho"].fillna(0),
                                              strict=True)])
        varied = varied_hparams(runs, ORDER)
        self.colour_by = varied[0] if varied else None
        self.style_by = varied[1] if len(varied) > 1 else self.colour_by
        self.other = varied[2:]
        cvals = self._values(runs, self.colour_by)
        svals = self._values(runs, self.style_by)
        cmap = plt.get_cmap(CMAP)
        if len(cvals) > 1:
            where = np.linspace(*SPAN, len(cvals))
        else:
            where = [SINGLE] * len(cvals)
        self.colours = {v: cmap(float(p)) for v, p in zip(cvals, where, strict=True)}
        self.markers = {v: MARKERS[i % len(MARKERS)] for i, v in enumerate(svals)}
        self.styles = {v: STYLES[i % len(STYLES)] for i, v in enumerate(svals)}
        self._default = cmap(SINGLE)
        keys = [h for h in ORDER if h in runs]
        self.rows = ({r["run"]: {k: r[k] for k in keys} for _, r in runs.iterrows()}
                     if "run" in runs else {})

    @staticmethod
    def _values(runs: pd.DataFrame, h: str | None) -> list:
        return sorted(runs[h].dropna().unique(), key=_sortable) if h else []

    def _row(self, run_or_row):
        if isinstance(run_or_row, str):
            return self.rows.get(run_or_row)
        if self._fold and "rho" in run_or_row:
            return {**dict(run_or_row), "optimizer": optimizer_label(run_or_row["optimizer"],
                                                                     run_or_row["rho"] or 0)}
        return run_or_row

    def colour(self, run_or_row) -> tuple | str:
        """The run's colour (RGBA), from the value of ``colour_by``."""
        row = self._row(run_or_row)
        if row is None:
            return NEUTRAL
        if self.colour_by is None:
            return self._default
        return self.colours.get(row.get(self.colour_by), NEUTRAL)

    def marker(self, run_or_row) -> str:
        """The run's marker, from the value of ``style_by``."""
        row = self._row(run_or_row)
        if row is None or self.style_by is None:
            return "o"
        return self.markers.get(row.get(self.style_by), "o")

    def style(self, run_or_row):
        """The run's line style, from the value of ``style_by``."""
        row = self._row(run_or_row)
        if row is None or self.style_by is None:
            return "-"
        return self.styles.get(row.get(self.style_by), "-")

    def order(self, run_ids) -> list[str]:
        """``run_ids`` sorted by the hyper-parameters (then run id); unknown runs last."""
        known = [r for r in run_ids if r in self.rows]
        known.sort(key=lambda r: ([_sortable(self.rows[r][h]) for h in ORDER
                                   if h in self.rows[r]], r))
        return known + sorted(r for r in run_ids if r not in self.rows)

    def legend_handles(self, kind: str = "marker") -> list:
        """Proxy artists for a legend: one per colour value, then one per marker (``kind``
        "marker") or line style ("line") value; one per value with both when colour and style
        show the same hyper-parameter."""
        out = []
        if self.colour_by is None:
            return out
        same = self.style_by == self.colour_by
        for v, c in self.colours.items():
            label = f"{SYMBOL[self.colour_by]} = {value_text(v)}"
            if same:
                out.append(Line2D([], [], color=c, marker=self.markers[v], ls="none", ms=6,
                                  label=label) if kind == "marker"
                           else Line2D([], [], color=c, ls=self.styles[v], lw=2, label=label))
            else:
                out.append(Patch(color=c, label=label) if kind == "marker"
                           else Line2D([], [], color=c, lw=2.5, label=label))
        if not same:
            for v in self.markers:
                label = f"{SYMBOL[self.style_by]} = {value_text(v)}"
                if kind == "marker":
                    out.append(Line2D([], [], color="0.3", marker=self.markers[v], ls="none",
                                      label=label))
                else:
                    out.append(Line2D([], [], color="0.3", ls=self.styles[v], label=label))
        return out

    def title(self, kind: str = "marker") -> str:
        """What the encoding shows, for the legend's title: "colour η; marker B" (``kind``
        "marker") or "colour η; line style B" ("line")."""
        cue = "marker" if kind == "marker" else "line style"
        parts = []
        if self.colour_by and self.style_by == self.colour_by:
            parts.append(f"colour and {cue} {SYMBOL[self.colour_by]}")
        else:
            if self.colour_by:
                parts.append(f"colour {SYMBOL[self.colour_by]}")
            if self.style_by:
                parts.append(f"{cue} {SYMBOL[self.style_by]}")
        if self.other:
            parts.append("also varied: " + ", ".join(SYMBOL[h] for h in self.other))
        return "; ".join(parts) or "one configuration"
