"""Loss-landscape slice figures (Li et al. 2018), drawn from the slice tables and runs.parquet.

* ``curves_1d``: loss and accuracy along 1-D slices (random direction; init→final line), train
  solid and test dashed, runs in the colour and marker of every figure (``encoding.Encoding``).
* ``plane_contours``: one run's planes (random; PCA) as filled contours plus contour lines, train
  and test, with the projected training path on the PCA plane (markers coloured by the path's
  actual loss on the same scale, so a mismatch shows where the plane misrepresents the path).
* ``surface``: one run's random plane as a 3-D surface of log₁₀ train loss.
* ``small_multiples``: every run's planes on one shared colour scale, runs arranged by
  hyper-parameters (columns: batch size).

Every figure says the losses are over the evaluation subsets recorded in the tables.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import colors
from matplotlib.ticker import FuncFormatter, MaxNLocator

from . import log_axis, run_label
from .encoding import Encoding

CMAP = "viridis"
PLANE_TITLES = {"random": "random plane (filter-normalised)", "pca": "trajectory PCA plane",
                "hessian": "Hessian plane (v₁, v₂)"}
KIND_TITLES = {"random": "random direction", "init_to_final": "initialisation → trained weights",
               "hessian_v1": "top Hessian eigenvector v₁", "gradient": "loss gradient"}


def _labels(runs: pd.DataFrame, run_ids) -> dict[str, str]:
    """Legend label per run id: optimiser, η, batch size, seed and test accuracy."""
    out = {}
    idx = runs.set_index("run") if len(runs) else None
    for r in run_ids:
        if idx is not None and r in idx.index:
            row = idx.loc[r]
            out[r] = f"{run_label(row)} s{int(row['seed'])} (test acc {row['test_acc']:.3f})"
        else:
            out[r] = r
    return out


def _order(runs: pd.DataFrame, run_ids) -> list[str]:
    """Runs sorted by model, optimiser, η, weight decay, seed, batch size (ids if unknown)."""
    keys = ["model", "optimizer", "rho", "lr", "weight_decay", "seed", "batch_size"]
    known = runs[runs["run"].isin(run_ids)].sort_values(keys)["run"].tolist() if len(runs) else []
    return known + sorted(set(run_ids) - set(known))


def _plain_log_axis(ax) -> None:
    """Log-scale y axis with plain, non-overlapping tick labels. Call after plotting."""
    log_axis(ax, "y")


def _eval_note(df: pd.DataFrame) -> str:
    sets = sorted(df["eval_set"].unique()) if len(df) else []
    return "losses over " + ", ".join(sets) if sets else ""


def curves_1d(slice_1d: pd.DataFrame, runs: pd.DataFrame) -> plt.Figure:
    """Loss (log scale) and accuracy along the 1-D slices: a row per direction kind."""
    kinds = [k for k in KIND_TITLES if k in set(slice_1d["direction"])]
    kinds = kinds or ["random"]
    fig, axes = plt.subplots(len(kinds), 2, figsize=(12, 3.8 * len(kinds)), squeeze=False)
    order = _order(runs, slice_1d["run"].unique())
    enc = Encoding(runs)
    for row, kind in enumerate(kinds):
        sel = slice_1d[slice_1d["direction"] == kind]
        for run in order:
            kw = {"color": enc.colour(run), "marker": enc.marker(run), "ms": 4, "lw": 1.4}
            for (idx, split), g in sel[sel["run"] == run].groupby(["direction_index", "split"]):
                g = g.sort_values("alpha")
                kw.update(ls="-" if split == "train" else "--", alpha=1.0 if idx == 0 else 0.5,
                          markevery=max(1, len(g) // 8), mfc="white" if split == "test" else None)
                axes[row, 0].plot(g["alpha"], g["loss"], **kw)
                axes[row, 1].plot(g["alpha"], g["accuracy"], **kw)
        if kind == "random":
            norm_ = ", ".join(sorted(sel["normalization"].unique()))
            xlabel = f"α along a random direction ({norm_}-normalised); 0 = trained weights"
        elif kind in ("hessian_v1", "gradient"):
            short = "v₁" if kind == "hessian_v1" else "the gradient"
            xlabel = f"α along {short} (length s: ½λ₁s² = hessian_rise); 0 = trained weights"
        else:
            xlabel = "t on θ₀ + t·(θ_T − θ₀); 0 = initialisation, 1 = trained weights"
        for ax, what in zip(axes[row], ("loss (cross-entropy)", "accuracy"), strict=True):
            ax.set_xlabel(xlabel, fontsize=9)
            ax.set_ylabel(what)
            ax.grid(alpha=0.3)
            ax.axvline(1.0 if kind == "init_to_final" else 0.0, color="grey", lw=0.8, ls=":")
            if kind == "init_to_final":
                ax.axvline(0.0, color="grey", lw=0.8, ls=":")
        _plain_log_axis(axes[row, 0])
        title = KIND_TITLES[kind]
        axes[row, 0].set_title(f"{title}: loss")
        axes[row, 1].set_title(f"{title}: accuracy")
    handles = enc.legend_handles("marker") + [
        plt.Line2D([], [], color="k", ls="-", label="train (solid)"),
        plt.Line2D([], [], color="k", ls="--", marker="o", mfc="white",
                   label="test (dashed, open markers)")]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               title=enc.title(), title_fontsize=8)
    fig.suptitle(f"1-D loss-landscape slices ({_eval_note(slice_1d)})", fontsize=10)
    fig.tight_layout()
    return fig


def _grid(df: pd.DataFrame, value: str = "loss") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alphas [A], betas [B], values [B, A]) of one plane and split."""
    piv = df.pivot_table(index="beta", columns="alpha", values=value, aggfunc="first")
    return piv.columns.to_numpy(), piv.index.to_numpy(), piv.to_numpy()


def loss_norm(values: np.ndarray) -> colors.LogNorm:
    """A log colour scale covering the finite, positive losses in ``values``."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return colors.LogNorm(1e-2, 1.0)
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo * 1.0001:
        hi = lo * 1.01
    return colors.LogNorm(lo, hi)


def _draw_plane(ax, df: pd.DataFrame, norm_: colors.LogNorm, n_lines: int = 12):
    a, b, z = _grid(df)
    z = np.clip(z, norm_.vmin, norm_.vmax)
    fill = np.geomspace(norm_.vmin, norm_.vmax, 40)
    cf = ax.contourf(a, b, z, levels=fill, norm=norm_, cmap=CMAP, extend="neither")
    lines = np.geomspace(norm_.vmin, norm_.vmax, n_lines)
    cs = ax.contour(a, b, z, levels=lines, colors="white", linewidths=0.6, alpha=0.8)
    ax.clabel(cs, cs.levels[::2], fmt="%.2g", fontsize=6)
    ax.plot([0], [0], marker="*", color="red", ms=10, mec="white", mew=0.6, ls="none")
    return cf


def _draw_path(ax, traj: pd.DataFrame, norm_: colors.LogNorm) -> None:
    t = traj.sort_values("snapshot")
    ax.plot(t["alpha"], t["beta"], "-", color="white", lw=1.2, alpha=0.9)
    ax.scatter(t["alpha"], t["beta"], c=np.clip(t["loss"], norm_.vmin, norm_.vmax), norm=norm_,
               cmap=CMAP, s=30, edgecolors="white", linewidths=0.8, zorder=3)
    first = t.iloc[0]
    ax.annotate("init", (first["alpha"], first["beta"]), textcoords="offset points",
                xytext=(4, 4), color="white", fontsize=7)
    for _, r in t.iterrows():
        if float(r["epoch"]).is_integer() and r["epoch"] > 0:
            ax.annotate(f"ep {int(r['epoch'])}", (r["alpha"], r["beta"]),
                        textcoords="offset points", xytext=(4, -9), color="white", fontsize=6)


def _pca_labels(ax, pca: pd.DataFrame, run: str) -> None:
    p = pca[pca["run"] == run].set_index("component")["explained_variance_ratio"]
    ax.set_xlabel(f"α on PC1 ({p.get(1, np.nan):.1%} of path variance)")
    ax.set_ylabel(f"β on PC2 ({p.get(2, np.nan):.1%})")


def plane_contours(slice_2d: pd.DataFrame, trajectory: pd.DataFrame, pca: pd.DataFrame,
                   runs: pd.DataFrame, run: str) -> plt.Figure:
    """Filled contours + contour lines of one run's planes; rows train/test, columns planes."""
    df = slice_2d[slice_2d["run"] == run]
    planes = [p for p in PLANE_TITLES if p in set(df["plane"])]
    if not planes:
        return placeholder(run, "no 2-D slices for this run (skipped or not configured)")
    fig, axes = plt.subplots(2, len(planes), figsize=(5.4 * len(planes), 9.0), squeeze=False)
    traj = trajectory[trajectory["run"] == run]
    for col, plane in enumerate(planes):
        sel = df[df["plane"] == plane]
        norm_ = loss_norm(np.concatenate([sel["loss"].to_numpy(),
                                          traj["loss"].to_numpy() if plane == "pca" else []]))
        for row, split in enumerate(("train", "test")):
            ax = axes[row, col]
            cf = _draw_plane(ax, sel[sel["split"] == split], norm_)
            if plane == "pca":
                _draw_path(ax, traj[traj["split"] == split], norm_)
                _pca_labels(ax, pca, run)
                off = traj["off_plane"].max() if len(traj) else np.nan
                ax.text(0.01, 0.01, f"max distance of path from plane: {off:.3g}",
                        transform=ax.transAxes, fontsize=7, color="white", va="bottom")
            else:
                ax.set_xlabel("α (direction 1)")
                ax.set_ylabel("β (direction 2)")
            ax.set_title(f"{PLANE_TITLES[plane]}: {split} loss", fontsize=10)
            fig.colorbar(cf, ax=ax, label=f"{split} loss (log scale)", format="%.2g")
    fig.suptitle(f"{_labels(runs, [run])[run]}\n{_eval_note(df)}; ★ = trained weights",
                 fontsize=10)
    fig.tight_layout()
    return fig


def surface(slice_2d: pd.DataFrame, runs: pd.DataFrame, run: str, plane: str = "random",
            split: str = "train") -> plt.Figure:
    """3-D surface of log₁₀ loss over one plane of one run (z ticks in loss units)."""
    df = slice_2d[(slice_2d["run"] == run) & (slice_2d["plane"] == plane)
                  & (slice_2d["split"] == split)]
    if not len(df):
        return placeholder(run, f"no {plane}-plane slice for this run")
    a, b, z = _grid(df)
    aa, bb = np.meshgrid(a, b)
    lz = np.log10(np.clip(z, 1e-12, None))
    fig = plt.figure(figsize=(7.5, 6))
    ax = fig.add_subplot(projection="3d")
    norm_ = colors.Normalize(lz.min(), lz.max())
    ax.plot_surface(aa, bb, lz, cmap=CMAP, norm=norm_, rstride=1, cstride=1, linewidth=0.2,
                    edgecolor="k", alpha=0.95)
    ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)
             if lz.min() - 0.05 <= np.log10(t) <= lz.max() + 0.05]
    if len(ticks) < 2:  # a span of less than a 1-2-5 step: round losses inside it
        lo, hi = 10 ** lz.min(), 10 ** lz.max()
        ticks = [t for t in MaxNLocator(nbins=4).tick_values(lo, hi) if lo <= t <= hi and t > 0]
    if len(ticks) >= 2:  # z is log₁₀ loss: the labels are losses
        ax.set_zticks(np.log10(ticks))
        ax.set_zticklabels([f"{t:.4g}" for t in ticks])
    else:
        ax.zaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{10 ** v:.3g}"))
    ax.set_xlabel("α (direction 1)")
    ax.set_ylabel("β (direction 2)")
    ax.set_zlabel(f"{split} loss (log scale)")
    ax.view_init(elev=32, azim=-55)
    ax.set_title(f"{_labels(runs, [run])[run]}\n{PLANE_TITLES[plane]}, {_eval_note(df)}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def small_multiples(slice_2d: pd.DataFrame, trajectory: pd.DataFrame, pca: pd.DataFrame,
                    runs: pd.DataFrame, split: str = "train") -> plt.Figure:
    """Every run's planes, one shared log colour scale per plane: for each plane, a block of rows
    (one per model/optimiser/η/weight decay/seed) and a column per batch size."""
    df = slice_2d[slice_2d["split"] == split]
    traj = trajectory[trajectory["split"] == split]
    run_ids = list(df["run"].unique())
    if not run_ids:
        return placeholder("all runs", "no 2-D slices (every run skipped?)")
    info = runs.set_index("run") if len(runs) else pd.DataFrame()
    group_keys = ["model", "optimizer", "rho", "lr", "weight_decay", "seed"]

    def key(r):
        if r in getattr(info, "index", []):
            row = info.loc[r]
            return tuple(row[k] for k in group_keys), int(row["batch_size"])
        return (r,), 0

    groups = sorted({key(r)[0] for r in run_ids}, key=str)
    batches = sorted({key(r)[1] for r in run_ids})
    planes = [p for p in PLANE_TITLES if p in set(df["plane"])]
    nrows, ncols = len(planes) * len(groups), len(batches)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols + 1.5, 3.2 * nrows),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_visible(False)
    for pi, plane in enumerate(planes):
        values = df[df["plane"] == plane]["loss"].to_numpy()
        if plane == "pca":
            values = np.concatenate([values, traj["loss"].to_numpy()])
        norm_ = loss_norm(values)
        cf = None
        for r in run_ids:
            g, bsz = key(r)
            ax = axes[pi * len(groups) + groups.index(g), batches.index(bsz)]
            ax.set_visible(True)
            sel = df[(df["run"] == r) & (df["plane"] == plane)]
            if not len(sel):
                continue
            cf = _draw_plane(ax, sel, norm_, n_lines=10)
            if plane == "pca":
                _draw_path(ax, traj[traj["run"] == r], norm_)
            ax.set_title(_labels(runs, [r])[r].replace(" (", "\n("), fontsize=7)
            ax.tick_params(labelsize=6)
            ax.set_xlabel("α" if plane == "random" else "α (PC1)", fontsize=7, labelpad=1)
            ax.set_ylabel(f"{PLANE_TITLES[plane].split(' (')[0]}\n"
                          + ("β" if plane == "random" else "β (PC2)"), fontsize=7, labelpad=1)
        if cf is not None:
            block = axes[pi * len(groups):(pi + 1) * len(groups), :]
            fig.colorbar(cf, ax=block, label=f"{split} loss, {plane} plane\n(shared log scale)",
                         format="%.2g", shrink=0.9)
    fig.suptitle(f"{split} loss on each run's planes, one colour scale per plane "
                 f"({_eval_note(df)}); ★ = trained weights", fontsize=10)
    return fig


def placeholder(run: str, reason: str) -> plt.Figure:
    """A small figure stating why a run has no slice figure (e.g. it diverged)."""
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{run}\n{reason}", ha="center", va="center", fontsize=10, wrap=True)
    return fig
