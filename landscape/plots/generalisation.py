"""Generalisation figures: every measure against the generalisation gap, and the τ / Ψ chart.
Inputs are the ``measures``, ``correlations``, ``granulated`` and ``runs`` tables.

Runs are drawn with the encoding of every figure (``encoding.Encoding``, from the runs table).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..generalisation import MEASURES
from . import empty_figure, log_axis
from .encoding import MARKERS, SYMBOL, Encoding

GAP_LABEL = {"gap_error": "gap: test − train error", "gap_loss": "gap: test − train loss"}


def _stat(corr: pd.DataFrame, name: str) -> str:
    r = corr[corr["measure"] == name]
    if r.empty:
        return ""
    r = r.iloc[0]
    sign = "−" if r["sign"] < 0 else ""
    tau = f"τ({sign}μ) n/a" if not np.isfinite(r["tau"]) else f"τ({sign}μ)={r['tau']:+.2f}"
    psi = "Ψ n/a" if not np.isfinite(r["psi"]) else f"Ψ={r['psi']:+.2f}"
    return f"{tau} (n={r['n']}), {psi}"


def measures_vs_gap(measures: pd.DataFrame, corr: pd.DataFrame,
                    runs: pd.DataFrame | None = None) -> plt.Figure:
    """One panel per measure: the measure of every finished run against the generalisation gap
    that ``corr`` ranks (its ``gap`` column, a measures column); colour and marker by the varied
    hyper-parameters, from ``runs`` (the runs table; without it, from ``measures``, which has
    only the finished runs). Each title gives τ of the signed measure with the gap (n runs) and
    Ψ."""
    if measures.empty or corr.empty:
        return empty_figure("no finished run: no measures")
    gap = str(corr["gap"].iloc[0])
    shown = [m for m in MEASURES if measures[m.name].notna().any()]
    if not shown:
        return empty_figure("no measure was measured on any run")
    enc = Encoding(runs if runs is not None and len(runs) else measures)
    ncol = 4
    nrow = math.ceil((len(shown) + 1) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.5 * ncol, 2.9 * nrow), squeeze=False)
    y = measures[gap].to_numpy(float)
    for ax, m in zip(axes.flat, shown, strict=False):
        x = measures[m.name].to_numpy(float)
        flag = measures.get(f"{m.name}_censoring")  # σ½ beyond the grid: hollow, at the bound
        censored = (flag.isin(["left", "right"]).to_numpy() if flag is not None
                    else np.zeros(len(x), dtype=bool))
        for i, run in enumerate(measures["run"]):
            if np.isfinite(x[i]) and np.isfinite(y[i]):
                ax.plot(x[i], y[i], marker=enc.marker(run), color=enc.colour(run), ms=5,
                        ls="none", alpha=0.85, mfc="none" if censored[i] else None)
        finite = x[np.isfinite(x)]
        if finite.size and (finite > 0).all() and finite.max() / finite.min() > 20:
            log_axis(ax, "x")
        else:
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
            ax.locator_params(axis="x", nbins=4)
        ax.set_xlabel(m.label + (f" ({int(censored.sum())} hollow: censored at the σ grid's "
                                 "bound)" if censored.any() else ""), fontsize=8)
        ax.set_title(_stat(corr, m.name), fontsize=8)
        ax.grid(alpha=0.3, which="both")
        ax.tick_params(labelsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel(GAP_LABEL.get(gap, gap), fontsize=8)
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    axes.flat[len(shown)].legend(handles=enc.legend_handles("marker"), loc="center",
                                 fontsize=8, title=enc.title(), title_fontsize=8)
    fig.suptitle(f"Measures against the generalisation gap over {len(measures)} finished runs "
                 "(τ of sign·μ: > 0 means sharper ↔ larger gap; σ½ enters negated)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def correlation_bars(corr: pd.DataFrame, granulated: pd.DataFrame) -> plt.Figure:
    """Kendall τ and granulated Ψ of every measure (signed: > 0 means sharper ↔ larger gap) with
    their bootstrap 95 % intervals, and ψ per hyper-parameter as small markers."""
    if corr.empty or not np.isfinite(corr["tau"]).any():
        return empty_figure("too few finished runs for a rank correlation")
    labels = {m.name: m.label for m in MEASURES}
    order = [m.name for m in MEASURES if m.name in set(corr["measure"])]
    c = corr.set_index("measure").loc[order]
    ypos = np.arange(len(order))[::-1].astype(float)
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(order) + 1.8))
    h = 0.36
    for k, (col, colour, name) in enumerate((("tau", "C0", "τ (all runs)"),
                                             ("psi", "C1", "Ψ (granulated)"))):
        vals = c[col].to_numpy(float)
        lo = c[f"{col}_lo"].to_numpy(float)
        hi = c[f"{col}_hi"].to_numpy(float)
        err = np.vstack([np.where(np.isfinite(lo), vals - lo, 0),
                         np.where(np.isfinite(hi), hi - vals, 0)])
        y = ypos + (h / 2 if k == 0 else -h / 2)
        ax.barh(y, np.nan_to_num(vals), height=h, color=colour, alpha=0.8, label=name,
                xerr=np.clip(np.nan_to_num(err), 0, None), capsize=2,
                error_kw={"lw": 0.8, "ecolor": "0.2"})
    hps = list(dict.fromkeys(granulated["hparam"])) if len(granulated) else []
    for j, hp in enumerate(hps):
        g = granulated[granulated["hparam"] == hp].set_index("measure").reindex(order)
        ax.plot(g["psi"].to_numpy(float), ypos - h / 2, ls="none", marker=MARKERS[j + 1],
                ms=4, color="k", mfc="white", label=f"ψ over {SYMBOL.get(hp, hp)}")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(ypos)
    names = [f"{labels[m]}{' (negated)' if c.loc[m, 'sign'] < 0 else ''}" for m in order]
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("rank correlation with the gap (> 0: sharper ↔ larger gap)")
    ax.grid(alpha=0.3, axis="x")
    handles, names_ = ax.get_legend_handles_labels()
    first_two = [i for i, n in enumerate(names_) if not n.startswith("ψ")]
    rest = [i for i in range(len(names_)) if i not in first_two]
    ax.legend([handles[i] for i in first_two + rest], [names_[i] for i in first_two + rest],
              fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    first = c.iloc[0]
    hp_text = ", ".join(SYMBOL.get(x, x) for x in str(first["hparams"]).split(",") if x) or \
        "none (only seeds vary)"
    gap = GAP_LABEL.get(first["gap"], first["gap"])
    ax.set_title(f"{gap}: n = {int(c['n'].max())} runs, 95 % bootstrap intervals "
                 f"({int(first['n_boot'])} resamples); Ψ over {hp_text}, seed fixed",
                 fontsize=9)
    fig.tight_layout()
    return fig

