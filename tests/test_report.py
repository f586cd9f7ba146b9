"""Findings are generated from the tables: change a table and the sentence changes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from landscape.report.findings import (
    compare_beyond_spread,
    finding_curvature,
    finding_training,
    kendall_sentence,
    run_table,
)
from landscape.report.html import page
from landscape.report.reference import comparison, note

from .conftest import REPO


def runs_frame(test_acc=(0.80, 0.82, 0.78, 0.85), status=("ok",) * 4):
    rows = []
    for i, (bs, seed) in enumerate([(32, 1), (128, 1), (32, 2), (128, 2)]):
        rows.append({"run": f"cnn_sgd_lr0.1_bs{bs}_wd0_s{seed}", "model": "cnn",
                     "optimizer": "sgd", "lr": 0.1, "batch_size": bs, "weight_decay": 0.0,
                     "seed": seed, "status": status[i], "test_acc": test_acc[i],
                     "gap_error": 0.01 * (i + 1), "gap_loss": 0.02 * (i + 1)})
    return pd.DataFrame(rows)


def repeats_frame(runs, lmax, sd=0.1):
    rows = []
    for run, lm in zip(runs["run"], lmax, strict=True):
        for k, d in enumerate((-sd, 0.0, sd)):
            rows.append({"run": run, "subset": k, "lambda_max": lm + d, "trace": 10 * lm})
    return pd.DataFrame(rows)


def text_of(findings, key):
    return next(f.text for f in findings if f.key == key)


def test_sentence_follows_the_table():
    runs = runs_frame()
    sharper = finding_curvature(run_table(runs, repeats_frame(runs, [5.0, 9.0, 5.2, 9.5])))
    assert "sharper (higher λ_max) in 2 of 2 pairs" in text_of(sharper, "lambda_max_vs_batch_size")
    flatter = finding_curvature(run_table(runs, repeats_frame(runs, [9.0, 5.0, 9.5, 5.2])))
    assert "in 0 of 2 pairs" in text_of(flatter, "lambda_max_vs_batch_size")
    assert "flatter in 2" in text_of(flatter, "lambda_max_vs_batch_size")
    # a difference inside the subset spread is a tie, not "sharper"
    tie = finding_curvature(run_table(runs, repeats_frame(runs, [5.0, 5.1, 5.0, 5.1], sd=0.2)))
    assert "within the subset spread in 2" in text_of(tie, "lambda_max_vs_batch_size")


def test_training_findings_name_divergence_and_best_config():
    runs = runs_frame(status=("ok", "diverged", "ok", "ok"))
    f = finding_training(runs)
    assert text_of(f, "diverged").startswith("1 of 4 runs diverged")
    assert "B=128 (0.8500 over 1 seed(s))" in text_of(f, "best_config")
    f = finding_training(runs_frame())
    assert text_of(f, "diverged") == "All 4 runs finished without diverging."
    assert "B=128 (0.8350 ± 0.021 over 2 seed(s))" in text_of(f, "best_config")


def test_significance_wording_is_chosen_by_p_and_n():
    x = np.arange(12.0)
    text, nums = kendall_sentence(x, x + 0.1, "m vs gap")
    assert "positive, significant" in text and nums["n"] == 12 and nums["tau"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    text, nums = kendall_sentence(rng.normal(size=12), rng.normal(size=12), "m vs gap")
    assert nums["p_value"] >= 0.05 and "not significant with n = 12" in text
    assert "too few runs" in kendall_sentence(x[:2], x[:2], "m")[0]


def test_compare_counts_only_beyond_twice_the_spread():
    a = pd.Series({"v": 1.0, "sd": 0.1})
    b = pd.Series({"v": 1.3, "sd": 0.1})
    assert compare_beyond_spread([(a, b)], "v", "sd")["higher"] == 1
    b["v"] = 1.2  # 0.2 < 2·√0.02 ≈ 0.283
    assert compare_beyond_spread([(a, b)], "v", "sd")["within_spread"] == 1


def test_reference_comparison_notes_follow_our_numbers():
    import yaml

    ref = yaml.safe_load((REPO / "studies/seed_reference.yaml").read_text())
    runs = runs_frame().assign(seed=[1, 1, 2, 2])
    runs = runs.iloc[[0, 2]].reset_index(drop=True)
    df = comparison(ref, {"runs": runs})
    acc = df[df["quantity"].str.startswith("test accuracy, model A")].iloc[0]
    assert acc["ours"] == 0.80 and acc["published"] == 0.8996
    assert acc["note"].startswith("differs by -0.0996, beyond twice our spread")
    assert df[df["quantity"].str.contains("power")]["note"].eq("not measured in this run").all()
    assert note(1.0, 1.05, 0.1).startswith("within twice our spread")
    assert "no spread" in note(1.0, 1.05, float("nan"))


def test_page_embeds_findings_and_numbers():
    runs = runs_frame()
    table = run_table(runs, repeats_frame(runs, [5.0, 9.0, 5.2, 9.5]))
    f = finding_training(runs)
    html = page(f, table, None, [], "T", "study")
    for item in f:
        assert item.text.replace("±", "±") in html.replace("&#x27;", "'")
        assert json.dumps(item.numbers, sort_keys=True).replace('"', "&quot;") in html
    assert "cnn_sgd_lr0.1_bs128_wd0_s2" in html and ">0.85<" in html


def test_connectivity_findings_follow_the_barriers():
    from landscape.report.findings import finding_connectivity

    def barriers(linear, aligned):
        rows = []
        for i, (lin, al) in enumerate(zip(linear, aligned, strict=True)):
            for method, v in (("linear", lin), ("aligned", al)):
                rows.append({"pair": f"p{i}", "run_a": f"a{i}", "run_b": f"b{i}",
                             "method": method, "split": "train", "loss_barrier": v})
        return pd.DataFrame(rows)

    f = finding_connectivity({"barriers": barriers([1.0, 2.0, 0.5], [0.2, 0.3, 0.9])})
    assert text_of(f, "alignment").endswith("lowered the linear barrier in 2 of 3 pair(s).")
    f = finding_connectivity({"barriers": barriers([1.0, 2.0, 0.5], [1.2, 2.3, 0.9])})
    assert "in 0 of 3 pair(s)" in text_of(f, "alignment")


def test_no_rank_correlation_finding_from_two_runs():
    """Two runs give τ = ±1 with a degenerate interval: the finding says there are too few runs."""
    import pandas as pd

    from landscape.report.findings import finding_generalisation

    row = {"gap": "gap_error", "measure": "lambda_max", "tau": -1.0, "tau_lo": -1.0, "tau_hi": -1.0,
           "p_value": 1.0, "n": 2, "psi": float("nan"), "psi_lo": float("nan"),
           "psi_hi": float("nan"), "n_groups": 0}
    (f,) = finding_generalisation({"correlations": pd.DataFrame([row])})
    assert "Too few runs (n = 2)" in f.text and "excludes 0" not in f.text
