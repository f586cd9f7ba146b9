"""Findings you can trust: each test here fails on the code before its fix.

σ½ sees training data only and keeps censored runs; a difference is called only against a known
spread; the selected "largest |τ|" measure carries a multiplicity-adjusted p; the seed study cites
sources a user of this repository can reach.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from landscape.generalisation import holm, measure_table, study_correlations
from landscape.report.findings import (
    compare_beyond_spread,
    finding_curvature,
    finding_generalisation,
    finding_robustness,
    finding_slices,
    run_table,
)
from landscape.robustness.noise import sigma_at_half_accuracy, sigma_half

from .conftest import REPO
from .test_report import repeats_frame, runs_frame, text_of


def curve(accs_by_split: dict[str, list[float]], sigmas=(0.0, 0.01, 0.1, 1.0),
          mode="absolute") -> pd.DataFrame:
    rows = [{"mode": mode, "sigma": s, "draw": 0, "split": split, "loss": 1 - a, "accuracy": a}
            for split, accs in accs_by_split.items() for s, a in zip(sigmas, accs, strict=True)]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ 1, 2: σ½ on train, censored

def test_sigma_half_censoring_keeps_the_grid_bound():
    # crossed between 0.01 (0.8) and 0.1 (0.4); threshold 0.5 → 0.75 of a decade above 0.01
    value, c = sigma_half(curve({"train": [0.9, 0.8, 0.4, 0.1]}))
    assert c == "crossed" and value == pytest.approx(0.01 * 10**0.75, rel=1e-12)
    # already below half-way at the smallest σ: left-censored at σ = 0.01
    assert sigma_half(curve({"train": [0.9, 0.3, 0.2, 0.1]})) == (0.01, "left")
    # never below half-way: right-censored at the largest σ
    assert sigma_half(curve({"train": [0.9, 0.9, 0.8, 0.7]})) == (1.0, "right")
    value, c = sigma_half(curve({"train": [0.1, 0.1, 0.1, 0.1]}))
    assert c == "undefined" and math.isnan(value)
    # the uncensored helper keeps its NaN for those cases
    assert math.isnan(sigma_at_half_accuracy(curve({"test": [0.9, 0.3, 0.2, 0.1]}), "test"))


def _runs(n: int) -> pd.DataFrame:
    rows = []
    for i in range(n):
        rows.append({"run": f"r{i}", "model": "cnn", "optimizer": "sgd", "rho": 0.0, "lr": 0.1,
                     "batch_size": 32 * (i + 1), "weight_decay": 0.0, "seed": 1, "status": "ok",
                     "train_loss": 0.1, "train_acc": 0.95, "test_loss": 0.3, "test_acc": 0.9,
                     "gap_loss": 0.2 + 0.01 * i, "gap_error": 0.05 + 0.01 * i})
    return pd.DataFrame(rows)


def _flatness(runs: pd.DataFrame) -> pd.DataFrame:
    from landscape.generalisation import FLATNESS_COLUMNS

    return pd.DataFrame({"run": runs["run"], **{c: 1.0 for c in FLATNESS_COLUMNS}})


def test_sigma_half_uses_the_training_split_and_keeps_censored_runs():
    runs = _runs(3)
    # train and test curves differ: σ½ must come from train (test would give other numbers)
    noise = pd.concat([
        curve({"train": [0.9, 0.8, 0.4, 0.1], "test": [0.9, 0.9, 0.9, 0.9]}).assign(run="r0"),
        curve({"train": [0.9, 0.3, 0.2, 0.1], "test": [0.9, 0.8, 0.4, 0.1]}).assign(run="r1"),
        curve({"train": [0.9, 0.9, 0.8, 0.7], "test": [0.9, 0.3, 0.2, 0.1]}).assign(run="r2"),
    ])
    m = measure_table(runs, _flatness(runs), noise).set_index("run")
    assert m.loc["r0", "sigma_half_absolute"] == pytest.approx(0.01 * 10**0.75, rel=1e-12)
    assert m.loc["r1", "sigma_half_absolute"] == 0.01
    assert m.loc["r2", "sigma_half_absolute"] == 1.0
    assert list(m["sigma_half_absolute_censoring"]) == ["crossed", "left", "right"]
    assert (m["sigma_half_relative_censoring"] == "not_measured").all()
    assert m["sigma_half_relative"].isna().all()
    # censored runs stay in the ranking: n counts all three
    corr, _ = study_correlations(m.reset_index(), "gap_error", n_boot=20, seed=0)
    assert int(corr.set_index("measure").loc["sigma_half_absolute", "n"]) == 3


def test_robustness_finding_counts_censored_runs():
    m = pd.DataFrame({"run": ["a", "b", "c"], "model": "cnn", "optimizer": "sgd",
                      "rho": 0.0, "lr": 0.1,
                      "batch_size": 32, "weight_decay": 0.0, "seed": [1, 2, 3],
                      "sigma_half_absolute": [0.01, 0.05, 1.0],
                      "sigma_half_absolute_censoring": ["left", "crossed", "right"]})
    (f,) = finding_robustness({"measures": m})
    assert f.text.startswith("Training accuracy fell halfway")
    assert "censored for 2 of 3 runs" in f.text
    assert "1 already below halfway at the smallest σ (σ½ ≤ 0.01)" in f.text
    assert "1 never below halfway on the grid (σ½ > 1)" in f.text
    assert f.numbers["censored_left"] == 1 and f.numbers["censored_right"] == 1
    m["sigma_half_absolute_censoring"] = ["crossed", "crossed", "right"]
    (f,) = finding_robustness({"measures": m})
    assert "censored for 1 of 3 runs" in f.text and "n/a" not in f.text
    assert "already below" not in f.text
    m["sigma_half_absolute_censoring"] = "crossed"
    (f,) = finding_robustness({"measures": m})
    assert "every run crossed halfway" in f.text


# ------------------------------------------------------------------ 3: no spread, no direction

def test_unknown_spread_is_never_called_a_difference():
    a = pd.Series({"v": 1.0, "sd": math.nan})
    b = pd.Series({"v": 1.0001, "sd": math.nan})
    c = compare_beyond_spread([(a, b)], "v", "sd")
    assert c["higher"] == 0 and c["unknown_spread"] == 1 and c["pairs"] == 1
    # one side unknown is unknown too (nansum used to treat it as 0)
    b["sd"] = 0.0
    assert compare_beyond_spread([(a, b)], "v", "sd")["unknown_spread"] == 1


def test_one_subset_gives_no_direction_in_the_curvature_sentence():
    runs = runs_frame()
    one = repeats_frame(runs, [5.0, 9.0, 5.2, 9.5])
    one = one[one["subset"] == 0]  # hessian.repeats: 1
    f = finding_curvature(run_table(runs, one))
    text = text_of(f, "lambda_max_vs_batch_size")
    assert "not compared in their 2 pair(s)" in text and "sharper" not in text
    assert "one evaluation subset for every run: the spread over subsets is unknown" in \
        text_of(f, "spread")


def _slice_1d(runs: pd.DataFrame, rises: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for run, per_dir in rises.items():
        for d, rise in enumerate(per_dir):
            for alpha, loss in ((-1.0, 0.1 + rise), (0.0, 0.1), (1.0, 0.1 + rise)):
                rows.append({"run": run, "direction": "random", "direction_index": d,
                             "alpha": alpha, "split": "train", "loss": loss})
    return pd.DataFrame(rows)


def test_slice_comparison_needs_a_spread_over_directions():
    runs = runs_frame()
    names = list(runs["run"])  # bs 32, 128, 32, 128
    one = _slice_1d(runs, {n: [r] for n, r in zip(names, [0.1, 0.5, 0.1, 0.5], strict=True)})
    (f,) = finding_slices(one, runs)
    assert "not compared" in f.text and "rose more in" not in f.text
    two = _slice_1d(runs, {n: [r, r + 0.01] for n, r in zip(names, [0.1, 0.5, 0.1, 0.5],
                                                              strict=True)})
    (f,) = finding_slices(two, runs)
    assert "rose more in 2 of 2 pairs" in f.text and f.numbers["higher"] == 2


# ------------------------------------------------------------------ 5: selected after looking

def test_holm_matches_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → running max
    assert holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(holm([math.nan, 0.2])[0]) and holm([math.nan, 0.2])[1] == pytest.approx(0.2)
    assert (holm([0.9, 0.8]) <= 1.0).all()


def test_strongest_measure_is_quoted_with_its_adjusted_p():
    rows = []
    for name, tau, p in [("lambda_max", 0.6, 0.01), ("weight_norm", 0.2, 0.3),
                         ("dist_init", -0.1, 0.6)]:
        rows.append({"gap": "gap_error", "measure": name, "tau": tau, "tau_lo": tau - 0.2,
                     "tau_hi": tau + 0.2, "p_value": p, "n": 12, "psi": 0.5, "psi_lo": 0.1,
                     "psi_hi": 0.9, "n_groups": 4})
    c = pd.DataFrame(rows)
    c["p_holm"] = holm(c["p_value"])
    (f,) = finding_generalisation({"correlations": c})
    assert "after all 3 measures were computed, lambda_max came first" in f.text
    assert "Holm-adjusted p = 0.03 over the 3 measures, unadjusted p = 0.01" in f.text
    assert "1 of 3 measures have Holm-adjusted p < 0.05" in f.text
    assert f.numbers["p_holm"] == pytest.approx(0.03)


def test_correlations_table_carries_holm():
    rng = np.random.default_rng(0)
    runs = []
    for lr, bs, seed in itertools.product([0.1, 0.2], [32, 128], [1, 2]):
        runs.append({"run": f"r{lr}{bs}{seed}", "model": "cnn", "optimizer": "sgd",
                     "rho": 0.0, "lr": lr,
                     "batch_size": bs, "weight_decay": 0.0, "seed": seed,
                     "gap_error": rng.uniform()})
    m = pd.DataFrame(runs)
    from landscape.generalisation import MEASURES

    for meas in MEASURES:
        m[meas.name] = rng.uniform(size=len(m))
    corr, _ = study_correlations(m, "gap_error", n_boot=20, seed=0)
    assert np.allclose(corr["p_holm"], holm(corr["p_value"]))
    assert (corr["p_holm"] >= corr["p_value"]).all()


def test_findings_page_lists_every_measure():
    from landscape.report.html import page
    from landscape.stages.findings import measure_summary

    c = pd.DataFrame([{"gap": "gap_error", "measure": m, "sign": 1, "tau": t, "tau_lo": 0.0,
                       "tau_hi": 0.0, "p_value": 0.5, "p_holm": 1.0, "psi": 0.0, "psi_lo": 0.0,
                       "psi_hi": 0.0, "n": 9} for m, t in (("a_measure", 0.1),
                                                          ("b_measure", -0.7))])
    summary = measure_summary(c)
    assert list(summary["measure"]) == ["b_measure", "a_measure"]  # by |τ|
    html = page([], runs_frame(), None, [], "T", "s",
                sections=[("measures", "Measures against the generalisation gap", summary)])
    assert 'id="measures"' in html and "a_measure" in html and "p_holm" in html
    # two runs: τ = ±1 by construction, so no table (the findings say there are too few runs)
    assert measure_summary(c.assign(n=2)) is None


# ------------------------------------------------------------------ 10: sources

def test_seed_study_cites_reachable_sources():
    import yaml

    tracked = [p for p in REPO.rglob("*") if p.is_file() and p.suffix in
               {".py", ".yaml", ".md", ".smk", ".rst", ".toml"}
               and not any(part in {".git", ".venv", "results", ".snakemake"}
                           for part in p.relative_to(REPO).parts)]
    offenders = [str(p.relative_to(REPO)) for p in tracked
                 if p.name != "test_trust.py" and "SEED.md" in p.read_text(errors="ignore")]
    assert offenders == []
    ref = yaml.safe_load((REPO / "studies/seed_reference.yaml").read_text())
    assert "github.com/shubham171002/FourKites_Assessment" in ref["source"]
    assert "notebooks/experiments.ipynb" in ref["source"]


def _matrix_rows(run, h, g, h_se=0.1, g_se=0.1, res=0.01):
    return [{"run": run, "matrix": "hessian", "lambda_max": h, "residual": res, "trace": 10 * h,
             "trace_std_error": h_se},
            {"run": run, "matrix": "ggn", "lambda_max": g, "residual": res, "trace": 10 * g,
             "trace_std_error": g_se}]


def test_matrix_finding_counts_only_beyond_the_uncertainty():
    """G's λ_max is called below H's only beyond the two Lanczos residuals, its trace only beyond
    twice the combined standard error; the ratio's median and range are reported."""
    from landscape.report.findings import finding_matrices

    cm = pd.DataFrame(_matrix_rows("a", 10.0, 9.0)            # λ: 1 apart, residuals 0.02
                      + _matrix_rows("b", 10.0, 9.99)         # λ: 0.01 apart: within
                      + _matrix_rows("c", 10.0, 10.5, res=1.0))  # within (residuals 2)
    (f,) = finding_matrices({"curvature_matrices": cm})
    n = f.numbers
    assert (n["lambda_max_lower"], n["lambda_max_higher"], n["lambda_max_within"]) == (1, 0, 2)
    # traces 100 vs 90 (se 0.1 each: beyond), 100 vs 99.9 (within), 100 vs 105 (beyond, higher)
    assert (n["trace_lower"], n["trace_higher"], n["trace_within"]) == (1, 1, 1)
    assert n["lambda_max_ratio_median"] == pytest.approx(0.999)
    assert "generalised Gauss–Newton" in f.text and "3 runs" in f.text


def test_layer_finding_names_the_sharpest_layer():
    from landscape.report.findings import finding_layers

    rows = []
    for run, top in (("a", "fc"), ("b", "fc"), ("c", "conv")):
        for pos, layer in enumerate(("conv", "fc")):
            rows.append({"run": run, "matrix": "hessian", "layer": layer, "position": pos,
                         "lambda_max": 5.0 if layer == top else 1.0,
                         "trace": 3.0 if layer == "conv" else 1.0})
    cm = pd.DataFrame([{"run": r, "matrix": "hessian", "lambda_max": 10.0} for r in "abc"])
    (f,) = finding_layers({"layer_curvature": pd.DataFrame(rows), "curvature_matrices": cm})
    assert f.numbers["layer"] == "fc" and f.numbers["count"] == 2 and f.numbers["n"] == 3
    assert f.numbers["block_to_whole_median"] == pytest.approx(0.5)
    assert f.numbers["trace_share_layer"] == "conv"
    assert f.numbers["trace_share_median"] == pytest.approx(0.75)


def test_eigen_slice_finding_compares_curvature_per_unit_length():
    """Quadratic slices L = c·(α·‖d‖)²/2 + 1: the second difference per unit length² is c, so
    v₁ with c = 40 against random with c = 0.5 is 80× sharper whatever the directions' lengths."""
    from landscape.report.findings import finding_eigen_slices

    rows = []
    for run in ("a", "b"):
        for kind, c, length in (("hessian_v1", 40.0, 0.2), ("random", 0.5, 3.0),
                                ("gradient", 1.0, 0.2)):
            for a in (-1.0, -0.5, 0.0, 0.5, 1.0):
                rows.append({"run": run, "direction": kind, "direction_index": 0, "alpha": a,
                             "split": "train", "distance": abs(a) * length,
                             "loss": 1.0 + 0.5 * c * (a * length) ** 2})
    (f,) = finding_eigen_slices(pd.DataFrame(rows))
    assert f.numbers["v1_median"] == pytest.approx(40.0)
    assert f.numbers["random_median"] == pytest.approx(0.5)
    assert f.numbers["ratio_median"] == pytest.approx(80.0)
    assert "flatter landscape" in f.text


def test_sam_finding_pairs_each_sam_run_with_its_sgd_twin():
    """SAM vs SGD pairs share every hyper-parameter but the optimiser; λ_max is called lower
    only beyond twice the combined subset spread; accuracy and gap differences are not called."""
    from landscape.report.findings import finding_sam

    rows = []
    for seed, (l_sgd, l_sam) in enumerate(((10.0, 5.0), (10.0, 9.9), (8.0, 4.0)), start=1):
        for opt, lam in (("sgd", l_sgd), ("sam", l_sam)):
            rows.append({"run": f"{opt}{seed}", "model": "cnn", "optimizer": opt,
                         "rho": 0.05 if opt == "sam" else 0.0, "lr": 0.1,
                         "batch_size": 32, "weight_decay": 0.0, "seed": seed,
                         "lambda_max": lam, "lambda_max_sd": 0.2,
                         "test_acc": 0.8 + (0.01 if opt == "sam" else 0.0),
                         "gap_error": 0.05})
    (f,) = finding_sam(pd.DataFrame(rows))
    n = f.numbers
    assert (n["lower"], n["higher"], n["within_spread"], n["pairs"]) == (2, 0, 1, 3)
    assert n["lambda_ratio_median"] == pytest.approx(0.5)
    assert n["test_acc_diff_median"] == pytest.approx(0.01)
    assert f.key == "sam_vs_sgd" and "not called" in f.text
