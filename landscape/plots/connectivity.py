"""Mode-connectivity figures from the ``connectivity``, ``barriers``, ``spawn_barriers`` and
``runs`` tables.

* ``path_curves``: loss and error along t for every method (linear, aligned by weight or by
  activation matching, aligned with REPAIR, Bézier), one row per pair (train solid, test
  dashed).
* ``barrier_chart``: loss and error barriers of every pair, grouped bars per method, train and
  test side by side; the legend gives each method's mean over pairs.
* ``spawn_chart``: loss and error barrier between spawned children against the spawn step k
  (symmetric log axis, so that k = 0 is on it).

One colour per method in the path and barrier figures (``METHOD_COLOURS``; with line widths and
bar hatches as a second cue); the spawning figure draws runs in the colour and marker of every
figure (``encoding.Encoding``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import empty_figure, overlapping_tick_labels, run_label
from .encoding import Encoding

METHODS = ["linear", "aligned", "activation", "repair", "bezier"]
METHOD_COLOURS = {"linear": "#d62728", "aligned": "#1f77b4", "activation": "#9467bd",
                  "repair": "#ff7f0e", "bezier": "#2ca02c"}
METHOD_NAMES = {"linear": "linear", "aligned": "aligned linear (weight matching)",
                "activation": "aligned linear (activation matching)",
                "repair": "aligned linear + REPAIR", "bezier": "Bézier curve (trained)"}
# wider lines underneath, so that equal curves (aligned = linear when matching moves no unit,
# activation = aligned when both matchings agree) stay visible
METHOD_WIDTHS = {"linear": 3.4, "aligned": 2.6, "activation": 1.8, "repair": 1.3, "bezier": 1.0}
METHOD_HATCHES = {"linear": "", "aligned": "///", "activation": "xxx", "repair": "\\\\",
                  "bezier": "..."}  # bars apart in greyscale
SPLIT_STYLE = {"train": "-", "test": "--"}
HPARAM_ORDER = ["model", "optimizer", "rho", "lr", "weight_decay", "batch_size", "seed"]


def _methods(df: pd.DataFrame) -> list[str]:
    present = set(df["method"])
    return [m for m in METHODS if m in present]


def pair_labels(pairs: pd.DataFrame, runs: pd.DataFrame) -> dict[str, str]:
    """Short label per pair: the hyper-parameters the two runs share, then what differs (e.g.
    ``sgd η=0.02 B=32: s1 ↔ s2``); the pair id when a run is not in ``runs``."""
    idx = runs.set_index("run") if len(runs) else None
    out = {}
    for pair, a, b in pairs[["pair", "run_a", "run_b"]].drop_duplicates().itertuples(index=False):
        if idx is None or a not in idx.index or b not in idx.index:
            out[pair] = pair
            continue
        ra, rb = idx.loc[a], idx.loc[b]
        base = run_label(ra)
        if run_label(rb) == base:
            out[pair] = f"{base}: s{int(ra['seed'])} ↔ s{int(rb['seed'])}"
        else:
            out[pair] = f"{base} s{int(ra['seed'])} ↔ {run_label(rb)} s{int(rb['seed'])}"
    return out


def _pair_order(df: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """Pairs ordered by run A's hyper-parameters (the pair id for unknown runs)."""
    pairs = df[["pair", "run_a"]].drop_duplicates()
    if len(runs):
        pairs = pairs.merge(runs[["run", *HPARAM_ORDER]], left_on="run_a", right_on="run",
                            how="left")
        pairs = pairs.sort_values([*HPARAM_ORDER, "pair"], na_position="last")
    return list(pairs["pair"])


def _eval_note(df: pd.DataFrame) -> str:
    sets = sorted(df["eval_set"].unique())
    bn = bool(df["bn_recomputed"].any())
    return ("values over " + ", ".join(sets)
            + ("; BatchNorm statistics re-estimated at every point" if bn else ""))


def _header(fig, title: str, handles: list, ncol: int) -> None:
    """Title and legend in a band above the axes (heights in inches, so any figure height works).
    """
    rows = -(-len(handles) // ncol)
    band = 0.3 + 0.22 * rows  # inches: title line plus legend rows
    h = fig.get_figheight()
    fig.tight_layout(rect=(0, 0, 1, 1 - band / h))
    fig.suptitle(title, fontsize=9, y=1 - 0.05 / h, va="top")
    fig.legend(handles=handles, loc="upper center", ncol=ncol, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.28 / h))


def path_curves(paths: pd.DataFrame, runs: pd.DataFrame) -> plt.Figure:
    """Loss and error (1 − accuracy) along t ∈ [0, 1] for each method, a row per pair."""
    if paths.empty:
        return empty_figure("no connectivity paths measured (no pairs, or every pair skipped)")
    order = _pair_order(paths, runs)
    labels = pair_labels(paths, runs)
    methods = _methods(paths)
    n = len(order)
    fig, axes = plt.subplots(n, 2, figsize=(10, 2.3 * n + 0.9), squeeze=False, sharex=True)
    for row, pair in enumerate(order):
        sel = paths[paths["pair"] == pair]
        for method in methods:
            for split, style in SPLIT_STYLE.items():
                g = sel[(sel["method"] == method) & (sel["split"] == split)].sort_values("t")
                if g.empty:
                    continue
                kw = {"color": METHOD_COLOURS[method], "ls": style, "lw": METHOD_WIDTHS[method]}
                axes[row, 0].plot(g["t"], g["loss"], **kw)
                axes[row, 1].plot(g["t"], 1.0 - g["accuracy"], **kw)
        axes[row, 0].set_ylabel("loss")
        axes[row, 1].set_ylabel("error")
        axes[row, 0].set_title(labels[pair], fontsize=9, loc="left")
        for ax in axes[row]:
            ax.grid(alpha=0.3)
            ax.set_xlim(0, 1)
    for ax in axes[-1]:
        ax.set_xlabel("t  (0 = run A, 1 = run B)")
    handles = [plt.Line2D([], [], color=METHOD_COLOURS[m], lw=2, label=METHOD_NAMES[m])
               for m in methods]
    handles += [plt.Line2D([], [], color="0.3", ls=s, label=split)
                for split, s in SPLIT_STYLE.items()]
    _header(fig, "Paths between minima: " + _eval_note(paths), handles,
            len(handles) if len(handles) <= 5 else -(-len(handles) // 2))
    return fig


def barrier_chart(barriers: pd.DataFrame, runs: pd.DataFrame) -> plt.Figure:
    """Loss (top) and error (bottom) barriers per pair as horizontal bars grouped by method;
    columns train and test. The legend gives each method's mean over the pairs (test split)."""
    if barriers.empty:
        return empty_figure("no barriers measured (no pairs, or every pair skipped)")
    order = _pair_order(barriers, runs)
    labels = pair_labels(barriers, runs)
    methods = _methods(barriers)
    splits = [s for s in SPLIT_STYLE if s in set(barriers["split"])]
    n, k = len(order), len(methods)
    height = 0.8 / k
    fig, axes = plt.subplots(2, len(splits), figsize=(5.2 * len(splits) + 2.5,
                                                       2 * (0.35 * n * k / 3 + 1.6)),
                             squeeze=False, sharey=True)
    y = np.arange(n)
    for r, (col, name) in enumerate((("loss_barrier", "loss barrier (nats)"),
                                     ("error_barrier", "error barrier"))):
        for c, split in enumerate(splits):
            ax = axes[r, c]
            for j, method in enumerate(methods):
                g = barriers[(barriers["method"] == method) & (barriers["split"] == split)]
                values = g.set_index("pair")[col].reindex(order).to_numpy()
                pos = y - 0.4 + height * (j + 0.5)
                ax.barh(pos, values, height=height, color=METHOD_COLOURS[method],
                        hatch=METHOD_HATCHES[method], edgecolor="white", lw=0)
                for yy, v in zip(pos, values, strict=True):
                    if np.isfinite(v):
                        ax.text(v, yy, f" {v:.3g}", va="center", ha="left", fontsize=6.5)
            top = np.nanmax(barriers[col].to_numpy(dtype=float), initial=0.0)  # both splits
            ax.set_xlim(0, 1.18 * top if top > 0 else 1e-3 if col == "loss_barrier" else 0.01)
            ax.axvline(0, color="0.2", lw=0.8)
            ax.set_xlabel(f"{name}, {split}")
            ax.grid(axis="x", alpha=0.3)
            ax.set_yticks(y)
            ax.set_yticklabels([labels[p] for p in order], fontsize=8)
    axes[0, 0].invert_yaxis()  # shared: first pair on top everywhere
    test = barriers[barriers["split"] == (splits[-1])]
    handles = []
    for m in methods:
        g = test[test["method"] == m]
        handles.append(plt.Rectangle((0, 0), 1, 1, facecolor=METHOD_COLOURS[m],
                                     hatch=METHOD_HATCHES[m], edgecolor="white", lw=0,
                                     label=f"{METHOD_NAMES[m]}: mean {splits[-1]} loss "
                                           f"{g['loss_barrier'].mean():.3f}, error "
                                           f"{g['error_barrier'].mean():.3f}"))
    _header(fig, "Barriers (largest rise above the line between the endpoint values; Entezari "
            "et al. 2022): " + _eval_note(barriers), handles, 1)
    return fig


def _step_ticks(fig, axes, steps: list[int], epochs: dict[int, float] | None) -> None:
    """Ticks at the spawn steps labelled with the step (and its epoch when ``epochs`` is given);
    fewer words, then the axis's own ticks, wherever labels would overlap."""
    from matplotlib.ticker import FuncFormatter, NullLocator, SymmetricalLogLocator

    tries = ([[f"{k}\n({epochs[k]:.2g} ep)" for k in steps]] if epochs else []) + \
        [[str(k) for k in steps]]
    for labels in tries:
        for ax in axes:
            ax.set_xticks(steps)
            ax.set_xticklabels(labels, fontsize=8)
            ax.xaxis.set_minor_locator(NullLocator())
        if not overlapping_tick_labels(fig):
            return
    for ax in axes:
        ax.xaxis.set_major_locator(SymmetricalLogLocator(linthresh=ax.xaxis.get_transform()
                                                         .linthresh, base=10))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def spawn_chart(spawn: pd.DataFrame, runs: pd.DataFrame) -> plt.Figure:
    """Loss and error barrier between two children spawned at step k, and their parameter
    distance, against k (symlog: k = 0, the independently trained case, is on the axis). Runs
    in their colour and marker (from ``runs``); train solid, test dashed."""
    if spawn.empty:
        return empty_figure("no spawning measured (spawning off, or its run skipped)")
    spawn = spawn.sort_values(["run", "spawn_step"])
    run_ids = list(dict.fromkeys(spawn["run"]))
    idx = runs.set_index("run") if len(runs) else None
    steps = sorted(int(s) for s in spawn["spawn_step"].unique())
    epochs = dict(zip(spawn["spawn_step"].astype(int), spawn["spawn_epoch"], strict=False))
    positive = [s for s in steps if s > 0]
    linthresh = float(min(positive)) if positive else 1.0
    panels = [("loss_barrier", "loss barrier between children (nats)", True),
              ("error_barrier", "error barrier between children", True),
              ("distance", "distance ‖θ_child A − θ_child B‖", False)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.9))
    enc = Encoding(runs)
    handles = []
    for run in enc.order(run_ids):
        label = (f"{run_label(idx.loc[run])} s{int(idx.loc[run, 'seed'])}"
                 if idx is not None and run in idx.index else run)
        kw = {"color": enc.colour(run), "marker": enc.marker(run), "ms": 5}
        handles.append(plt.Line2D([], [], ls="none", label=label, **kw))
        for split, style in SPLIT_STYLE.items():
            g = spawn[(spawn["run"] == run) & (spawn["split"] == split)]
            if g.empty:
                continue
            for ax, (col, _, per_split) in zip(axes, panels, strict=True):
                if per_split or split == "train":  # the distance does not depend on the split
                    ax.plot(g["spawn_step"], g[col], ls=style if per_split else "-",
                            mfc="white" if split == "test" else kw["color"], **kw)
    handles += [plt.Line2D([], [], color="0.3", ls=style, marker="o",
                           mfc="white" if split == "test" else "0.3", label=split)
                for split, style in SPLIT_STYLE.items()]
    for ax, (col, name, _) in zip(axes, panels, strict=True):
        ax.set_xscale("symlog", linthresh=linthresh, linscale=0.5)
        ax.set_xlim(-0.1 * linthresh, max(steps) * 1.6 if steps[-1] > 0 else 1.0)
        top = float(np.nanmax(spawn[col].to_numpy(dtype=float), initial=0.0))
        top = top if top > 0 else (0.01 if col != "distance" else 1.0)
        ax.set_ylim(-0.03 * top, 1.12 * top)  # barriers and distances are ≥ 0
        ax.axhline(0, color="0.2", lw=0.8)
        ax.set_xlabel("spawn step k (symmetric log scale)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _step_ticks(fig, axes, steps, epochs if len(run_ids) == 1 else None)
    axes[0].legend(handles=handles, fontsize=7, title=enc.title(), title_fontsize=7)
    sets = sorted(spawn["eval_set"].unique())
    fig.suptitle(f"Spawning (Frankle et al. 2020): two children trained from step k to the end "
                 f"with different data orders; linear barrier over {', '.join(sets)}",
                 fontsize=9)
    fig.tight_layout()
    return fig
