"""The hessian, sharpness and plot-hessian stages end to end on a tiny trained run."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from landscape.checkpoints import load_snapshots
from landscape.cli import main
from landscape.data import load_prepared
from landscape.io import save_verified
from landscape.tables import SCHEMAS, read_table, table_meta, write_table
from landscape.train import TrainConfig, train_run

PARAMS = {"eval_size": 64, "eval_seed": 0, "batch_size": 16, "seed": 0,
          "eigs": {"top_k": 2, "tol": 1e-3, "max_iter": 40, "power_k": 1, "power_max_iter": 30},
          "trace": {"hutchinson": 6, "hutchpp": 6},
          "density": {"n_starts": 2, "n_steps": 6, "grid_size": 64},
          "sharpness": {"tol": 3e-2, "max_iter": 15}, "repeats": 2}


def make_run(folder, prepared, **kw):
    train, test, fp = load_prepared(prepared)
    base = dict(model="cnn", optimizer="sgd", lr=0.05, batch_size=64, weight_decay=0.0, seed=1,
                epochs=2, momentum=0.9, model_options={"width": 2, "hidden": 8},
                snapshot_steps=[3])
    base.update(kw)
    train_run(TrainConfig.from_config(base), train, test, folder, fingerprint=fp, progress=False)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from .conftest import write_prepared

    root = tmp_path_factory.mktemp("hessian")
    prepared = write_prepared(root / "data.pt")
    return root, prepared, make_run(root / "run", prepared)


def run_hessian(root, prepared, run, params=PARAMS, tag="a"):
    out = {k: root / f"{tag}_{k}.parquet" for k in ("eigs", "trace", "density", "repeats")}
    rc = main(["hessian", "--threads", "1", "--in", f"data={prepared}", "--in",
               f"checkpoint={run / 'checkpoint.pt'}", "--params", json.dumps(params), "--device",
               "cpu", "--out", f"hessian_eigs={out['eigs']}", "--out",
               f"hessian_trace={out['trace']}", "--out", f"hessian_density={out['density']}",
               "--out", f"curvature_repeats={out['repeats']}", "--file",
               f"eigvecs={root / f'{tag}_eigvecs.pt'}", "--no-progress"])
    assert rc == 0
    names = {"repeats": "curvature_repeats"}
    return {k: read_table(p, names.get(k, f"hessian_{k}")) for k, p in out.items()}, out


def run_sharpness(root, prepared, run, params=PARAMS, tag="a"):
    out = root / f"{tag}_sharpness.parquet"
    rc = main(["sharpness", "--threads", "1", "--in", f"data={prepared}", "--in",
               f"snapshots={run / 'snapshots.pt'}", "--params", json.dumps(params), "--device",
               "cpu", "--out", f"sharpness_trajectory={out}", "--no-progress"])
    assert rc == 0
    return read_table(out, "sharpness_trajectory"), out


def test_hessian_stage_tables(trained):
    root, prepared, run = trained
    t, _ = run_hessian(root, prepared, run)
    eigs = t["eigs"]
    assert set(eigs["eval_set"]) == {"train[64,seed=0]"} and set(eigs["eval_size"]) == {64}
    lz = eigs[eigs["method"] == "lanczos"]
    top = lz[lz["which"] == "largest_algebraic"].sort_values("k")
    assert top["k"].tolist() == [1, 2] and top["eigenvalue"].is_monotonic_decreasing
    low = lz[lz["which"] == "smallest_algebraic"]
    assert len(low) == 1 and low["eigenvalue"].iloc[0] <= top["eigenvalue"].iloc[-1]
    assert (lz["converged"] | (lz["n_hvp"] == 40)).all()
    pw = eigs[eigs["method"] == "power"]
    assert pw["which"].tolist() == ["largest_magnitude"]
    # a Rayleigh quotient never exceeds the spectral radius (here λ_max ≈ −λ_min, so power
    # iteration converges slowly and its relative-change rule may stop it well short)
    biggest = max(top["eigenvalue"].iloc[0], -low["eigenvalue"].iloc[0])
    assert abs(pw["eigenvalue"].iloc[0]) <= biggest * (1 + 1e-6)
    tr = t["trace"]
    assert sorted(tr["method"]) == ["hutchinson", "hutchpp"]
    assert (tr["n_hvp"] == 6).all() and (tr["std_error"] > 0).all()
    assert tr["n_params"].iloc[0] == 20 + 76 + 196 * 8 + 8 + 90
    d = t["density"]
    assert len(d) == 64 and d["n_starts"].iloc[0] == 2
    # one extra start of at most n_steps = 6 products (the first reuses the λ_max Lanczos run)
    assert d["n_hvp"].nunique() == 1 and 0 < d["n_hvp"].iloc[0] <= (2 - 1) * 6
    assert np.trapezoid(d["density"], d["eigenvalue"]) == pytest.approx(1.0, abs=1e-9)


def test_hessian_stage_is_deterministic(trained):
    root, prepared, run = trained
    a, _ = run_hessian(root, prepared, run, tag="x")
    b, _ = run_hessian(root, prepared, run, tag="y")
    for key in a:
        keep = [c for c in a[key].columns if c != "seconds"]
        pd.testing.assert_frame_equal(a[key][keep], b[key][keep])


def test_hessian_stage_batch_size_does_not_change_results(trained):
    root, prepared, run = trained
    a, _ = run_hessian(root, prepared, run, tag="b16")
    b, _ = run_hessian(root, prepared, run, {**PARAMS, "batch_size": 64, "hvp_method": "rev-rev"},
                       tag="b64")
    ea, eb = a["eigs"], b["eigs"]
    lz = ea["method"] == "lanczos"
    np.testing.assert_allclose(ea[lz]["eigenvalue"], eb[lz]["eigenvalue"], rtol=1e-4)


def test_sharpness_stage(trained):
    root, prepared, run = trained
    df, _ = run_sharpness(root, prepared, run)
    snaps = load_snapshots(run / "snapshots.pt")
    assert df["step"].tolist() == snaps["step"] and df["epoch"].tolist() == snaps["epoch"]
    assert (df["lr"] == 0.05).all() and (df["momentum"] == 0.9).all()
    assert df["two_over_lr"].tolist() == pytest.approx([40.0] * len(df))
    assert df["eos_threshold"].tolist() == pytest.approx([(2 + 2 * 0.9) / 0.05] * len(df))
    assert (df["lambda_max"] > 0).all() and (df["n_hvp"] >= 2).all()
    assert df["eval_loss"].iloc[-1] < df["eval_loss"].iloc[0]
    # the last snapshot is the final checkpoint: same λ_max as the hessian stage, within tolerance
    t, _ = run_hessian(root, prepared, run, tag="s")
    lmax = t["eigs"].query("method == 'lanczos' and which == 'largest_algebraic' and k == 1")
    assert df["lambda_max"].iloc[-1] == pytest.approx(lmax["eigenvalue"].iloc[0], rel=3e-2)


def test_sharpness_stage_measures_the_dense_snapshots_too(trained, tmp_path):
    """train.sharpness_snapshots: the stage measures every snapshot in step order, flags the
    trajectory ones, and the trajectory rows equal those of a run without dense snapshots
    (same weights; the warm start chain differs, so to the Lanczos tolerance)."""
    root, prepared, run = trained
    dense = make_run(tmp_path / "dense", prepared, sharpness_snapshots=5)
    df, _ = run_sharpness(tmp_path, prepared, dense)
    snaps = load_snapshots(dense / "snapshots.pt")
    assert len(snaps["dense"]["step"]) == 5
    assert df["step"].tolist() == sorted(snaps["step"] + snaps["dense"]["step"])
    assert df.loc[df["trajectory"], "step"].tolist() == snaps["step"]
    base, _ = run_sharpness(root, prepared, run, tag="d")
    assert base["trajectory"].all()
    traj = df[df["trajectory"]].reset_index(drop=True)
    assert traj["eval_loss"].tolist() == base["eval_loss"].tolist()
    np.testing.assert_allclose(traj["lambda_max"], base["lambda_max"], rtol=3e-2)
    steps_per_epoch = 10  # 600 training images / 64, rounded up
    sub = df[~df["trajectory"]]
    assert sub["epoch"].tolist() == pytest.approx((sub["step"] / steps_per_epoch).tolist())
    # the figure: one line through every snapshot, markers at the trajectory ones
    from landscape.plots.hessian import sharpness_trajectories

    fig = sharpness_trajectories(df, read_table(dense / "run.parquet", "runs"))
    line = fig.axes[0].lines[0]
    assert len(line.get_xdata()) == len(df)
    assert list(line.get_markevery()) == list(np.flatnonzero(df["trajectory"]))


def test_sharpness_uses_the_schedule_and_adam_has_no_threshold(trained, tmp_path):
    root, prepared, run = trained
    # the SGD run's snapshots relabelled as an Adam run with a cosine schedule: the stage reads
    # optimiser, η and schedule from the metadata only
    snaps = load_snapshots(run / "snapshots.pt")
    snaps.pop("sha256", None)
    snaps["meta"] = {**snaps["meta"], "config": {**snaps["meta"]["config"], "optimizer": "adam",
                                                 "lr": 1e-3, "schedule": "cosine"}}
    (tmp_path / "adam").mkdir()
    save_verified(tmp_path / "adam" / "snapshots.pt", snaps)
    df, _ = run_sharpness(tmp_path, prepared, tmp_path / "adam")
    assert df["optimizer"].eq("adam").all() and df["eos_threshold"].isna().all()
    assert df["momentum"].isna().all()
    cfg = TrainConfig.from_config(dict(
        model="cnn", optimizer="adam", lr=1e-3, batch_size=64, weight_decay=0.0,
                      seed=1, epochs=2, schedule="cosine"))
    from landscape.train import lr_at

    expected = [lr_at(cfg, max(math.ceil(e) - 1, 0)) for e in df["epoch"]]
    assert df["lr"].tolist() == pytest.approx(expected)
    assert df["lr"].iloc[-1] < df["lr"].iloc[0]  # epoch 2 ran at the cosine-decayed rate
    assert df["two_over_lr"].tolist() == pytest.approx([2 / lr for lr in expected])


def test_diverged_run_is_skipped_with_a_reason(trained, tmp_path):
    root, prepared, _ = trained
    run = make_run(tmp_path / "div", prepared, lr=1e4)
    t, out = run_hessian(tmp_path, prepared, run)
    for key, frame in t.items():
        assert frame.empty
        meta = table_meta(out[key])
        assert "diverged" in meta["skipped"] and meta["stage"] == "hessian"
    # the sharpness stage measures the snapshots saved before the divergence; the last one
    # (step 3, just before the loss overflowed) has non-finite curvature: NaN, not converged
    df, _ = run_sharpness(tmp_path, prepared, run)
    assert df["step"].tolist() == load_snapshots(run / "snapshots.pt")["step"] == [0, 3]
    assert np.isfinite(df["lambda_max"].iloc[0]) and df["converged"].iloc[0]
    assert np.isnan(df["lambda_max"].iloc[1]) and not df["converged"].iloc[1]


def test_unknown_options_are_errors(trained, capsys):
    root, prepared, run = trained
    bad = {**PARAMS, "eigs": {**PARAMS["eigs"], "topk": 3}}
    outs = ["--out", "hessian_eigs=a", "--out", "hessian_trace=b", "--out",
            "hessian_density=c", "--out", "curvature_repeats=d", "--file", "eigvecs=e"]
    ins = ["--in", f"data={prepared}", "--in", f"checkpoint={run / 'checkpoint.pt'}"]
    rc = main(["hessian", *ins, "--params", json.dumps(bad), *outs])
    assert rc == 1 and "Unknown option(s) ['topk'] for EigOptions" in capsys.readouterr().err
    bad = {**PARAMS, "eval_split": "valid"}
    rc = main(["hessian", *ins, "--params", json.dumps(bad), *outs, "--no-progress"])
    assert rc == 1 and "Unknown split 'valid'" in capsys.readouterr().err


def test_plot_stage_draws_every_figure(trained, tmp_path):
    root, prepared, run = trained
    t, out = run_hessian(root, prepared, run, tag="p")
    _, sharp = run_sharpness(root, prepared, run, tag="p")
    runs = read_table(run / "run.parquet", "runs")
    # a second, diverged run that has no curvature rows: it must be listed, not crash the plot
    runs = pd.concat([runs, runs.assign(run="other_run", status="diverged")], ignore_index=True)
    write_table(runs, "runs", tmp_path / "runs.parquet")
    figs = {k: tmp_path / f"{k}.png" for k in ("density", "generalisation", "sharpness")}
    rc = main(["plot-hessian", "--eigs", str(out["eigs"]), "--trace", str(out["trace"]),
               "--density", str(out["density"]), "--sharpness", str(sharp),
               "--runs", str(tmp_path / "runs.parquet"), "--params", '{"dpi": 60}',
               "--out-density", str(figs["density"]),
               "--out-generalisation", str(figs["generalisation"]),
               "--out-sharpness", str(figs["sharpness"])])
    assert rc == 0
    for path in figs.values():
        assert path.stat().st_size > 5_000


def test_schemas_registered():
    for name in ("hessian_eigs", "hessian_trace", "hessian_density", "sharpness_trajectory"):
        cols = [c.name for c in SCHEMAS[name]]
        assert cols[:3] == ["run", "eval_set", "eval_size"]
    assert {"two_over_lr", "eos_threshold", "lambda_max"} <= {
        c.name for c in SCHEMAS["sharpness_trajectory"]}


def test_gather_of_several_tables_carries_skips(trained, tmp_path):
    root, prepared, run = trained
    _, ok = run_hessian(root, prepared, run, tag="g")
    _, ok_sharp = run_sharpness(root, prepared, run, tag="g")
    div = make_run(tmp_path / "div", prepared, lr=1e4)
    _, bad = run_hessian(tmp_path, prepared, div, tag="g")
    _, bad_sharp = run_sharpness(tmp_path, prepared, div, tag="g")
    outs = {k: tmp_path / f"all_{k}.parquet" for k in ("eigs", "trace", "density", "sharpness")}
    argv = ["gather"]
    for key, pair in (("eigs", (bad["eigs"], ok["eigs"])), ("trace", (bad["trace"], ok["trace"])),
                      ("density", (bad["density"], ok["density"])),
                      ("sharpness", (bad_sharp, ok_sharp))):
        table = "sharpness_trajectory" if key == "sharpness" else f"hessian_{key}"
        argv += ["--table", table, "--out", str(outs[key]), "--inputs", *map(str, pair)]
    assert main(argv) == 0
    eigs = read_table(outs["eigs"], "hessian_eigs")
    assert set(eigs["run"]) == {"cnn_sgd_lr0.05_bs64_wd0_s1"}
    skipped = table_meta(outs["eigs"])["skipped_runs"]
    assert [s["run"] for s in skipped] == ["cnn_sgd_lr10000_bs64_wd0_s1"]
    assert skipped[0]["stage"] == "hessian" and "diverged" in skipped[0]["reason"]
    sharp = read_table(outs["sharpness"], "sharpness_trajectory")
    assert sharp["run"].tolist() == sorted(sharp["run"])  # both runs, sorted by run then step
    assert "skipped_runs" not in table_meta(outs["sharpness"])  # the diverged run was measured


def test_curvature_is_repeated_on_other_subsets(trained):
    """Subset 0 repeats the main numbers; subset 1 is another seeded subset with its own λ_max."""
    root, prepared, run = trained
    t, _ = run_hessian(root, prepared, run, tag="rep")
    rep, eigs, trace = t["repeats"], t["eigs"], t["trace"]
    assert rep["subset"].tolist() == [0, 1]
    assert rep["eval_set"].tolist() == ["train[64,seed=0]", "train[64,seed=1]"]
    top = eigs[(eigs["method"] == "lanczos") & (eigs["which"] == "largest_algebraic")
               & (eigs["k"] == 1)]["eigenvalue"].iloc[0]
    assert rep["lambda_max"].iloc[0] == top
    assert rep["trace"].iloc[0] == trace[trace["method"] == "hutchinson"]["trace"].iloc[0]
    assert rep["lambda_max"].iloc[1] != rep["lambda_max"].iloc[0]
    assert rep["lambda_max"].iloc[1] > 0 and np.isfinite(rep["trace"].iloc[1])


def test_curvature_matrices_stage(trained):
    """H, G and F of one run: H's numbers agree with the curvature stage's (the same probes give
    the same Hutchinson trace; λ_max to the Lanczos tolerance), G and F are PSD, and a switch-off
    list is an error-free empty stage."""
    root, prepared, run = trained
    t, _ = run_hessian(root, prepared, run, tag="m")
    params = {**PARAMS, "matrices": {"names": ["hessian", "ggn", "ef"], "lanczos_steps": 30,
                                     "hutchinson": PARAMS["trace"]["hutchinson"]}}
    out = {n: root / f"m_{n}.parquet"
           for n in ("curvature_matrices", "matrix_density", "layer_curvature")}
    rc = main(["curvature-matrices", "--threads", "1", "--in", f"data={prepared}", "--in",
               f"checkpoint={run / 'checkpoint.pt'}", "--params", json.dumps(params), "--device",
               "cpu", *(a for n, p in out.items() for a in ("--out", f"{n}={p}")),
               "--no-progress"])
    assert rc == 0
    cm = read_table(out["curvature_matrices"], "curvature_matrices").set_index("matrix")
    assert list(cm.index) == ["hessian", "ggn", "ef"]  # in the order of `names`
    assert cm["converged"].all() and (cm["lanczos_steps"] == 30).all()
    lmax = t["eigs"].query("method == 'lanczos' and which == 'largest_algebraic' and k == 1")
    assert cm.loc["hessian", "lambda_max"] == pytest.approx(lmax["eigenvalue"].iloc[0], rel=2e-3)
    hutch = t["trace"].set_index("method").loc["hutchinson", "trace"]
    assert cm.loc["hessian", "trace"] == pytest.approx(hutch, rel=1e-9)
    for m in ("ggn", "ef"):
        assert cm.loc[m, "lambda_min"] > -1e-6 * cm.loc[m, "lambda_max"]
        assert cm.loc[m, "trace"] > 0
    layers = read_table(out["layer_curvature"], "layer_curvature")
    assert set(layers["matrix"]) == {"hessian", "ggn", "ef"}
    h = layers[layers["matrix"] == "hessian"]
    assert h["lambda_max"].notna().all() and (h["n_mv"] == 8).all()  # layer_matrices: hessian
    assert layers[layers["matrix"] != "hessian"]["lambda_max"].isna().all()
    assert h["trace"].sum() == pytest.approx(cm.loc["hessian", "trace"], rel=1e-9)
    assert (h["lambda_max"] <= cm.loc["hessian", "lambda_max"] * (1 + 1e-2)).all()
    dens = read_table(out["matrix_density"], "matrix_density")
    for m, d in dens.groupby("matrix"):
        d = d.sort_values("eigenvalue")
        assert np.trapezoid(d["density"], d["eigenvalue"]) == pytest.approx(1.0, rel=1e-6), m
