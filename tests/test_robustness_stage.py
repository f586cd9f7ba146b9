"""The robustness, generalisation and plot stages end to end: a tiny trained run through the
robustness stage, hand-made tables through the generalisation stage (τ, Ψ and σ½ computable by
hand), and every figure on synthetic tables with no overlapping tick labels."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from landscape.cli import main
from landscape.config import ConfigError, defaults, validate
from landscape.data import load_prepared
from landscape.plots import overlapping_tick_labels
from landscape.plots.generalisation import correlation_bars, measures_vs_gap
from landscape.plots.robustness import noise_curves
from landscape.study import run_id
from landscape.tables import SCHEMAS, SORT_KEYS, read_table, table_meta, write_table
from landscape.train import TrainConfig, train_run

pytestmark = pytest.mark.usefixtures("one_thread")

PARAMS = {"sigmas": {"absolute": [0.01, 0.3], "relative": [0.1, 1.0]}, "draws": 2,
          "train_size": 64, "test_size": 64, "batch_size": 64,
          "sharpness": {"steps": 2, "average_draws": 2, "eval_size": 64},
          "pacbayes": {"draws": 2, "max_iter": 4}}


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

    root = tmp_path_factory.mktemp("robustness")
    prepared = write_prepared(root / "data.pt", n_train=300, n_test=100)
    return root, prepared, make_run(root / "run", prepared)


def run_stage(root, prepared, run, params=PARAMS, tag="a"):
    out = {"noise": root / f"{tag}_noise.parquet", "flatness": root / f"{tag}_flatness.parquet"}
    rc = main(["robustness", "--threads", "1", "--in", f"data={prepared}", "--in",
               f"checkpoint={run / 'checkpoint.pt'}", "--in", f"snapshots={run / 'snapshots.pt'}",
               "--params", json.dumps(params), "--device", "cpu", "--out",
               f"robustness={out['noise']}", "--out", f"flatness={out['flatness']}",
               "--no-progress"])
    assert rc == 0
    return out


def test_stage_writes_both_tables(trained):
    root, prepared, run = trained
    out = run_stage(root, prepared, run)
    noise = read_table(out["noise"], "robustness")
    # 2 modes × (σ = 0 and two σ > 0) × 2 draws × 2 splits, unique on the sort key
    assert len(noise) == 2 * 3 * 2 * 2
    assert not noise.duplicated(SORT_KEYS["robustness"]).any()
    assert sorted(noise["mode"].unique()) == ["absolute", "relative"]
    assert set(noise["eval_set"]) == {"train[64,seed=0]", "test[64,seed=0]"}
    assert not noise["bn_recomputed"].any()  # no BatchNorm in this model
    zero = noise[noise["sigma"] == 0]
    assert zero.groupby("split")["loss"].nunique().eq(1).all()  # σ = 0 is one evaluation
    big = noise[(noise["mode"] == "absolute") & (noise["sigma"] == 0.3)]
    assert big["loss"].mean() > zero["loss"].mean()  # large noise hurts
    flat = read_table(out["flatness"], "flatness")
    assert len(flat) == 1
    r = flat.iloc[0]
    assert r["run"] == "cnn_sgd_lr0.05_bs64_wd0_s1" and r["eval_size"] == 64
    assert r["eps_sharpness"] >= 0 and r["adaptive_worst"] >= 0 and r["ascent_inside_box"]
    assert r["pacbayes_sigma"] > 0 and r["pacbayes_flatness"] == pytest.approx(
        1 / r["pacbayes_sigma"] ** 2)
    assert r["pacbayes_mag_sigma"] > 0
    # passes the cost model counts: 2-3 evaluations per ascent; per PAC-Bayes search the clean
    # accuracy and 2 draws per σ tried (σ = hi, then at most max_iter = 4 mid-points)
    assert 4 <= r["ascent_evaluations"] <= 6
    for col in ("pacbayes_evaluations", "pacbayes_mag_evaluations"):
        assert r[col] in {1 + 2 * k for k in range(1, 6)}, (col, r[col])
    assert r["weight_norm"] > 0 and r["dist_init"] > 0
    assert r["n_params"] == 20 + 76 + 196 * 8 + 8 + 90
    # the stored options are the schema-completed section
    assert table_meta(out["noise"])["options"]["sharpness"]["epsilon"] == defaults(
        "robustness", "sharpness")["epsilon"]


def test_zero_noise_reproduces_the_checkpoint_exactly(trained):
    """Whole splits, the training's evaluation batch size and layout: the σ = 0 rows equal the
    losses and accuracies the training job recorded, to the last bit."""
    root, prepared, run = trained
    params = {**PARAMS, "train_size": None, "test_size": None,
              "batch_size": defaults("train")["eval_batch_size"],
              "channels_last": defaults("train")["channels_last"]}
    out = run_stage(root, prepared, run, params, tag="zero")
    noise = read_table(out["noise"], "robustness")
    summary = read_table(run / "run.parquet", "runs").iloc[0]
    for split in ("train", "test"):
        zero = noise[(noise["sigma"] == 0) & (noise["split"] == split)]
        assert set(zero["eval_set"]) == {f"{split}[all]"}
        assert (zero["loss"] == summary[f"{split}_loss"]).all(), (zero["loss"].iloc[0],
                                                                  summary[f"{split}_loss"])
        assert (zero["accuracy"] == summary[f"{split}_acc"]).all()


def test_batchnorm_statistics_are_recomputed_and_recorded(trained, tmp_path):
    """cnn_bn: with recompute_bn the running statistics are re-estimated at every point (σ = 0
    too, so its loss differs from the checkpoint's); without it σ = 0 is the checkpoint."""
    _, prepared, _ = trained
    run = make_run(tmp_path / "bn", prepared, model="cnn_bn", epochs=1)
    summary = read_table(run / "run.parquet", "runs").iloc[0]
    exact = {"train_size": None, "test_size": None,
             "batch_size": defaults("train")["eval_batch_size"]}
    for recompute in (True, False):
        out = run_stage(tmp_path, prepared, run, {**PARAMS, **exact, "recompute_bn": recompute},
                        tag=f"bn{recompute}")
        noise = read_table(out["noise"], "robustness")
        flat = read_table(out["flatness"], "flatness")
        assert noise["bn_recomputed"].eq(recompute).all()
        assert flat["bn_recomputed"].eq(recompute).all()
        zero = noise[(noise["sigma"] == 0) & (noise["split"] == "test")]["loss"]
        assert (zero == summary["test_loss"]).all() != recompute


def test_diverged_run_is_skipped_with_a_reason(trained, tmp_path):
    _, prepared, _ = trained
    run = make_run(tmp_path / "div", prepared, lr=1e4)
    out = run_stage(tmp_path, prepared, run)
    for key, name in (("noise", "robustness"), ("flatness", "flatness")):
        assert read_table(out[key], name).empty
        meta = table_meta(out[key])
        assert "diverged" in meta["skipped"] and meta["stage"] == "robustness"
        assert meta["run"] == "cnn_sgd_lr10000_bs64_wd0_s1"


def test_config_section():
    d = defaults("robustness")
    assert d["enabled"] and d["modes"] == ["absolute", "relative"] and d["draws"] >= 5
    for mode in d["modes"]:
        assert 8 <= len(d["sigmas"][mode]) <= 10 and min(d["sigmas"][mode]) > 0
    assert d["pacbayes"]["deviation"] == 0.1 and d["correlations"]["gap"] == "gap_error"
    base = {"study": {"model": ["cnn"], "optimizer": ["sgd"], "lr": [0.1], "batch_size": [32],
                      "seed": [1]}}
    with pytest.raises(ConfigError, match=r"robustness.sigmas.absolute\[0\] = 0"):
        validate({**base, "robustness": {"sigmas": {"absolute": [0, 0.1]}}})
    with pytest.raises(ConfigError, match="unknown key robustness.sharpness.epsilom"):
        validate({**base, "robustness": {"sharpness": {"epsilom": 0.1}}})


# ---------------------------------------------------------------- the generalisation stage

GRID = [(0.1, 32), (0.2, 32), (0.1, 128), (0.2, 128)]


def synthetic_tables(folder):
    """Four finished runs on a 2 × 2 grid (η × B, seed 1) and a diverged fifth. The ε-sharpness
    follows the gap except when η changes at B = 128; σ½ falls as the gap grows."""
    runs, flat, noise, eigs, trace = [], [], [], [], []
    gaps = [0.1, 0.2, 0.3, 0.4]
    eps = [1.0, 2.0, 4.0, 3.0]
    for i, ((lr, bs), gap) in enumerate(zip(GRID + [(5.0, 32)], gaps + [math.nan],
                                            strict=True)):
        rid = run_id("cnn", "sgd", lr, bs, 0.0, 1)
        runs.append({"run": rid, "model": "cnn", "optimizer": "sgd", "rho": 0.0, "lr": lr,
                     "batch_size": bs, "weight_decay": 0.0, "seed": 1,
                     "status": "ok" if i < 4 else "diverged", "diverged_step": -1 if i < 4 else 3,
                     "stop_at_loss": math.nan, "stop_reason": "epochs" if i < 4 else "diverged",
                     "epochs": 2, "n_params": 10, "train_loss": 0.3, "train_acc": 0.9,
                     "test_loss": 0.3 + gap, "test_acc": 0.9 - gap, "gap_loss": gap,
                     "gap_error": gap, "train_seconds": 1.0, "train_size": 100,
                     "test_size": 50, "data_fingerprint": "x"})
        if i == 4:
            continue
        flat.append({"run": rid, "eval_set": "train[64,seed=0]", "eval_size": 64,
                     "base_loss": 0.3, "epsilon": 1e-3, "eps_sharpness": eps[i], "rho": 0.01,
                     "adaptive_worst": 0.1 * (i + 1), "adaptive_average": 0.01,
                     "adaptive_average_se": 0.001, "ascent_steps": 2, "ascent_inside_box": True,
                     "ascent_evaluations": 4, "average_draws": 2,
                     "pacbayes_eval_set": "train[64,seed=0]",
                     "pacbayes_eval_size": 64, "deviation": 0.1, "pacbayes_draws": 2,
                     "pacbayes_sigma": 0.1, "pacbayes_flatness": 100.0 + i,
                     "pacbayes_converged": True, "pacbayes_mag_sigma": 0.3,
                     "pacbayes_mag_flatness": 11.0, "pacbayes_mag_converged": True,
                     "pacbayes_evaluations": 9, "pacbayes_mag_evaluations": 9,
                     "weight_norm": 10.0 - i, "dist_init": 5.0, "n_params": 10,
                     "bn_recomputed": False, "seconds": 1.0})
        # test accuracy 0.9 at σ = 0; at σ = 0.1 and 0.2 it brackets the half-way level 0.5,
        # later for the runs with a smaller gap: σ½ = 0.1·2^((0.9 − 0.5 − x)/0.4)… computed below
        acc = {0.0: 0.9, 0.05: 0.9, 0.1: 0.7 - 0.1 * i, 0.2: 0.3 - 0.05 * i, 0.4: 0.1}
        for mode, (sigma, a), draw, split in itertools.product(
                ["absolute"], acc.items(), [0, 1], ["train", "test"]):
            noise.append({"run": rid, "mode": mode, "sigma": sigma, "draw": draw, "split": split,
                          "loss": 1 - a, "accuracy": a, "eval_set": f"{split}[64,seed=0]",
                          "eval_size": 64, "bn_recomputed": False})
        eigs.append({"run": rid, "eval_set": "train[64,seed=0]", "eval_size": 64,
                     "method": "lanczos", "which": "largest_algebraic", "k": 1,
                     "eigenvalue": 10.0 * (i + 1), "residual": 0.0, "converged": True,
                     "relative_residual": 0.0, "tol": 1e-3, "n_hvp": 5, "seconds": 0.1})
        eigs.append({**eigs[-1], "k": 2, "eigenvalue": -1.0})
        trace.append({"run": rid, "eval_set": "train[64,seed=0]", "eval_size": 64,
                      "method": "hutchinson", "trace": 100.0 - i, "std_error": 1.0,
                      "ci_low": 0.0, "ci_high": 0.0, "n_samples": 6, "n_hvp": 6,
                      "seconds": 0.1, "n_params": 10})
    paths = {}
    for name, rows in (("runs", runs), ("flatness", flat), ("robustness", noise),
                       ("hessian_eigs", eigs), ("hessian_trace", trace)):
        paths[name] = folder / f"{name}.parquet"
        write_table(pd.DataFrame(rows), name, paths[name])
    return paths


def run_generalisation(folder, paths, params=None):
    out = {k: folder / f"{k}.parquet" for k in ("measures", "correlations", "granulated")}
    rc = main(["generalisation", *(a for name, path in paths.items()
                                    for a in ("--in", f"table:{name}={path}")),
               "--params", json.dumps(params or {"n_boot": 200}),
               *(a for k, p in out.items() for a in ("--out", f"{k}={p}"))])
    assert rc == 0
    return {k: read_table(p, k) for k, p in out.items()}


def test_generalisation_stage_hand_computed(tmp_path):
    t = run_generalisation(tmp_path, synthetic_tables(tmp_path))
    m = t["measures"]
    assert len(m) == 4 and "cnn_sgd_lr5_bs32_wd0_s1" not in set(m["run"])  # diverged: out
    m = m.set_index("run")
    first = run_id("cnn", "sgd", 0.1, 32, 0.0, 1)
    assert m.loc[first, "lambda_max"] == 10.0 and m.loc[first, "hessian_trace"] == 100.0
    # run 0: mean test accuracy 0.7 at σ = 0.1 and 0.3 at σ = 0.2; half-way from 0.9 to chance
    # 0.1 is 0.5, half-way between them, so σ½ is their geometric mean √0.02
    assert m.loc[first, "sigma_half_absolute"] == pytest.approx(math.sqrt(0.02), rel=1e-12)
    assert m["sigma_half_relative"].isna().all()  # the mode was not measured
    c = t["correlations"].set_index("measure")
    # ε-sharpness [1, 2, 4, 3] vs gap [.1, .2, .3, .4]: 5 concordant, 1 discordant pair
    assert c.loc["eps_sharpness", "tau"] == pytest.approx(4 / 6)
    assert c.loc["eps_sharpness", "n"] == 4 and c.loc["eps_sharpness", "gap"] == "gap_error"
    # Ψ: η changes at B = 32 (concordant) and at B = 128 (discordant): ψ_η = 0; B changes at
    # η = 0.1 and 0.2, both concordant: ψ_B = 1; Ψ = 0.5 over 4 groups
    assert c.loc["eps_sharpness", "psi"] == pytest.approx(0.5)
    assert c.loc["eps_sharpness", "n_groups"] == 4
    assert c.loc["eps_sharpness", "hparams"] == "lr,batch_size"
    assert c.loc["eps_sharpness", "tau_lo"] <= 4 / 6 <= c.loc["eps_sharpness", "tau_hi"]
    # σ½ falls as the gap grows; it enters negated, so τ = +1
    assert c.loc["sigma_half_absolute", "sign"] == -1
    assert c.loc["sigma_half_absolute", "tau"] == pytest.approx(1.0)
    assert c.loc["weight_norm", "tau"] == pytest.approx(-1.0)
    assert c.loc["sigma_half_relative", "n"] == 0 and np.isnan(c.loc["sigma_half_relative",
                                                                     "tau"])
    g = t["granulated"].set_index(["measure", "hparam"])
    assert g.loc[("eps_sharpness", "lr"), "psi"] == pytest.approx(0.0)
    assert g.loc[("eps_sharpness", "batch_size"), "psi"] == pytest.approx(1.0)
    assert [col.name for col in SCHEMAS["correlations"]][:4] == ["measure", "family", "sign",
                                                                  "gap"]


def test_generalisation_stage_other_gap_and_seeds_only(tmp_path):
    paths = synthetic_tables(tmp_path)
    runs = read_table(paths["runs"], "runs")
    runs["lr"], runs["batch_size"] = 0.1, 32  # one configuration, four "seeds"
    runs["seed"] = range(len(runs))
    runs["run"] = [f"r{i}" for i in range(len(runs))]
    for name in ("flatness", "robustness", "hessian_eigs", "hessian_trace"):
        df = read_table(paths[name], name)
        df["run"] = df["run"].map(dict(zip(read_table(paths["runs"], "runs")["run"], runs["run"],
                                           strict=True)))
        write_table(df, name, paths[name])
    write_table(runs, "runs", paths["runs"])
    t = run_generalisation(tmp_path, paths, {"gap": "gap_loss", "n_boot": 20})
    c = t["correlations"]
    assert set(c["gap"]) == {"gap_loss"} and set(c["hparams"]) == {""}
    assert c["psi"].isna().all() and (c["n_groups"] == 0).all()
    assert c.set_index("measure").loc["eps_sharpness", "tau"] == pytest.approx(4 / 6)
    assert t["granulated"].empty


# ---------------------------------------------------------------- figures

def synthetic_study(n_seeds=2):
    """A 3 × 3 × 2 grid (η, B, wd) × seeds of measures, correlations and noise curves."""
    rng = np.random.default_rng(0)
    rows, noise = [], []
    for lr, bs, wd, seed in itertools.product([0.01, 0.03, 0.1], [32, 128, 512], [0.0, 5e-4],
                                              range(1, n_seeds + 1)):
        rid = run_id("cnn", "sgd", lr, bs, wd, seed)
        gap = 0.02 + 0.05 * lr * 10 / (bs / 32) ** 0.5 + rng.normal(0, 0.005)
        rows.append({"run": rid, "model": "cnn", "optimizer": "sgd",
                     "rho": 0.0, "lr": lr, "batch_size": bs,
                     "weight_decay": wd, "seed": seed, "train_loss": 0.2, "train_acc": 0.93,
                     "test_loss": 0.2 + gap, "test_acc": 0.93 - gap, "gap_loss": gap,
                     "gap_error": gap, "eps_sharpness": 100 * gap * rng.uniform(0.5, 2),
                     "adaptive_worst": 0.05 * rng.uniform(0.5, 2),
                     "adaptive_average": 1e-3 * rng.uniform(0.5, 2),
                     "pacbayes_sigma": 0.1, "pacbayes_flatness": 100 * rng.uniform(0.5, 2),
                     "pacbayes_mag_sigma": 0.3, "pacbayes_mag_flatness": 10 * rng.uniform(1, 2),
                     "weight_norm": 20 * rng.uniform(0.9, 1.1),
                     "dist_init": 15 * rng.uniform(0.9, 1.1),
                     "lambda_max": 10 ** rng.uniform(0, 2.5),
                     "hessian_trace": 10 ** rng.uniform(1, 3.5),
                     "sigma_half_absolute": 0.15 * rng.uniform(0.8, 1.2),
                     "sigma_half_relative": 1.0 * rng.uniform(0.8, 1.2),
                     # a few runs censored at the σ grid's bound (drawn hollow)
                     "sigma_half_absolute_censoring": "right" if (seed, bs) == (1, 32)
                     else "crossed", "sigma_half_relative_censoring": "crossed"})
        for mode, sigmas in (("absolute", [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]),
                             ("relative", [0.05, 0.1, 0.3, 1.0, 3.0])):
            scale = 0.15 if mode == "absolute" else 1.0
            for sigma, draw, split in itertools.product([0.0, *sigmas], range(3),
                                                        ["train", "test"]):
                acc = 0.1 + 0.8 / (1 + (sigma / scale) ** 3) + (rng.normal(0, 0.02) if sigma
                                                                 else 0)
                noise.append({"run": rid, "mode": mode, "sigma": sigma, "draw": draw,
                              "split": split, "loss": 2 - acc, "accuracy": acc,
                              "eval_set": f"{split}[1024,seed=0]", "eval_size": 1024,
                              "bn_recomputed": False})
    return pd.DataFrame(rows), pd.DataFrame(noise)


@pytest.fixture(scope="module")
def study():
    from landscape.generalisation import study_correlations

    measures, noise = synthetic_study()
    corr, gran = study_correlations(measures, "gap_error", n_boot=100, seed=0)
    runs = measures.assign(status="ok")
    return measures, noise, corr, gran, runs


@pytest.mark.parametrize("figure", ["noise", "measures", "bars"])
def test_figures_have_no_overlapping_tick_labels(study, figure):
    import matplotlib.pyplot as plt

    measures, noise, corr, gran, runs = study
    fig = {"noise": lambda: noise_curves(noise, runs),
           "measures": lambda: measures_vs_gap(measures, corr),
           "bars": lambda: correlation_bars(corr, gran)}[figure]()
    try:
        assert overlapping_tick_labels(fig) == []
        assert len(fig.axes) >= 1
    finally:
        plt.close(fig)


def test_figures_cope_with_nothing_measured():
    import matplotlib.pyplot as plt

    from landscape.tables import empty

    for fig in (noise_curves(empty("robustness"), empty("runs")),
                measures_vs_gap(empty("measures"), empty("correlations")),
                correlation_bars(empty("correlations"), empty("granulated"))):
        assert overlapping_tick_labels(fig) == []
        plt.close(fig)


def test_plot_stages_write_pngs(study, tmp_path):
    measures, noise, corr, gran, runs = study
    paths = {}
    for name, df in (("robustness", noise), ("measures", measures), ("correlations", corr),
                     ("granulated", gran)):
        paths[name] = tmp_path / f"{name}.parquet"
        write_table(df, name, paths[name])
    full_runs = runs.assign(diverged_step=-1, stop_at_loss=math.nan, stop_reason="epochs",
                            epochs=2, n_params=10, train_seconds=1.0,
                            train_size=100, test_size=50, data_fingerprint="x")
    full_runs = full_runs[[c.name for c in SCHEMAS["runs"]]]
    write_table(full_runs, "runs", tmp_path / "runs.parquet")
    figs = {k: tmp_path / f"{k}.png" for k in ("noise", "measures", "bars")}
    assert main(["plot-robustness", "--robustness", str(paths["robustness"]), "--runs",
                 str(tmp_path / "runs.parquet"), "--params", '{"dpi": 50}', "--out",
                 str(figs["noise"])]) == 0
    assert main(["plot-generalisation", "--measures", str(paths["measures"]),
                 "--correlations", str(paths["correlations"]), "--granulated",
                 str(paths["granulated"]), "--params", '{"dpi": 50}', "--out-measures",
                 str(figs["measures"]), "--out-correlations", str(figs["bars"])]) == 0
    for path in figs.values():
        assert path.stat().st_size > 5_000
