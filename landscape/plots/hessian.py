"""Curvature figures: spectral densities, curvature against generalisation, sharpness along
training with the edge-of-stability thresholds. Inputs are the ``hessian_*``,
``sharpness_trajectory`` and ``runs`` tables. Runs are drawn with the encoding of every figure
(``encoding.Encoding``, from the runs table); reference lines are black or grey."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..schemas.hessian import lambda_max_rows
from . import empty_figure, log_axis, run_label
from .encoding import Encoding

ORDER = ["optimizer", "rho", "lr", "batch_size", "seed"]


def _runs_in_order(runs: pd.DataFrame, present) -> pd.DataFrame:
    r = runs[runs["run"].isin(set(present))]
    return r.sort_values(ORDER + ["run"]).reset_index(drop=True)


def _label(row) -> str:
    return f"{run_label(row)} s{row['seed']}"


def _skipped_note(fig, runs: pd.DataFrame, shown) -> None:
    missing = sorted(set(runs["run"]) - set(shown))
    if missing:
        fig.text(0.5, -0.01, f"not measured ({len(missing)}; diverged or skipped): "
                 + ", ".join(missing), ha="center", va="top", fontsize=7)


def density_grid(density: pd.DataFrame, eigs: pd.DataFrame, runs: pd.DataFrame) -> plt.Figure:
    """One panel per run: SLQ spectral density on a log scale, with λ_max and λ_min (Lanczos)
    marked. Panels are ordered by optimiser, η, batch size and seed."""
    order = _runs_in_order(runs, density["run"].unique())
    if order.empty:
        return empty_figure("no spectral density measured (every run skipped)")
    n = len(order)
    ncol = min(4, n)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.7 * nrow), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    enc = Encoding(runs)
    for ax, (_, row) in zip(axes.flat, order.iterrows(), strict=False):
        d = density[density["run"] == row["run"]].sort_values("eigenvalue")
        peak = d["density"].max()
        ax.semilogy(d["eigenvalue"], np.maximum(d["density"], peak * 1e-9), lw=1.2,
                    color=enc.colour(row["run"]))
        ax.set_ylim(peak * 1e-7, peak * 3)
        e = eigs[(eigs["run"] == row["run"]) & (eigs["method"] == "lanczos")]
        for which, style, name in (("largest_algebraic", ":", "λ_max"),
                                   ("smallest_algebraic", "-.", "λ_min")):
            v = e[(e["which"] == which) & (e["k"] == 1)]["eigenvalue"]
            if len(v):
                ax.axvline(v.iloc[0], color="k", ls=style, lw=1,
                           label=f"{name} = {v.iloc[0]:.3g}")
        ax.set_title(_label(row), fontsize=9)
        ax.set_xlabel("eigenvalue λ")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    for ax in axes[:, 0]:
        ax.set_ylabel("density ρ(λ)")
    first = density.iloc[0]
    fig.suptitle(f"Hessian spectral density (SLQ, {int(first['n_starts'])} starts, "
                 f"{int(first['n_steps'])} steps; Gaussian σ from the node count) on "
                 f"{first['eval_set']}", fontsize=10)
    _skipped_note(fig, runs, order["run"])
    fig.tight_layout()
    return fig


def _kendall(x, y) -> str:
    from scipy.stats import kendalltau

    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return f"n={int(ok.sum())}"
    tau, p = kendalltau(x[ok], y[ok])
    return f"τ={tau:+.2f} (p={p:.2g}, n={int(ok.sum())})"


def curvature_vs_generalisation(eigs: pd.DataFrame, trace: pd.DataFrame,
                                runs: pd.DataFrame) -> plt.Figure:
    """λ_max (Lanczos) and tr(H) (Hutchinson, ± 1 standard error) of each run against its test
    accuracy and generalisation gaps; colour and marker by the varied hyper-parameters; Kendall
    τ per panel."""
    lmax = lambda_max_rows(eigs)[["run", "eigenvalue"]].rename(columns={"eigenvalue": "lmax"})
    est = "hutchinson" if (trace["method"] == "hutchinson").any() else "hutchpp"
    tr = trace[trace["method"] == est][["run", "trace", "std_error"]]
    df = runs[runs["status"] == "ok"].merge(lmax, on="run").merge(tr, on="run", how="left")
    if df.empty:
        return empty_figure("no curvature measured (every run skipped)")
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    ys = [("test_acc", "test accuracy"), ("gap_loss", "gap: test − train loss"),
          ("gap_error", "gap: test − train error")]
    xs = [("lmax", None, "λ_max (largest Hessian eigenvalue)"),
          ("trace", "std_error", f"tr(H) ({est}, ± 1 s.e.)")]
    enc = Encoding(runs)
    for i, (xcol, xerr, xlabel) in enumerate(xs):
        for j, (ycol, ylabel) in enumerate(ys):
            ax = axes[i, j]
            for _, r in df.iterrows():
                ax.errorbar([r[xcol]], [r[ycol]], xerr=None if xerr is None else [r[xerr]],
                            fmt=enc.marker(r["run"]), color=enc.colour(r["run"]), ms=6,
                            capsize=2, ls="none")
            if (df[xcol] > 0).all():
                log_axis(ax, "x")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(_kendall(df[xcol].to_numpy(float), df[ycol].to_numpy(float)),
                         fontsize=9)
            ax.grid(alpha=0.3, which="both")
    fig.legend(handles=enc.legend_handles("marker"), loc="center left",
               bbox_to_anchor=(1.0, 0.5), fontsize=8, title=enc.title(), title_fontsize=8)
    eval_set = eigs[eigs["run"].isin(df["run"])]["eval_set"].iloc[0]
    fig.suptitle(f"Curvature vs generalisation over {len(df)} runs; Hessian on {eval_set}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def sharpness_trajectories(sharp: pd.DataFrame, runs: pd.DataFrame) -> plt.Figure:
    """λ_max at every snapshot against epoch (symlog, logarithmic down to the first step), one
    panel per (optimiser, ρ, η), one line per run through every snapshot, dense ones included
    (colour by the varied hyper-parameters; markers at the trajectory snapshots only, so that
    40-odd points per run stay readable; solid, so that the black 2/η (dashed) and (2 + 2β)/η
    (dotted) thresholds stand apart)."""
    df = sharp.merge(runs[["run", "status"]], on="run", how="left")
    if df.empty:
        return empty_figure("no sharpness measured (every run skipped)")
    # panels by the run's radius and η (the table's own lr column follows the schedule)
    panel = runs.set_index("run")[["rho", "lr"]].add_prefix("run_")
    groups = list(df.join(panel, on="run").groupby(["optimizer", "run_rho", "run_lr"], sort=True))
    ncol = min(3, len(groups))
    nrow = math.ceil(len(groups) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.8 * nrow), squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.axis("off")
    enc = Encoding(runs)
    info = runs.set_index("run")
    positive = df.loc[df["epoch"] > 0, "epoch"]
    # symlog's linear part reaches only to the first snapshot after step 0
    linthresh = min(0.1, float(positive.min())) if len(positive) else 0.1
    dense = "trajectory" in df and not df["trajectory"].all()
    for ax, ((opt, rho, lr), g) in zip(axes.flat, groups, strict=False):
        for run in enc.order(list(g["run"].unique())):
            r = g[g["run"] == run].sort_values("epoch")
            diverged = (r["status"] == "diverged").any()
            label = (f"{_label(info.loc[run])} (diverged)"
                     if diverged and run in info.index else None)
            marks = (r["trajectory"].to_numpy(bool) if "trajectory" in r
                     else np.ones(len(r), bool))
            ax.plot(r["epoch"], r["lambda_max"], "-", marker=enc.marker(run), ms=5,
                    markevery=list(np.flatnonzero(marks)), color=enc.colour(run), lw=1.3,
                    label=label)
        ref = g.sort_values("epoch").drop_duplicates("epoch")
        ax.plot(ref["epoch"], ref["two_over_lr"], color="k", ls=(0, (5, 3)), lw=1,
                label=f"2/η = {ref['two_over_lr'].iloc[0]:.3g}")
        if ref["eos_threshold"].notna().any():
            beta = g["momentum"].iloc[0]
            ax.plot(ref["epoch"], ref["eos_threshold"], color="k", ls=":", lw=1.3,
                    label=f"(2+2β)/η = {ref['eos_threshold'].iloc[0]:.3g} (β={beta:g})")
        else:  # landscape.hessian.trajectory.stability_threshold: why there is none
            note = ("Adam: no threshold (preconditioned\nsharpness is another operator)"
                    if opt == "adam" else
                    f"{opt.upper()}: no threshold drawn (the ascent\nstep moves the stability "
                    "limit); 2/η for reference")
            ax.text(0.02, 0.02, note, transform=ax.transAxes, fontsize=7)
        ax.set_xscale("symlog", linthresh=linthresh, linscale=0.4)
        # ticks at 0 and at the decades of the logarithmic part (none inside the linear one)
        decades = range(math.ceil(math.log10(linthresh)),
                        math.floor(math.log10(max(float(df["epoch"].max()), linthresh))) + 1)
        ticks = [0.0] + [10.0 ** k for k in decades]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        log_axis(ax, "y")
        ax.set_xlabel(f"epoch (symlog: linear below {linthresh:.2g})"
                      + ("; markers: trajectory snapshots" if dense else ""))
        ax.set_ylabel("λ_max")
        ax.set_title(f"{opt} ρ={rho:g} η={lr:g}" if rho else f"{opt} η={lr:g}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)
    fig.suptitle(f"Sharpness along training on {df['eval_set'].iloc[0]}", fontsize=10)
    _skipped_note(fig, runs, df["run"].unique())
    fig.legend(handles=enc.legend_handles("marker"), loc="center left",
               bbox_to_anchor=(1.0, 0.5), fontsize=8, title=enc.title(), title_fontsize=8)
    fig.tight_layout()
    return fig


MATRIX_STYLE = {"hessian": ("o", "H (Hessian)"), "ggn": ("s", "G (Gauss–Newton)"),
                "ef": ("^", "F (empirical Fisher)")}


def matrices_figure(cm: pd.DataFrame, density: pd.DataFrame, runs: pd.DataFrame) -> plt.Figure:
    """λ_max and trace (± 1 s.e.) of each curvature matrix per run (runs ordered by optimiser,
    η, batch size and seed; marker by matrix), and the spectral densities of the three matrices
    for the run with the median Hessian λ_max."""
    order = _runs_in_order(runs, cm["run"].unique())
    if order.empty:
        return empty_figure("no curvature matrix measured (every run skipped)")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    pos = {r: i for i, r in enumerate(order["run"])}
    names = [m for m in MATRIX_STYLE if m in set(cm["matrix"])]
    width = 0.22
    for k, m in enumerate(names):
        d = cm[cm["matrix"] == m]
        x = np.array([pos[r] for r in d["run"]]) + (k - (len(names) - 1) / 2) * width
        marker, label = MATRIX_STYLE[m]
        axes[0].plot(x, d["lambda_max"], marker, color=f"C{k}", label=label, ms=6, ls="none")
        axes[1].errorbar(x, d["trace"], yerr=d["trace_std_error"], fmt=marker, color=f"C{k}",
                         label=label, ms=6, capsize=2, ls="none")
    for ax, title in ((axes[0], "λ_max (largest eigenvalue)"),
                      (axes[1], "trace (Hutchinson, ± 1 s.e.)")):
        ax.set_xticks(range(len(order)), [_label(r) for _, r in order.iterrows()], rotation=60,
                      ha="right", fontsize=7)
        ax.set_xlim(-0.6, len(order) - 0.4)
        if (cm["lambda_max" if ax is axes[0] else "trace"] > 0).all():
            log_axis(ax, "y")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    h = cm[cm["matrix"] == "hessian"] if "hessian" in names else cm[cm["matrix"] == names[0]]
    h = h.sort_values("lambda_max")
    run = h["run"].iloc[(len(h) - 1) // 2]
    ax = axes[2]
    for k, m in enumerate(names):
        d = density[(density["run"] == run) & (density["matrix"] == m)].sort_values("eigenvalue")
        if d.empty:
            continue
        peak = d["density"].max()
        ax.semilogy(d["eigenvalue"], np.maximum(d["density"], peak * 1e-9), color=f"C{k}",
                    label=MATRIX_STYLE[m][1], lw=1.2)
        ax.set_ylim(bottom=peak * 1e-7)
    row = order[order["run"] == run].iloc[0]
    ax.set_title(f"spectral density (one-start SLQ), {_label(row)}", fontsize=9)
    ax.set_xlabel("eigenvalue λ")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    first = cm.iloc[0]
    fig.suptitle(f"Hessian, generalised Gauss–Newton and empirical Fisher on {first['eval_set']} "
                 f"(one {int(first['lanczos_steps'])}-step Lanczos run and "
                 f"{int(first['n_probes'])} probes per matrix)", fontsize=10)
    _skipped_note(fig, runs, order["run"])
    fig.tight_layout()
    return fig


def layers_figure(layers: pd.DataFrame, runs: pd.DataFrame) -> plt.Figure:
    """Which layers carry the curvature: λ_max of each layer's diagonal Hessian block (left) and
    its share of the trace (right, block trace / sum over blocks), against the layer (input side
    first), one line per run (colour and marker by the varied hyper-parameters)."""
    h = layers[layers["matrix"] == "hessian"]
    if h.empty:
        h = layers[layers["matrix"] == layers["matrix"].iloc[0]] if len(layers) else h
    order = _runs_in_order(runs, h["run"].unique())
    if order.empty:
        return empty_figure("no layer curvature measured (every run skipped)")
    matrix = h["matrix"].iloc[0]
    names = h.drop_duplicates("position").sort_values("position")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    enc = Encoding(runs)
    for _, row in order.iterrows():
        d = h[h["run"] == row["run"]].sort_values("position")
        share = d["trace"] / d["trace"].sum()
        kw = dict(color=enc.colour(row["run"]), marker=enc.marker(row["run"]), ms=5, lw=1)
        if d["lambda_max"].notna().any():
            axes[0].plot(d["position"], d["lambda_max"], **kw)
        axes[1].plot(d["position"], share, **kw)
    labels = [f"{n}\n({int(p):,} params)" for n, p in zip(names["layer"], names["n_params"],
                                                          strict=True)]
    for ax in axes:
        ax.set_xticks(names["position"], labels, fontsize=7)
        ax.grid(alpha=0.3, which="both")
        ax.set_xlabel("layer (input side first)")
    if (h["lambda_max"] > 0).all():
        log_axis(axes[0], "y")
    axes[0].set_ylabel(f"λ_max of the layer's diagonal block ({matrix})")
    axes[1].set_ylabel("share of the trace (block trace / sum)")
    axes[1].axhline(0, color="k", lw=0.5)
    fig.legend(handles=enc.legend_handles("marker"), loc="center left",
               bbox_to_anchor=(1.0, 0.5), fontsize=8, title=enc.title(), title_fontsize=8)
    fig.suptitle(f"Curvature by layer ({matrix}; blocks of the layer's own weights and bias; "
                 "traces from the matrix's Hutchinson probes, so shares are estimates)",
                 fontsize=10)
    _skipped_note(fig, runs, order["run"])
    fig.tight_layout()
    return fig
