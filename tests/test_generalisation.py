"""Rank correlations with the generalisation gap (landscape.generalisation): Kendall's τ and
Jiang et al.'s granulated Ψ on small examples computed by hand, and the bootstrap intervals."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import landscape.generalisation as generalisation_module
from landscape.generalisation import (
    CORRELATION_COLUMNS,
    bootstrap_ci,
    correlations,
    granulated_table,
    granulated_tau,
    kendall,
    percentile_interval,
    resample_indices,
    tau_b,
)


def runs() -> pd.DataFrame:
    """Six runs on a 3 (lr) × 2 (bs) grid.

    run  lr   bs   measure  gap
     1   0.1   32    1.0    0.10
     2   0.2   32    2.0    0.30
     3   0.4   32    3.0    0.20
     4   0.1  128    4.0    0.40
     5   0.2  128    5.0    0.50
     6   0.4  128    6.0    0.60
    """
    return pd.DataFrame({
        "run": [1, 2, 3, 4, 5, 6],
        "lr": [0.1, 0.2, 0.4, 0.1, 0.2, 0.4],
        "bs": [32, 32, 32, 128, 128, 128],
        "model": ["cnn"] * 6,
        "measure": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "gap": [0.10, 0.30, 0.20, 0.40, 0.50, 0.60],
    })


def test_module_example():
    result = doctest.testmod(generalisation_module)
    assert result.attempted >= 4 and result.failed == 0


def test_kendall_by_hand():
    df = runs()
    # measure is 1..6 in order; the gaps are in order except runs 2, 3: of the 15 pairs 14 are
    # concordant and 1 discordant → τ = (14 − 1)/15. No ties, n = 6: the exact null distribution
    # is uniform over the 720 orders; P(≤ 1 discordant pair) = (1 + 5)/720, two-sided 2·6/720.
    tau, p, n = kendall(df["measure"], df["gap"])
    assert tau == pytest.approx(13 / 15, abs=1e-12)
    assert p == pytest.approx(12 / 720, abs=1e-12)
    assert n == 6
    # NaN pairs are dropped; reversing the measure flips the sign
    m = np.append(df["measure"].to_numpy(), [np.nan, 7.0])
    g = np.append(df["gap"].to_numpy(), [0.7, np.nan])
    assert kendall(m, g) == pytest.approx((13 / 15, 12 / 720, 6))
    assert kendall(-df["measure"], df["gap"])[0] == pytest.approx(-13 / 15)
    # too few or constant → NaN
    assert math.isnan(kendall([1.0], [2.0])[0]) and kendall([1.0], [2.0])[2] == 1
    assert math.isnan(kendall([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])[0])


def test_tau_b_equals_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 4, 15).astype(float)
        y = rng.integers(0, 5, 15).astype(float)
        assert tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert math.isnan(tau_b(np.ones(4), np.arange(4.0)))


def test_granulated_tau_by_hand():
    df = runs()
    # ψ_lr: bs fixed. bs = 32: runs 1, 2, 3, measures 1 < 2 < 3, gaps 0.1, 0.3, 0.2 → pairs
    #   (1,2) +, (1,3) +, (2,3) − → τ = 1/3; bs = 128: all concordant → τ = 1. ψ_lr = 2/3.
    # ψ_bs: lr fixed, pairs (1,4), (2,5), (3,6), each concordant → τ = 1 three times, ψ_bs = 1.
    # 'model' never varies inside a group (each group is one run) → no group, left out of Ψ.
    # Ψ = (2/3 + 1)/2 = 5/6.
    psi, per, count = granulated_tau(df, "measure", "gap", ["lr", "bs", "model"])
    assert psi == pytest.approx(5 / 6, abs=1e-12)
    assert per["lr"] == pytest.approx(2 / 3, abs=1e-12) and per["bs"] == 1.0
    assert math.isnan(per["model"])
    assert count == {"lr": 2, "bs": 3, "model": 0}

    # drop run 3's measure: bs = 32 keeps runs 1, 2 (τ = 1), bs = 128 stays τ = 1 → ψ_lr = 1
    # from 2 groups; lr = 0.4 keeps only run 6 → that group is skipped, ψ_bs = 1 from 2 groups.
    df.loc[2, "measure"] = np.nan
    psi, per, count = granulated_tau(df, "measure", "gap", ["lr", "bs"])
    assert (psi, per["lr"], per["bs"], count) == (1.0, 1.0, 1.0, {"lr": 2, "bs": 2})


def test_granulated_tau_holds_fixed_columns_fixed():
    # two seeds of a 2-lr grid. Without fixing the seed, the only lr group holds all four runs:
    #   measures 1, 2, 3, 4; gaps 0.1, 0.2, 0.4, 0.3 (seed 1: lr 0.1, 0.2; seed 2: lr 0.1, 0.2)
    #   → 5 concordant, 1 discordant pair (3, 4) → τ = 4/6 = 2/3.
    # With seed fixed: groups {1, 2} (τ = 1) and {3, 4} (τ = −1) → ψ_lr = 0.
    df = pd.DataFrame({"lr": [0.1, 0.2, 0.1, 0.2], "seed": [1, 1, 2, 2],
                       "m": [1.0, 2.0, 3.0, 4.0], "g": [0.1, 0.2, 0.4, 0.3]})
    assert granulated_tau(df, "m", "g", ["lr"])[0] == pytest.approx(2 / 3)
    psi, per, count = granulated_tau(df, "m", "g", ["lr"], fixed=["seed"])
    assert psi == 0.0 and count == {"lr": 2}
    with pytest.raises(KeyError, match="wd"):
        granulated_tau(df, "m", "g", ["lr", "wd"])


def test_bootstrap_ci_is_the_percentile_interval_of_resamples():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"v": rng.normal(size=40)})
    lo, hi = bootstrap_ci(df, lambda d: float(d["v"].mean()), n_boot=400, seed=3)
    means = [df["v"].to_numpy()[r].mean() for r in resample_indices(40, 400, 3)]
    assert (lo, hi) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    assert lo < df["v"].mean() < hi
    # ≈ mean ± 1.96·sd/√n for a mean
    half = 1.96 * df["v"].std() / math.sqrt(40)
    assert hi - lo == pytest.approx(2 * half, rel=0.25)
    lo90, hi90 = bootstrap_ci(df, lambda d: float(d["v"].mean()), n_boot=400, seed=3, level=0.9)
    assert lo < lo90 < hi90 < hi
    assert all(math.isnan(v) for v in percentile_interval([math.nan, math.inf]))


def test_correlations_table():
    rng = np.random.default_rng(2)
    grid = pd.DataFrame([(lr, bs, s) for lr in (0.01, 0.1, 0.5) for bs in (32, 128)
                         for s in (1, 2)], columns=["lr", "bs", "seed"])
    grid["gap"] = grid["lr"] * 0.2 + grid["bs"] / 1000 + rng.normal(0, 0.01, len(grid))
    grid["good"] = grid["gap"] + rng.normal(0, 0.005, len(grid))
    grid["noise"] = rng.normal(size=len(grid))
    grid.loc[0, "noise"] = np.nan
    out = correlations(grid, ["good", "noise"], "gap", ["lr", "bs"], n_boot=100, seed=0)
    assert list(out.columns) == CORRELATION_COLUMNS
    assert list(out["measure"]) == ["good", "noise"]
    for _, row in out.iterrows():
        tau, p, n = kendall(grid[row["measure"]], grid["gap"])
        psi, _, count = granulated_tau(grid, row["measure"], "gap", ["lr", "bs"])
        assert (row["tau"], row["p_value"], row["n"]) == pytest.approx((tau, p, n))
        assert row["psi"] == pytest.approx(psi) and row["n_groups"] == sum(count.values())
        # the intervals are bootstrap_ci of the same statistics on the same resamples
        t_ci = bootstrap_ci(grid, lambda d, m=row["measure"]: kendall(d[m], d["gap"])[0], 100, 0)
        p_ci = bootstrap_ci(
            grid, lambda d, m=row["measure"]: granulated_tau(d, m, "gap", ["lr", "bs"])[0], 100, 0)
        assert (row["tau_lo"], row["tau_hi"]) == pytest.approx(t_ci, abs=1e-9)
        assert (row["psi_lo"], row["psi_hi"]) == pytest.approx(p_ci, abs=1e-9)
        assert row["tau_lo"] <= row["tau_hi"] and row["psi_lo"] <= row["psi_hi"]
    good, noise = out.iloc[0], out.iloc[1]
    assert good["tau"] > 0.7 and good["tau_lo"] > 0.4 and good["psi"] > 0.5
    assert noise["n"] == len(grid) - 1 and noise["tau_lo"] < 0 < noise["tau_hi"]
    # the seed is not held fixed: 2 bs values → 2 lr-groups (6 runs each), 3 lr values → 3
    # bs-groups (4 runs each)
    assert good["n_groups"] == 2 + 3
    long = granulated_table(grid, ["good"], "gap", ["lr", "bs"])
    assert list(long["hparam"]) == ["lr", "bs"] and list(long["n_groups"]) == [2, 3]
