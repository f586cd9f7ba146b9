"""The cost model (landscape/cost.py): benchmark sums, units of work from the tables, FLOPs per
image against hand counts, the report's columns and the command's errors."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from landscape import cli, cost
from landscape.errors import UserError
from landscape.tables import SCHEMAS, write_table

RUN = "cnn_sgd_lr0.1_bs32_wd0_s1"
TSV_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def tsv(path, *rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TSV_HEADER + "".join(f"{s}\t0:00:00\t1\t1\t1\t1\t0\t0\t50\t{c}\n"
                                         for s, c in rows))


def frame(name: str, rows: list[dict]) -> pd.DataFrame:
    """Rows of table ``name``: the given values, every other column a neutral filler."""
    fill = {"string": "", "int64": 0, "float64": 0.0, "bool": False}
    return pd.DataFrame([{c.name: r.get(c.name, fill[c.dtype]) for c in SCHEMAS[name]}
                         for r in rows])


def test_unsampled_tail_follows_snakemakes_sampler():
    assert cost.unsampled_tail(10.2) == pytest.approx(0.2)   # 0.5 s samples up to 15 s
    assert cost.unsampled_tail(20.0) == pytest.approx(5.0)   # last sample at 15 s
    assert cost.unsampled_tail(50.0) == pytest.approx(5.0)   # then 45 s


def test_read_benchmarks_sums_every_tsv_per_stage(tmp_path):
    b = tmp_path / "benchmarks"
    tsv(b / "train" / "r1.tsv", (10.0, 8.5))
    tsv(b / "train" / "r2.tsv", (20.0, 15.0))
    tsv(b / "hessian" / "r1.tsv", (4.0, 3.0))
    tsv(b / "hessian" / "r1_sharpness.tsv", (2.0, "NA"))
    (b / "prepare").mkdir()
    df = cost.read_benchmarks(b).set_index("stage")
    assert list(df.index) == list(cost.STAGES)
    assert df.loc["train", "jobs"] == 2
    assert df.loc["train", "cpu_s"] == pytest.approx(23.5)
    assert df.loc["train", "wall_s"] == pytest.approx(30.0)
    assert df.loc["train", "tail_s"] == pytest.approx(5.0)
    assert df.loc["hessian", "jobs"] == 2 and df.loc["hessian", "cpu_s"] == pytest.approx(3.0)
    assert df.loc["hessian", "wall_s"] == pytest.approx(6.0)
    assert df.loc["hessian", "cpu_missing"] == 1
    assert df.loc["slices", "jobs"] == 0 and df.loc["slices", "cpu_s"] == 0
    assert cost.other_benchmark_folders(b) == ["prepare"]


def test_missing_benchmarks_folder_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(UserError, match="no benchmarks folder"):
        cost.read_benchmarks(tmp_path / "benchmarks")
    assert cli.main(["cost", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("landscape cost: error: no benchmarks folder")


def synthetic_tables(tmp_path) -> dict:
    """A small study's tables, written and read back through the table contract."""
    hp = {"run": RUN, "model": "cnn", "optimizer": "sgd",
    "rho": 0.0, "lr": 0.1, "batch_size": 32, "seed": 1}
    tables = {
        "runs": frame("runs", [{**hp, "status": "ok", "diverged_step": -1, "epochs": 2,
                                "train_size": 100, "test_size": 50}]),
        "training": frame("training", [{**hp, "epoch": e, "step": 4 * e} for e in range(3)]),
        "hessian_eigs": frame("hessian_eigs", [
            *({"run": RUN, "method": "lanczos", "which": "largest_algebraic", "k": k,
               "n_hvp": 20, "eval_size": 10} for k in (1, 2, 3)),
            {"run": RUN, "method": "lanczos", "which": "smallest_algebraic", "k": 1,
             "n_hvp": 20, "eval_size": 10},
            {"run": RUN, "method": "power", "which": "largest_magnitude", "k": 1, "n_hvp": 5,
             "eval_size": 10}]),
        "curvature_repeats": frame("curvature_repeats", [
            {"run": RUN, "subset": 0, "n_hvp": 99, "eval_size": 10},
            {"run": RUN, "subset": 1, "n_hvp": 7, "eval_size": 10}]),
        "hessian_density": frame("hessian_density", [
            {"run": RUN, "eigenvalue": float(i), "n_starts": 3, "n_steps": 4, "n_hvp": 7,
             "eval_size": 10} for i in range(2)]),
        "curvature_matrices": frame("curvature_matrices", [
            {"run": RUN, "matrix": m, "n_mv": 30, "eval_size": 10} for m in ("hessian", "ggn")]),
        "layer_curvature": frame("layer_curvature", [
            {"run": RUN, "matrix": m, "layer": layer, "n_mv": 4}
            for m in ("hessian", "ggn") for layer in ("conv1", "fc1")]),
        "robustness": frame("robustness", [
            {"run": RUN, "mode": "absolute", "sigma": s, "draw": d, "split": sp, "eval_size": 10}
            for s in (0.0, 0.1) for d in (0, 1) for sp in ("train", "test")]),
        "flatness": frame("flatness", [{"run": RUN, "eval_size": 10, "ascent_steps": 3,
                                        "average_draws": 4, "ascent_evaluations": 5,
                                        "pacbayes_eval_size": 20, "pacbayes_evaluations": 11,
                                        "pacbayes_mag_evaluations": 16}]),
        "spawn_barriers": frame("spawn_barriers", [
            {"run": RUN, "spawn_step": 4, "steps_a": 4, "steps_b": 4, "split": sp,
             "eval_size": 10} for sp in ("train", "test")]),
        "connectivity": frame("connectivity", [
            {"pair": f"{RUN}__x", "run_a": RUN, "run_b": "x", "method": m, "t": t, "split": sp,
             "eval_size": 10} for m in ("linear", "bezier", "activation", "repair")
            for t in (0.0, 0.5, 1.0)
            for sp in ("train", "test")]),
    }
    for name, df in tables.items():
        write_table(df, name, tmp_path / f"{name}.parquet")
    return cost.read_tables(tmp_path, cost.TABLES)


def test_units_of_work_from_synthetic_tables(tmp_path):
    t = synthetic_tables(tmp_path)
    assert t["slice_1d"] is None  # not written: its units are "not counted"
    units = cost.work_units(t, {RUN: "m"})
    assert list(units.columns) == cost.UNIT_COLUMNS

    def passes(stage, start):
        sel = units[(units["stage"] == stage) & units["item"].str.startswith(start)]
        assert len(sel) == 1, (stage, start, units)
        return sel.iloc[0]

    steps = passes("train", "optimiser steps")
    assert steps["passes"] == 200 and steps["kind"] == "fwd_bwd"  # 2 epochs × 100, not 8 × 32
    assert passes("train", "epoch evaluations")["passes"] == 3 * 150
    assert passes("hessian", "HVP: Lanczos")["passes"] == (20 + 5) * 10  # per call, not per row
    assert passes("hessian", "HVP: repeat")["passes"] == 7 * 10  # subset 0 not twice
    dens = passes("hessian", "HVP: spectral density")
    assert dens["passes"] == 7 * 10 and dens["bound"] == "exact"  # recorded, once per run
    assert passes("hessian", "HVP graph builds")["passes"] == 2 * 10  # main set + subset 1
    assert passes("robustness", "weight-noise")["passes"] == 6 * 10  # σ = 0 once
    assert passes("robustness", "ascent gradient")["passes"] == 2 * 3 * 10
    asc = passes("robustness", "ascent evaluations")  # recorded: base, last, inner best
    assert asc["passes"] == 5 * 10 and asc["bound"] == "exact"
    assert passes("robustness", "average-case")["passes"] == 5 * 10
    pac = passes("robustness", "PAC-Bayes")  # both searches' evaluations of 20 images
    assert pac["passes"] == (11 + 16) * 20 and pac["bound"] == "exact"
    assert passes("connectivity", "path points")["passes"] == 4 * 3 * 2 * 10
    bend = passes("connectivity", "Bézier")  # no job metadata: not counted
    assert bend["bound"] == "not counted" and "1 pair(s)" in bend["note"]
    act = passes("connectivity", "activation matching")  # A and B once per pair, train subset
    assert act["passes"] == 2 * 10 and act["kind"] == "forward" and act["bound"] == "exact"
    assert passes("connectivity", "REPAIR")["bound"] == "not counted"
    assert passes("connectivity", "spawned children")["passes"] == 100 + 100
    assert passes("connectivity", "spawn path points")["passes"] == 3 * 20
    assert passes("slices", "points (slice_1d)")["bound"] == "not counted"
    status = {s: cost.count_status(units.loc[units["stage"] == s, "bound"])
              for s in cost.STAGES}
    # hessian: trace and sharpness tables missing (not counted); robustness and matrices:
    # every item recorded
    assert status == {"train": "exact", "hessian": "lower bound", "matrices": "exact",
                      "slices": "lower bound", "connectivity": "lower bound",
                      "robustness": "exact"}
    h = passes("matrices", "HVP: Hessian")  # the whole matrix's products and the two blocks'
    assert h["passes"] == (30 + 2 * 4) * 10 and h["kind"] == "hvp" and h["bound"] == "exact"
    assert passes("matrices", "HVP graph builds")["passes"] == 10
    g = passes("matrices", "Gauss–Newton/Fisher products")
    assert g["passes"] == (30 + 2 * 4) * 10 and g["kind"] == "gn" and g["bound"] == "exact"
    assert passes("matrices", "Gauss–Newton/Fisher map builds")["passes"] == 10
    units = cost.work_units({**t, "layer_curvature": None}, {RUN: "m"})
    assert passes("matrices", "HVP: Hessian")["passes"] == 30 * 10  # blocks not known
    assert passes("matrices", "layer blocks")["bound"] == "not counted"
    units = cost.work_units(t, {RUN: "m"})
    assert cost.count_status(cost.work_units({**t, "curvature_matrices": None}, {RUN: "m"})
                             .query("stage == 'matrices'")["bound"]) == "lower bound"
    # a flatness table from before the evaluations were recorded: a lower bound
    old = {**t, "flatness": t["flatness"].drop(columns=["ascent_evaluations",
                                                        "pacbayes_evaluations",
                                                        "pacbayes_mag_evaluations"])}
    units = cost.work_units(old, {RUN: "m"})
    assert passes("robustness", "ascent evaluations")["bound"] == "lower bound"
    assert passes("robustness", "PAC-Bayes")["bound"] == "not counted"
    assert math.isnan(passes("robustness", "PAC-Bayes")["passes"])
    # a density table from before n_hvp was recorded: an upper bound from its settings
    old = {**t, "hessian_density": t["hessian_density"].drop(columns="n_hvp")}
    units = cost.work_units(old, {RUN: "m"})
    dens = passes("hessian", "HVP: spectral density")
    assert dens["passes"] == (3 - 1) * 4 * 10 and dens["bound"] == "upper bound"


def test_bezier_training_is_counted_from_the_jobs_metadata(tmp_path):
    t = synthetic_tables(tmp_path)
    jobs = pd.DataFrame([{"pair": f"{RUN}__x", "method": "bezier", "seconds": 2.0,
                          "bezier_images": 300.0},
                         {"pair": f"{RUN}__x", "method": "linear", "seconds": 1.0,
                          "bezier_images": math.nan}])
    units = cost.work_units({**t, "connectivity_jobs": jobs}, {RUN: "m"})
    bend = units[units["item"].str.startswith("Bézier")]
    assert len(bend) == 1 and bend.iloc[0]["passes"] == 300
    assert bend.iloc[0]["kind"] == "fwd_bwd" and bend.iloc[0]["bound"] == "exact"


def test_kernel_rates_against_their_targets(tmp_path):
    """Each kernel's rate by hand: stage rows for slices, robustness and curvature; the linear
    and activation paths over their seconds (not REPAIR's or the Bézier curve's); the B = 128
    runs' steps over their training seconds; no such work: no verdict."""
    t = synthetic_tables(tmp_path)
    per_image = {"m": {"forward": 1e9, "fwd_bwd": 3e9, "hvp": 6e9, "hvp_build": 3e9,
                 "gn": 6e9, "gn_build": 3e9}}
    report = pd.DataFrame([
        {"stage": "slices", "jobs": 2, "gflop": 600.0, "cpu_s_used": 10.0, "count": "exact"},
        {"stage": "robustness", "jobs": 1, "gflop": 100.0, "cpu_s_used": 10.0,
         "count": "lower bound"},
        {"stage": "hessian", "jobs": 0, "gflop": math.nan, "cpu_s_used": 0.0,
         "count": "not counted"}])
    jobs = pd.DataFrame([{"pair": f"{RUN}__x", "method": m, "seconds": s,
                          "bezier_images": math.nan}
                         for m, s in (("linear", 1.0), ("activation", 2.0), ("repair", 50.0),
                                      ("bezier", 50.0))])
    runs = t["runs"].assign(batch_size=128, train_seconds=4.0)  # 100 images: 1 step an epoch
    training = t["training"].assign(step=t["training"]["epoch"])
    rates = cost.kernel_rates(report, {**t, "runs": runs, "training": training,
                                       "connectivity_jobs": jobs},
                              per_image, {RUN: "m"}, 100e9).set_index("kernel")
    assert list(rates.columns) == list(cost.RATE_COLUMNS)[1:]
    assert set(rates.index) == set(cost.RATE_TARGETS)
    assert rates.loc["slices", "of_peak"] == pytest.approx(0.6)
    assert rates.loc["slices", "met"] == "yes"
    assert rates.loc["robustness", "of_peak"] == pytest.approx(0.1)
    assert rates.loc["robustness", "met"] == "no"
    assert rates.loc["robustness", "count"] == "lower bound"
    assert rates.loc["curvature", "met"] == "–"  # no jobs: no verdict
    path = rates.loc["path evaluation"]  # 2 paths × 3 points × 2 splits × 10 images, 3 s
    assert path["gflop"] == pytest.approx(2 * 3 * 2 * 10 * 1.0)
    assert path["seconds"] == pytest.approx(3.0)
    assert path["of_peak"] == pytest.approx(40 / 100)
    train = rates.loc["training steps (B = 128)"]  # 2 epochs of 100 images forward + backward
    assert train["gflop"] == pytest.approx(200 * 3.0) and train["seconds"] == 4.0
    assert train["of_peak"] == pytest.approx(150 / 100) and train["met"] == "yes"
    other = cost.kernel_rates(report, t, per_image, {RUN: "m"}, 100e9).set_index("kernel")
    assert other.loc["training steps (B = 128)", "met"] == "–"  # the run has B = 32
    assert other.loc["path evaluation", "met"] == "–"  # no job metadata
    bench = pd.DataFrame([{"stage": s, "jobs": 1, "cpu_s": 1.0, "tail_s": 0.0, "wall_s": 1.0,
                           "cpu_missing": 0} for s in cost.STAGES])
    units, flops = pd.DataFrame(columns=cost.UNIT_COLUMNS), pd.Series(dtype=float)
    text = cost.format_report(cost.report_frame(bench, units, flops, 100e9, {}), units, flops,
                              100e9, {}, {}, [], rates=rates.reset_index())
    assert "kernel rates against their targets" in text and "≥ 45%" in text


def test_flops_per_image_of_a_linear_layer_match_the_hand_count():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    f = cost.model_flops(model, n=4)
    assert f["forward"] == 2 * 784 * 10
    assert f["fwd_bwd"] == 2 * 2 * 784 * 10  # + the weight gradient; no input gradient
    assert f["hvp"] > 0 and f["hvp_build"] > 0
    assert f["gn"] > 0 and f["gn_build"] > 0
    other = cost.model_flops(model, n=4, hvp_method="rev-rev", gn_cached=False)
    assert other["hvp_build"] == 0 and other["gn_build"] == 0
    # a recomputing G product is a jvp and a vjp: at least a forward and a backward pass
    assert other["gn"] >= f["fwd_bwd"]


def test_report_has_the_documented_columns_and_rates():
    bench = pd.DataFrame([{"stage": s, "jobs": 2, "cpu_s": 10.0, "tail_s": 2.0, "wall_s": 14.0,
                           "cpu_missing": 0} for s in cost.STAGES])
    units = pd.DataFrame([
        {"stage": "train", "item": "steps", "model": "m", "kind": "fwd_bwd", "passes": 10.0,
         "bound": "exact", "note": ""},
        {"stage": "robustness", "item": "pac", "model": "", "kind": "", "passes": math.nan,
         "bound": "not counted", "note": "n/a"}], columns=cost.UNIT_COLUMNS)
    per_image = {"m": {"forward": 1e9, "fwd_bwd": 3e9, "hvp": 6e9, "hvp_build": 3e9,
                 "gn": 6e9, "gn_build": 3e9},
                 "": dict.fromkeys(cost.KINDS, math.nan)}
    flops = cost.unit_flops(units, per_image)
    fixed = {s: {"import_cpu_s": 1.0, "import_wall_s": 1.1, "data_cpu_s": 0.5,
                 "data_wall_s": 0.5, "cpu_s": 1.5, "wall_s": 1.6} for s in cost.STAGES}
    report = cost.report_frame(bench, units, flops, 100e9, fixed)
    assert list(report.columns) == list(cost.REPORT_COLUMNS)
    assert list(report["stage"]) == [*cost.STAGES, "total"]
    train = report.set_index("stage").loc["train"]
    assert train["gflop"] == pytest.approx(30.0) and train["count"] == "exact"
    assert train["cpu_s_used"] == pytest.approx(12.0)
    assert train["gflop_per_cpu_s"] == pytest.approx(2.5)
    assert train["of_peak"] == pytest.approx(0.025)
    assert train["fixed_share"] == pytest.approx(2 * 1.5 / 12)
    rob = report.set_index("stage").loc["robustness"]
    assert rob["count"] == "lower bound" and math.isnan(rob["gflop"])
    total = report.set_index("stage").loc["total"]
    n = len(cost.STAGES)
    assert total["jobs"] == 2 * n and total["cpu_s"] == pytest.approx(10.0 * n)
    line = cost.where_the_time_goes(report, 100e9)
    assert line.startswith("where the time goes: ") and "peak" in line
    assert "warning" not in line
    # a peak measured on a busy machine reads low: a stage "above peak" says so
    low = cost.report_frame(bench, units, flops, 1e9, fixed)
    assert "warning: a stage ran above the measured peak" in cost.where_the_time_goes(low, 1e9)
    text = cost.format_report(report, units, flops, 100e9, {"m": per_image["m"]}, fixed,
                              ["a note"])
    md = cost.format_report(report, units, flops, 100e9, {"m": per_image["m"]}, fixed,
                            ["a note"], markdown=True)
    for col in cost.REPORT_COLUMNS:
        assert col in text and col in md
    assert "| stage | jobs |" in md and "- a note" in text


def test_cost_report_of_the_smoke_study(smoke):
    """End to end on real tables: the connectivity job records its Bézier training, so the bend
    is counted exactly, and every kernel with work in the study gets a rate and a verdict."""
    res = smoke / "results" / "smoke"
    jobs = cost.connectivity_jobs(res)
    assert set(jobs["method"]) == {"linear", "aligned", "activation", "repair", "bezier"}
    bend = jobs[jobs["method"] == "bezier"]
    # tests/smoke.yaml: 10 steps of batch 128 (config.yaml's) over the 1,000 training images:
    # one epoch of 8 steps (the last one 104 images), then 2 more
    assert len(bend) == 1 and bend.iloc[0]["bezier_images"] == 1000 + 2 * 128
    out = cost.cost_report(res, measure_fixed=False, peak_repeats=1)
    units = out["units"]
    b = units[units["item"].str.startswith("Bézier")]
    assert list(b["bound"]) == ["exact"] and b.iloc[0]["passes"] == bend.iloc[0]["bezier_images"]
    rates = out["rates"].set_index("kernel")
    assert set(rates.index) == set(cost.RATE_TARGETS)
    for kernel in ("slices", "robustness", "curvature", "path evaluation"):
        assert rates.loc[kernel, "gflop_per_s"] > 0 and rates.loc[kernel, "met"] in ("yes", "no")
    assert rates.loc["training steps (B = 128)", "met"] == "–"  # the smoke runs have B = 64
