"""Training figures: curves per run, and final metrics against hyper-parameters."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import log_axis

GROUP = ["model", "optimizer", "lr", "batch_size", "weight_decay"]


def training_curves(training: pd.DataFrame) -> plt.Figure:
    """Train/test loss and accuracy against epoch; one colour per configuration, seeds dashed."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    configs = training[GROUP].drop_duplicates().sort_values(GROUP).reset_index(drop=True)
    cmap = plt.get_cmap("tab20" if len(configs) > 10 else "tab10")
    for i, cfg in configs.iterrows():
        sel = (training[GROUP] == cfg.values).all(axis=1)
        colour = cmap(i % cmap.N)
        for j, (_seed, g) in enumerate(training[sel].groupby("seed")):
            g = g.sort_values("epoch")
            label = (f"{cfg['model']} {cfg['optimizer']} η={cfg['lr']:g} B={cfg['batch_size']}"
                     + (f" wd={cfg['weight_decay']:g}" if cfg["weight_decay"] else "")
                     if j == 0 else None)
            ls = "-" if j == 0 else "--"
            axes[0].plot(g["epoch"], g["train_loss"], ls, color=colour, label=label)
            axes[1].plot(g["epoch"], g["test_loss"], ls, color=colour)
            axes[2].plot(g["epoch"], g["test_acc"], ls, color=colour)
    axes[0].set_title("train loss")
    axes[1].set_title("test loss")
    axes[2].set_title("test accuracy")
    for ax in axes[:2]:
        log_axis(ax, "y")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[2].set_ylim(max(0.0, training["test_acc"].quantile(0.05) - 0.05), None)
    fig.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               title="configuration (seeds: solid, dashed …)")
    fig.tight_layout()
    return fig


def final_vs_hparams(runs: pd.DataFrame) -> plt.Figure:
    """Final test accuracy and generalisation gap against batch size, one line per (optimiser, η);
    points are seeds, lines their mean."""
    ok = runs[runs["status"] == "ok"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    keys = ["model", "optimizer", "lr"]
    for i, (k, g) in enumerate(ok.groupby(keys)):
        colour = plt.get_cmap("tab10")(i % 10)
        label = f"{k[0]} {k[1]} η={k[2]:g}"
        for ax, col in zip(axes, ["test_acc", "gap_loss", "gap_error"], strict=False):
            ax.scatter(g["batch_size"], g[col], color=colour, s=18, alpha=0.7)
            mean = g.groupby("batch_size")[col].mean()
            ax.plot(mean.index, mean.values, "-o", color=colour, label=label, ms=4)
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
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def summary_markdown(runs: pd.DataFrame) -> str:
    """A table of final metrics (mean ± std over seeds), for logs and the README."""
    ok = runs[runs["status"] == "ok"]
    g = ok.groupby(["model", "optimizer", "lr", "batch_size", "weight_decay"])
    agg = g.agg(n=("seed", "count"), test_acc=("test_acc", "mean"),
                test_acc_sd=("test_acc", "std"), gap_loss=("gap_loss", "mean"))
    lines = ["| model | opt | η | B | wd | seeds | test acc | gap (loss) |", "|" + "---|" * 8]
    for k, r in agg.iterrows():
        sd = 0.0 if np.isnan(r.test_acc_sd) else r.test_acc_sd
        lines.append(f"| {k[0]} | {k[1]} | {k[2]:g} | {k[3]} | {k[4]:g} | {int(r.n)} | "
                     f"{r.test_acc:.4f} ± {sd:.4f} | {r.gap_loss:.4f} |")
    return "\n".join(lines)
