"""Findings are generated from the tables: change a table and the sentence changes."""

from __future__ import annotations

import json
import re

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
                     "optimizer": "sgd",
                     "rho": 0.0, "lr": 0.1, "batch_size": bs, "weight_decay": 0.0,
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


def test_edge_of_stability_peak_follows_the_whole_trajectory():
    """The peak sentence reads every snapshot (dense ones too), not only the last: a run that
    crossed 2/η mid-training and ended below it counts as crossed."""
    runs = runs_frame()
    table = run_table(runs, repeats_frame(runs, [5.0, 9.0, 5.2, 9.5]))
    rows = []
    for i, run in enumerate(runs["run"]):
        path = [2.0, 8.0, 25.0 if i == 0 else 12.0, 9.0]  # 2/η = 20; run 0 peaks at 25
        for step, lm in enumerate(path):
            rows.append({"run": run, "step": step, "lambda_max": lm, "two_over_lr": 20.0,
                         "eos_threshold": 38.0, "trajectory": step in (0, 3)})
    sharp = pd.DataFrame(rows)
    found = finding_curvature(table, sharp)
    assert "exceeded 2/η in 0 of 4 runs" in text_of(found, "edge_of_stability")
    peak = text_of(found, "edge_of_stability_peak")
    assert "(4 snapshots per run, median)" in peak and "peaked at 0.6 to 1.25" in peak
    assert "1 of 4 runs crossed 2/η and 0 the momentum threshold" in peak
    sharp.loc[sharp["lambda_max"] == 25.0, "lambda_max"] = 40.0
    again = text_of(finding_curvature(table, sharp), "edge_of_stability_peak")
    assert "peaked at 0.6 to 2" in again and "and 1 the momentum threshold" in again


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
    # the run table shows ρ (the SAM radius) only where a run has one
    assert ">rho</th>" not in html
    sam = table.assign(optimizer=["sgd", "sgd", "sam", "sam"], rho=[0.0, 0.0, 0.05, 0.05])
    assert ">rho</th>" in page(f, sam, None, [], "T", "study")


def _barrier_rows(values: dict, subsets: int = 1, bezier_end: str = "aligned",
                  jitter: float = 0.0, split: str = "train") -> pd.DataFrame:
    """A barriers table: ``values`` maps method → one ``split``-loss barrier per pair; with
    ``subsets`` > 1 each is repeated on that many evaluation subsets, ±``jitter`` around it."""
    end = {"linear": "raw", "aligned": "aligned", "bezier": bezier_end,
           "activation": "activation", "repair": "aligned"}
    rows = []
    for method, per_pair in values.items():
        for i, v in enumerate(per_pair):
            for s in range(subsets):
                rows.append({"pair": f"p{i}", "run_a": f"a{i}", "run_b": f"b{i}",
                             "method": method, "endpoint_b": end[method], "split": split,
                             "loss_barrier": v + jitter * (s - (subsets - 1) / 2),
                             "eval_set": f"{split}[1024,seed={s}]", "eval_size": 1024})
    return pd.DataFrame(rows)


def test_connectivity_findings_follow_the_barriers():
    from landscape.report.findings import finding_connectivity

    f = finding_connectivity({"barriers": _barrier_rows({"linear": [1.0, 2.0, 0.5],
                                                          "aligned": [0.2, 0.3, 0.9]})})
    text = text_of(f, "alignment")
    assert "lower train-loss barrier than the unaligned line A → θ_B" in text
    assert "in 2 of 3 pair(s) and a higher one in 1" in text
    # one evaluation subset per pair: no spread, so no direction is called
    assert "not called a difference" in text and "spread over subsets is unknown" in text
    nums = next(x.numbers for x in f if x.key == "alignment")
    assert nums["unknown_spread"] == 3 and nums["lower"] == nums["higher"] == 0
    assert nums["raw_lower"] == 2
    f = finding_connectivity({"barriers": _barrier_rows({"linear": [1.0, 2.0, 0.5],
                                                          "aligned": [1.2, 2.3, 0.9]})})
    assert "in 0 of 3 pair(s)" in text_of(f, "alignment")


def test_bezier_is_compared_with_the_line_between_its_own_endpoints():
    """The curve ends at the aligned B: the raw line is high, the aligned one low and the curve
    in between. The old sentence compared it with the raw line and said 'lower in 3 of 3'."""
    from landscape.report.findings import finding_connectivity

    values = {"linear": [2.0, 3.0, 4.0], "aligned": [0.1, 0.1, 0.1], "bezier": [0.3, 0.3, 0.3]}
    f = finding_connectivity({"barriers": _barrier_rows(values)})
    text = text_of(f, "bezier")
    assert "ending at P(θ_B)" in text and "the aligned straight line A → P(θ_B)" in text
    assert "in 0 of 3 pair(s) and a higher one in 3" in text
    assert next(x.numbers for x in f if x.key == "bezier")["aligned"]["compared_with"] == "aligned"
    # a curve that ends at the raw B is compared with the raw line
    f = finding_connectivity({"barriers": _barrier_rows(values, bezier_end="raw")})
    text = text_of(f, "bezier")
    assert "ending at θ_B" in text and "the unaligned straight line A → θ_B" in text
    assert "in 3 of 3 pair(s)" in text
    # without the aligned line the curve ending at P(θ_B) is not compared at all
    f = finding_connectivity({"barriers": _barrier_rows({k: values[k]
                                                         for k in ("linear", "bezier")})})
    assert "not compared in 3 pair(s)" in text_of(f, "bezier")


def test_repair_and_activation_matching_are_compared_with_the_weight_matched_line():
    """On the test split: REPAIR's barriers [0.1, 0.05, 0.3, 0.5] against the aligned line's
    [0.4, 0.2, 0.3, 0.25] (ratios 0.25, 0.25, 1, 2: median 0.625; lower in 2, higher in 1);
    activation matching's [0.5, 0.1, 0.6, 0.25]. The train split holds other numbers, which
    must not leak into these sentences."""
    from landscape.report.findings import finding_connectivity

    test = {"linear": [1.0, 2.0, 0.5, 0.9], "aligned": [0.4, 0.2, 0.3, 0.25],
            "activation": [0.5, 0.1, 0.6, 0.25], "repair": [0.1, 0.05, 0.3, 0.5]}
    train = {m: [9.0 + i for i in range(4)] for m in test}
    f = finding_connectivity({"barriers": pd.concat([_barrier_rows(train),
                                                     _barrier_rows(test, split="test")])})
    text = text_of(f, "repair")
    assert text.startswith("Median test-loss barrier over 4 pair(s): 0.2 nats for REPAIR "
                           "against 0.275 for the weight-matched line (median ratio 0.625 over "
                           "4 pair(s)")
    assert "REPAIR (Jordan et al. 2023) on the weight-matched line had a lower test-loss " \
           "barrier than the weight-matched line A → P(θ_B) without REPAIR" in text
    assert "in 2 of 4 pair(s) and a higher one in 1 (median difference -0.075 nats)" in text
    assert "not called a difference" in text and "test[1024,seed=0]" in text
    assert "train[" not in text
    nums = next(x.numbers for x in f if x.key == "repair")
    assert nums["median_ratio"] == pytest.approx(0.625) and nums["raw_lower"] == 2
    assert nums["median"] == pytest.approx(0.2) and nums["median_aligned"] == pytest.approx(0.275)
    text = text_of(f, "activation_matching")
    assert "0.375 nats for the activation-matched line against 0.275" in text
    assert "(median ratio 1.12 over 4 pair(s)" in text  # 1.25, 0.5, 2, 1
    assert "in 1 of 4 pair(s) and a higher one in 2" in text
    # with several subsets per pair the counts are beyond the spread
    f = finding_connectivity({"barriers": _barrier_rows(test, subsets=2, jitter=0.02,
                                                        split="test")})
    nums = next(x.numbers for x in f if x.key == "repair")
    assert (nums["lower"], nums["higher"], nums["within_spread"]) == (2, 1, 1)
    assert "beyond the evaluation-subset spread" in text_of(f, "repair")
    # without the weight-matched line there is nothing to compare with
    f = finding_connectivity({"barriers": _barrier_rows(
        {m: test[m] for m in ("linear", "repair")}, split="test")})
    assert not [x for x in f if x.key in ("repair", "activation_matching")]
    # the first finding lists the new paths' medians too
    f = finding_connectivity({"barriers": _barrier_rows(test)})
    assert "activation 0.375 (range 0.1 to 0.6); repair 0.2 (range 0.05 to 0.5)" in \
        text_of(f, "barriers")


def test_connectivity_comparison_counts_only_beyond_the_subset_spread():
    """With several evaluation subsets per pair, a lower barrier counts only beyond
    2·√(sd_a² + sd_b²)."""
    from landscape.report.findings import finding_connectivity

    # sd over two subsets at ±0.05: 0.05·√2 ≈ 0.0707 each, margin 2·0.1 = 0.2
    values = {"linear": [1.0, 1.0, 1.0, 1.0], "aligned": [0.5, 0.9, 1.1, 1.5]}
    f = finding_connectivity({"barriers": _barrier_rows(values, subsets=2, jitter=0.1)})
    text = text_of(f, "alignment")
    assert "beyond the evaluation-subset spread" in text
    assert "in 1 of 4 pair(s), a higher one in 1, and was within the spread in 2" in text
    nums = next(x.numbers for x in f if x.key == "alignment")
    assert (nums["lower"], nums["higher"], nums["within_spread"]) == (1, 1, 2)
    assert nums["unknown_spread"] == 0


def test_spawn_stability_needs_every_later_step_below():
    """Barriers 0.5, 0.01, 0.4, 0.02, 0.01 against a limit of 0.1: below at the second k, but
    only from the fourth k on for good."""
    from landscape.report.findings import finding_connectivity

    ks, loss = [0, 10, 20, 30, 40], [0.5, 0.01, 0.4, 0.02, 0.01]
    err = [0.3, 0.01, 0.01, 0.05, 0.0]  # mean-form test-error barriers
    sp = pd.DataFrame([{"run": "r", "spawn_step": k, "split": split, "loss_barrier": v,
                        "loss_a": 1.0, "loss_b": 1.0, "error_barrier_mean": e}
                       for k, v, e in zip(ks, loss, err, strict=True)
                       for split in ("train", "test")])
    (f,) = finding_connectivity({"spawn_barriers": sp})
    assert "at most 10 % of the children's mean train loss (this project's criterion) at every " \
           "k from k = 30 on (already at k = 10" in f.text
    assert f.numbers["stays_below_from_k"] == 30 and f.numbers["first_below_k"] == 10
    assert "Frankle et al. (2020) judge stability by the error barrier" in f.text
    assert "is at most 0.02 at every k from k = 40 on (already at k = 10" in f.text
    assert f.numbers["error_stays_below_from_k"] == 40
    # above the limit at the last k: no k from which it stays below
    (f,) = finding_connectivity({"spawn_barriers": sp.assign(
        loss_barrier=sp["loss_barrier"].where(sp["spawn_step"] < 40, 0.3))})
    assert f.numbers["stays_below_from_k"] is None
    assert "first at k = 10 but not at the last k = 40" in f.text


def test_no_rank_correlation_finding_from_two_runs():
    """Two runs give τ = ±1 with a degenerate interval: the finding says there are too few runs."""
    import pandas as pd

    from landscape.report.findings import finding_generalisation

    row = {"gap": "gap_error", "measure": "lambda_max", "tau": -1.0, "tau_lo": -1.0, "tau_hi": -1.0,
           "p_value": 1.0, "n": 2, "psi": float("nan"), "psi_lo": float("nan"),
           "psi_hi": float("nan"), "n_groups": 0}
    (f,) = finding_generalisation({"correlations": pd.DataFrame([row])})
    assert "Too few runs (n = 2)" in f.text and "excludes 0" not in f.text


def test_surface_data_is_the_slice_table_as_grids():
    """Each (run, plane, split) of slice_2d becomes one surface: loss[β][α] and its log₁₀ (a
    non-positive or NaN loss becomes null), the trained point at α = β = 0, and the projected
    trajectory on the pca plane only."""
    import json

    import numpy as np

    from landscape.report.surfaces import surface_data, surfaces_html

    rows = []
    for plane in ("random", "pca"):
        for a in (-1.0, 0.0, 1.0):
            for b in (-0.5, 0.0, 0.5, 1.0):
                rows.append({"run": "r", "plane": plane, "split": "train", "alpha": a,
                             "beta": b, "loss": 1.0 + a * a + 2 * b * b})
    slices = pd.DataFrame(rows)
    slices.loc[(slices["alpha"] == 1.0) & (slices["beta"] == 1.0) & (slices["plane"] == "pca"),
               "loss"] = float("nan")
    traj = pd.DataFrame({"run": "r", "split": "train", "snapshot": [1, 0], "step": [10, 0],
                         "alpha": [0.5, -1.0], "beta": [0.2, 0.4], "loss": [2.0, 10.0]})
    recs = {r["plane"]: r for r in surface_data(slices, traj)}
    assert set(recs) == {"random", "pca"}
    r = recs["random"]
    assert r["alpha"] == [-1.0, 0.0, 1.0] and r["beta"] == [-0.5, 0.0, 0.5, 1.0]
    assert np.array(r["loss"]).shape == (4, 3)
    assert r["loss"][3][0] == 1.0 + 1.0 + 2.0  # β = 1, α = −1
    assert r["z"][3][0] == pytest.approx(np.log10(4.0))
    assert r["trained_loss"] == 1.0 and r["trained_z"] == 0.0 and r["path"] is None
    p = recs["pca"]
    assert p["loss"][3][2] is None and p["z"][3][2] is None  # NaN → null (valid JSON)
    assert p["path"]["step"] == [0, 10] and p["path"]["z"] == pytest.approx([1.0, np.log10(2)])
    page = surfaces_html(surface_data(slices, traj))
    payload = page.split('id="surface-data">')[1].split("</script>")[0]
    assert len(json.loads(payload)) == 2
    assert page.count("Plotly.react") == 1 and len(page) > 1_000_000  # plotly.js, once
    assert surfaces_html(surface_data(slices.iloc[:0], traj)) == ""
    # a grid without the origin: no trained point, and the page's data is still valid JSON
    off = slices[(slices["plane"] == "random") & (slices["beta"] > 0)]
    rec = surface_data(off, traj)[0]
    assert rec["trained_loss"] is None and rec["trained_z"] is None
    json.loads(surfaces_html([rec]).split('id="surface-data">')[1].split("</script>")[0])


def test_latex_escaping_keeps_symbols_and_reports_unknown_characters():
    from landscape.report.latex import UNICODE, Escaper

    esc = Escaper()
    assert esc("a_b & 50% {x} #1 $ ~ ^ \\ |α| ≤ 2/η") == (
        r"a\_b \& 50\% \{x\} \#1 \$ \textasciitilde{} \textasciicircum{} \textbackslash{} "
        r"\ensuremath{|}α\ensuremath{|} ≤ 2/η")
    assert "λ" in UNICODE and not esc.unmapped
    assert esc("日") == "?" and esc.unmapped == {"日"}
    assert esc.rst("``θ* + α·d₁`` is **bold** and *it*, a_b") == (
        r"\texttt{θ* + α·d₁} is \textbf{bold} and \emph{it}, a\_b")


def test_latex_report_is_organised_by_the_study_s_questions():
    """Findings go to the section of the question they answer (curvature split by key), figures
    by their category, per-run figures to the appendix; only cited references are listed, and
    a question with nothing to show has no section."""
    from landscape.report.latex import Figure, document

    findings = pd.DataFrame({
        "order": range(5),
        "stage": ["training", "curvature", "curvature", "connectivity", "curvature"],
        "key": ["gap", "tau_lambda_max_gap_error", "edge_of_stability", "repair",
                "lambda_max_vs_batch_size"],
        "text": ["Gap ranged 1_2.", "τ = 0.1.", "λ_max < 2/η.", "REPAIR lower.", "Larger B."],
        "numbers": "{}"})
    runs = pd.DataFrame({"run": ["r1"], "optimizer": ["sgd"], "rho": [0.0], "lr": [0.1],
                         "batch_size": [32],
                         "seed": [1], "status": ["ok"], "train_acc": [0.9], "test_acc": [0.8],
                         "gap_error": [0.1]})
    figs = [Figure("figures/training_curves.pdf", "Curves of ``run``.", "Training"),
            Figure("figures/hessian_sharpness.pdf", "Sharpness.", "Curvature"),
            Figure("figures/hessian_generalisation.pdf", "Gen.", "Curvature"),
            Figure("figures/slices/contour_r1.pdf", "Contours.", "Loss landscape", run="r1")]
    tex = document(findings, runs, figs, "T", "1 run", {"sgd": [("Runs.", runs)]})
    sections = re.findall(r"\\section\{([^}]*)\}", tex)
    assert sections == ["Why does SGD find minima that generalise?",
                        "How does the geometry shape optimisation?",
                        "How do curvature and flatness relate to generalisation?",
                        "Are the minima connected?", "Per-run figures"]
    body = {s: tex.split(r"\section{" + s)[1].split(r"\section{")[0] for s in sections}
    assert r"Gap ranged 1\_2." in body[sections[0]] and "Larger B." in body[sections[0]]
    assert r"λ\_max \textless{} 2/η." in body[sections[1]]
    assert "τ = 0.1." in body[sections[2]] and "REPAIR lower." in body[sections[3]]
    assert "hessian_sharpness.pdf" in body[sections[1]]
    assert "hessian_generalisation.pdf" in body[sections[2]]
    assert "contour_r1.pdf" in body["Per-run figures"] and r"\appendix" in tex
    assert r"\toprule" in body[sections[0]] and r"\texttt{run}" in body[sections[0]]
    cited = set(re.findall(r"\\bibitem\{(\w+)\}", tex))
    used = {k.strip() for group in re.findall(r"\\cite\{([^}]*)\}", tex) for k in group.split(",")}
    assert cited == used and "jordan2023" in cited and "foret2021" not in cited
    assert "How robust" not in tex  # no robustness findings or figures: no section
    # a study with SAM runs: its method sentence and references join the first section
    sam = pd.concat([findings, pd.DataFrame({"order": [9], "stage": ["curvature"],
                                             "key": ["asam_vs_sgd"], "text": ["ASAM flatter."],
                                             "numbers": "{}"})], ignore_index=True)
    tex2 = document(sam, runs, figs, "T", "1 run")
    first = tex2.split(r"\section{")[1]
    assert "sharpness-aware" in first and "ASAM flatter." in first
    assert {"foret2021", "kwon2021"} <= set(re.findall(r"\\bibitem\{(\w+)\}", tex2))
    from landscape.report.latex import QUESTIONS

    methods = re.sub(r"\\cite\{[^}]*\}", "", " ".join(q["method"] for q in QUESTIONS))
    # no result in the method text: its only digits are the stability thresholds' formulas
    assert re.findall(r"\d", methods.replace("$2/\\eta$", "").replace("(2+2\\beta)", "")) == []
