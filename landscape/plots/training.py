"""Training figures: curves per run, and final metrics against hyper-parameters. Runs are drawn
with the encoding of every figure (``encoding.Encoding``, from the runs table)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ..study import HPARAMS
from . import log_axis
from .encoding import Encoding

GROUP = [h for h in HPARAMS if h != "seed"]  # a configuration: every hyper-parameter but the seed


def _encoding(runs: pd.DataFrame | None, fallback: pd.DataFrame) -> Encoding:
    return Encoding(runs if runs is not None and len(runs) else
                    fallback.drop_duplicates("run"))


def training_curves(training: pd.DataFrame, runs: pd.DataFrame | None = None) -> plt.Figure:
    """Train/test loss and test accuracy against epoch, one line per run; colour and line style
    by the varied hyper-parameters, from ``runs`` (the runs table; without it, from
    ``training``). With ``train.stop_at_loss`` (the runs table's ``stop_at_loss``) the target is
    a dotted line on the train-loss panel; runs end where they reached it or at the budget."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    enc = _encoding(runs, training)
    for run in enc.order(list(training["run"].unique())):
        g = training[training["run"] == run].sort_values("epoch")
        kw = {"color": enc.colour(run), "ls": enc.style(run), "lw": 1.4}
        axes[0].plot(g["epoch"], g["train_loss"], **kw)
        axes[1].plot(g["epoch"], g["test_loss"], **kw)
        axes[2].plot(g["epoch"], g["test_acc"], **kw)
    axes[0].set_title("train loss")
    targets = (runs["stop_at_loss"].dropna().unique()
               if runs is not None and "stop_at_loss" in runs else [])
    for target in targets:
        axes[0].axhline(float(target), color="k", ls=":", lw=1.0)
    if len(targets):
        reached = int((runs["stop_reason"] == "target").sum())
        axes[0].set_title(f"train loss (dotted: stop_at_loss; {reached} of "
                          f"{int(runs['stop_at_loss'].notna().sum())} runs reached it)")
    axes[1].set_title("test loss")
    axes[2].set_title("test accuracy")
    for ax in axes[:2]:
        log_axis(ax, "y")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[2].set_ylim(max(0.0, training["test_acc"].quantile(0.05) - 0.05), None)
    fig.legend(handles=enc.legend_handles("line"), loc="center left", bbox_to_anchor=(1.0, 0.5),
               fontsize=8, title=enc.title("line"), title_fontsize=8)
    fig.suptitle(f"Training of {training['run'].nunique()} runs", fontsize=10)
    fig.tight_layout()
    return fig


def final_vs_hparams(runs: pd.DataFrame) -> plt.Figure:
    """Final test accuracy and generalisation gaps against batch size: a point per run (colour
    and marker by the varied hyper-parameters) and a line through the means over seeds of each
    configuration that differs in more than the batch size."""
    ok = runs[runs["status"] == "ok"]
    enc = Encoding(runs.assign(batch_size=0))  # the x axis says the batch size
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    cols = ["test_acc", "gap_loss", "gap_error"]
    keys = [h for h in ("model", "optimizer", "rho", "lr", "weight_decay") if h in runs]
    for _, g in ok.groupby(keys, sort=True):
        first = g.iloc[0]["run"]
        colour = enc.colour(first) if enc.colour_by in keys else "0.4"
        style = enc.style(first) if enc.style_by in keys else "-"
        for ax, col in zip(axes, cols, strict=True):
            mean = g.groupby("batch_size")[col].mean()
            ax.plot(mean.index, mean.values, ls=style, color=colour, lw=1.2, zorder=1)
    for _, r in ok.iterrows():
        for ax, col in zip(axes, cols, strict=True):
            ax.plot(r["batch_size"], r[col], marker=enc.marker(r["run"]), ls="none", ms=6,
                    color=enc.colour(r["run"]), alpha=0.85, zorder=2)
    for ax, title in zip(axes, ["final test accuracy", "gap: test − train loss",
                                "gap: test − train error"], strict=False):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ok["batch_size"].unique()))
        ax.get_xaxis().set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    bad = runs[runs["status"] != "ok"]
    if len(bad):
        fig.suptitle(f"{len(bad)} diverged run(s) not shown: " + ", ".join(bad["run"]), fontsize=9)
    handles = enc.legend_handles("marker") + [
        Line2D([], [], color="0.4", lw=1.2, label="mean over seeds")]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               title=enc.title(), title_fontsize=8)
    fig.tight_layout()
    return fig


def summary_markdown(runs: pd.DataFrame) -> str:
    """A table of final metrics (mean ± std over seeds), for logs and the README."""
    ok = runs[runs["status"] == "ok"]
    g = ok.groupby(GROUP)
    agg = g.agg(n=("seed", "count"), test_acc=("test_acc", "mean"),
                test_acc_sd=("test_acc", "std"), gap_loss=("gap_loss", "mean"))
    lines = ["| model | opt | η | B | wd | seeds | test acc | gap (loss) |", "|" + "---|" * 8]
    for k, r in agg.iterrows():
        sd = 0.0 if np.isnan(r.test_acc_sd) else r.test_acc_sd
        lines.append(f"| {k[0]} | {k[1]} | {k[2]:g} | {k[3]} | {k[4]:g} | {int(r.n)} | "
                     f"{r.test_acc:.4f} ± {sd:.4f} | {r.gap_loss:.4f} |")
    return "\n".join(lines)
