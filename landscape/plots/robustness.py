"""Robustness and generalisation figures: accuracy under weight noise per run, every measure
against the generalisation gap, and the τ / Ψ chart. Inputs are the ``robustness``, ``runs``,
``measures``, ``correlations`` and ``granulated`` tables.

Runs are drawn with the encoding of every figure (``encoding.Encoding``, from the runs table).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ..generalisation import MEASURES
from . import log_axis
from .encoding import MARKERS, SYMBOL, Encoding

GAP_LABEL = {"gap_error": "gap: test − train error", "gap_loss": "gap: test − train loss"}
CHANCE = 0.1


def _empty(message: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def noise_curves(robustness: pd.DataFrame, runs: pd.DataFrame, split: str = "test"
                 ) -> plt.Figure:
    """Accuracy under Gaussian weight noise against σ (log axis), one panel per mode, one line
    per run: the mean over draws, with a band of ± 1 standard deviation over draws. σ = 0 (the
    trained weights) is a marker at the left edge; the dotted line is chance (0.1)."""
    df = robustness[robustness["split"] == split]
    if df.empty:
        return _empty("no weight-noise curves measured (every run skipped)")
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
        return _empty("no finished run: no measures")
    gap = str(corr["gap"].iloc[0])
    shown = [m for m in MEASURES if measures[m.name].notna().any()]
    if not shown:
        return _empty("no measure was measured on any run")
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
        return _empty("too few finished runs for a rank correlation")
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

