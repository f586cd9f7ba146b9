"""Robustness figures: accuracy under weight noise per run. Inputs are the ``robustness`` and
``runs`` tables (the generalisation figures are in ``plots.generalisation``).

Runs are drawn with the encoding of every figure (``encoding.Encoding``, from the runs table).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D

from . import empty_figure, log_axis
from .encoding import Encoding

CHANCE = 0.1


def noise_curves(robustness: pd.DataFrame, runs: pd.DataFrame, split: str = "test"
                 ) -> plt.Figure:
    """Accuracy under Gaussian weight noise against σ (log axis), one panel per mode, one line
    per run: the mean over draws, with a band of ± 1 standard deviation over draws. σ = 0 (the
    trained weights) is a marker at the left edge; the dotted line is chance (0.1)."""
    df = robustness[robustness["split"] == split]
    if df.empty:
        return empty_figure("no weight-noise curves measured (every run skipped)")
    modes = [m for m in ("absolute", "relative") if m in set(df["mode"])]
    measured = runs[runs["run"].isin(set(df["run"]))]
    enc = Encoding(runs)
    stats = (df.groupby(["run", "mode", "sigma"])["accuracy"]
             .agg(["mean", "std", "count"]).reset_index())
    draws = int(stats["count"].max())
    fig, axes = plt.subplots(1, len(modes), figsize=(5.6 * len(modes) + 1.8, 4.3),
                             squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        sel = stats[stats["mode"] == mode]
        positive = sel[sel["sigma"] > 0]["sigma"]
        lo, hi = positive.min(), positive.max()
        left = lo / 10 ** (0.12 * max(math.log10(hi / lo), 1.0))
        for run in enc.order(list(measured["run"])):
            r = sel[sel["run"] == run].sort_values("sigma")
            colour = enc.colour(run)
            pos = r[r["sigma"] > 0]
            sd = pos["std"].fillna(0.0)
            ax.plot(pos["sigma"], pos["mean"], ls=enc.style(run), color=colour, lw=1.2)
            ax.fill_between(pos["sigma"], pos["mean"] - sd, pos["mean"] + sd, color=colour,
                            alpha=0.12, lw=0)
            zero = r[r["sigma"] == 0]
            if len(zero):
                ax.plot([left], zero["mean"], marker=enc.marker(run), color=colour, ms=4,
                        ls="none", clip_on=False)
        ax.axhline(CHANCE, color="k", ls=":", lw=1)
        ax.set_xlim(left / 1.6, hi * 1.3)
        log_axis(ax, "x")
        # σ = 0 has no place on a log axis: its markers sit left of a break, with a tick "0"
        brk = math.sqrt(left * lo)
        ax.axvline(brk, color="0.5", lw=0.8, ls=(0, (2, 2)))
        x_hi = ax.get_xlim()[1]
        major = [t for t in ax.get_xticks() if brk < t <= x_hi]
        minor = [t for t in ax.get_xticks(minor=True) if brk < t <= x_hi]
        ax.set_xticks([left, *major], ["0", *(f"{t:g}" for t in major)])
        ax.set_xticks(minor, minor=True)
        ax.set_ylim(0, 1)
        unit = "weight units" if mode == "absolute" else "fraction of each filter's norm"
        ax.set_xlabel(f"σ ({unit})")
        ax.set_title(f"{mode} noise", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel(f"{split} accuracy (mean ± 1 sd over draws)")
    handles = enc.legend_handles("line") + [
        Line2D([], [], color="0.3", marker="o", ls="none", ms=4, label="σ = 0 (left of the break)"),
        Line2D([], [], color="k", ls=":", label="chance")]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               title=enc.title("line"), title_fontsize=8)
    first = df.iloc[0]
    fig.suptitle(f"Accuracy under Gaussian weight noise: {len(measured)} runs, {draws} draws "
                 f"per σ, on {first['eval_set']}", fontsize=10)
    missing = sorted(set(runs["run"]) - set(df["run"]))
    if missing:
        fig.text(0.5, -0.02, f"not measured ({len(missing)}; diverged or skipped): "
                 + ", ".join(missing), ha="center", va="top", fontsize=7)
    fig.tight_layout()
    return fig
