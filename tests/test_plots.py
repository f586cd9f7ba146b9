"""Figures read well at the size they are produced: no overlapping tick labels."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from landscape.plots import log_axis, overlapping_tick_labels
from landscape.plots.hessian import curvature_vs_generalisation


def _runs(lmax):
    rows = []
    for i in range(len(lmax)):
        rows.append({"run": f"r{i}", "model": "cnn", "optimizer": "sgd", "lr": [0.02, 0.1][i % 2],
                     "batch_size": [32, 128, 512][i % 3], "weight_decay": 0.0, "seed": 1,
                     "status": "ok", "test_acc": 0.8 + 0.01 * i, "gap_loss": 0.02 * i,
                     "gap_error": 0.01 * i})
    runs = pd.DataFrame(rows)
    eigs = pd.DataFrame({"run": runs["run"], "method": "lanczos", "which": "largest_algebraic",
                         "k": 1, "eigenvalue": lmax, "eval_set": "train[512,seed=0]"})
    trace = pd.DataFrame({"run": runs["run"], "method": "hutchinson",
                          "trace": np.asarray(lmax) * 30, "std_error": 5.0})
    return runs, eigs, trace


@pytest.mark.parametrize("lmax", [[2.1, 3.0, 4.4, 5.2, 6.9, 8.8],     # inside one decade
                                  [1.5, 9.0, 40.0, 170.0, 600.0, 2500.0]])
def test_curvature_figure_tick_labels_do_not_overlap(lmax):
    runs, eigs, trace = _runs(lmax)
    fig = curvature_vs_generalisation(eigs, trace, runs)
    assert overlapping_tick_labels(fig) == []
    plt.close(fig)


def test_overlap_check_can_fail():
    """Matplotlib's default log axis over less than a decade labels minor ticks that collide."""
    fig, ax = plt.subplots(figsize=(2.5, 2))
    ax.plot([2.1, 8.8], [1, 2])
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(__import__("matplotlib").ticker.LogFormatterSciNotation(
        labelOnlyBase=False))
    assert overlapping_tick_labels(fig)
    ax.clear()
    ax.plot([2.1, 8.8], [1, 2])
    log_axis(ax, "x")
    assert overlapping_tick_labels(fig) == []
    plt.close(fig)
