"""The connectivity and spawn stages through the CLI on tiny trained runs: tables that match
their schemas, exact endpoints, zero barriers where the maths says so, BatchNorm statistics
re-estimated for BatchNorm runs, diverged runs skipped with a reason; the config's cross-checks
(pairs, spawn steps) as one-line errors; the figures on synthetic tables."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from landscape.checkpoints import load_model
from landscape.cli import main
from landscape.config import ConfigError, validate
from landscape.connectivity.pairs import pair_table, spawn_table
from landscape.data import eval_subset, load_prepared
from landscape.evaluate import evaluate
from landscape.evaluator import use_channels_last
from landscape.io import load_verified, save_verified
from landscape.plots import overlapping_tick_labels
from landscape.plots.connectivity import barrier_chart, path_curves, spawn_chart
from landscape.study import run_table
from landscape.tables import SCHEMAS, gather, read_table, table_meta
from landscape.train import TrainConfig, train_run

from .conftest import REPO, write_prepared

pytestmark = pytest.mark.usefixtures("one_thread")

PARAMS = {"points": 5, "train_size": 200, "test_size": 100, "batch_size": 100,
          "bezier": {"steps": 20, "batch_size": 64}}
OUTS = {"connectivity": "paths", "barriers": "barriers", "alignment": "alignment"}
STEPS_PER_EPOCH = 19  # 600 images, batch 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Two seeds of a tiny cnn and of a tiny cnn_bn, two epochs on 600 synthetic images."""
    root = tmp_path_factory.mktemp("connectivity_stage")
    data = write_prepared(root / "data.pt", 600, 200)
    train, test, fp = load_prepared(data)
    for model in ("cnn", "cnn_bn"):
        for seed in (1, 2):
            cfg = TrainConfig.from_config(dict(
                model=model, optimizer="sgd", lr=0.05, batch_size=32, weight_decay=0.0,
                seed=seed, epochs=2, model_options={"width": 3, "hidden": 8},
                snapshot_steps=[5], eval_batch_size=512))
            train_run(cfg, train, test, root / f"{model}_{seed}", fingerprint=fp, device="cpu",
                      progress=False)
    return root


def connect(root: Path, a: str, b: str, tag: str, params=PARAMS) -> dict[str, Path]:
    out = {name: root / f"{tag}.{key}.parquet" for name, key in OUTS.items()}
    code = main(["connectivity", "--in", f"data={root / 'data.pt'}", "--in",
                 f"checkpoint_a={root}/{a}/checkpoint.pt", "--in",
                 f"checkpoint_b={root}/{b}/checkpoint.pt", "--job", f"pair={tag}", "--params",
                 json.dumps(params), "--device", "cpu", "--no-progress",
                 *(a for name, path in out.items() for a in ("--out", f"{name}={path}"))])
    assert code == 0
    return out


def spawn(root: Path, run: str, step: int, tag: str) -> tuple[int, Path]:
    out = root / f"{tag}.spawn.parquet"
    code = main(["spawn", "--in", f"data={root / 'data.pt'}", "--in",
                 f"snapshots={root}/{run}/snapshots.pt", "--job", f"spawn_step={step}",
                 "--params", json.dumps(PARAMS), "--device", "cpu", "--no-progress", "--out",
                 f"spawn_barriers={out}"])
    return code, out


@pytest.fixture(scope="module")
def cnn_pair(trained) -> dict[str, pd.DataFrame]:
    out = connect(trained, "cnn_1", "cnn_2", "cnn")
    return {name: read_table(path, name) for name, path in out.items()}


def test_tables_match_their_schemas(cnn_pair):
    for name, df in cnn_pair.items():
        assert list(df.columns) == [c.name for c in SCHEMAS[name]], name
    paths, barriers = cnn_pair["connectivity"], cnn_pair["barriers"]
    assert len(paths) == 3 * 5 * 2 and len(barriers) == 3 * 2
    assert set(paths["method"]) == {"linear", "aligned", "bezier"}
    assert sorted(paths["t"].unique()) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert set(paths["eval_set"]) == {"train[200,seed=0]", "test[100,seed=0]"}
    assert not paths["bn_recomputed"].any() and not barriers["bn_recomputed"].any()
    assert dict(zip(barriers["method"], barriers["endpoint_b"], strict=False)) == {
        "linear": "raw", "aligned": "aligned", "bezier": "aligned"}
    assert (barriers[["loss_barrier", "error_barrier", "loss_barrier_mean",
                      "error_barrier_mean"]] >= 0).all().all()
    for (method, split), g in paths.groupby(["method", "split"]):  # the mean form by brute force
        row = barriers[(barriers["method"] == method) & (barriers["split"] == split)].iloc[0]
        ends = g.set_index("t")["loss"]
        assert row["loss_barrier_mean"] == pytest.approx(g["loss"].max() - (ends[0.0] + ends[1.0])
                                                         / 2, abs=1e-12)
    (align,) = cnn_pair["alignment"].itertuples()  # the default methods: weight matching only
    assert align.method == "weight"
    assert align.converged and align.distance_after <= align.distance_before


def test_endpoints_are_the_checkpoints(cnn_pair, trained):
    """t = 0 is run A and t = 1 run B on every path (the aligned B computes B's function)."""
    train, _, _ = load_prepared(trained / "data.pt")
    paths = cnn_pair["connectivity"]
    train_rows = paths[paths["split"] == "train"]
    for t, run in ((0.0, "cnn_1"), (1.0, "cnn_2")):
        model, _ = load_model(trained / run / "checkpoint.pt")
        x, y = eval_subset(train, 200, 0).tensors()
        (x,) = use_channels_last(model, x)
        loss, acc = evaluate(model, x, y, 100)
        at = train_rows[train_rows["t"] == t].set_index("method")
        assert at.loc["linear", "loss"] == loss and at.loc["linear", "accuracy"] == acc
        assert at.loc["aligned", "loss"] == pytest.approx(loss, abs=1e-5)
        assert at.loc["bezier", "loss"] == pytest.approx(loss, abs=1e-5)


def test_barrier_of_a_run_with_itself_is_zero(trained):
    out = connect(trained, "cnn_1", "cnn_1", "self",
                  {**PARAMS, "bezier": {"steps": 0}})
    barriers = read_table(out["barriers"], "barriers")
    assert len(barriers) == 6
    assert (barriers[["loss_barrier", "error_barrier", "loss_barrier_mean",
                      "error_barrier_mean"]] == 0).all().all()
    assert read_table(out["alignment"], "alignment")["n_permuted"].item() == 0


def test_batchnorm_runs_record_recomputed_statistics(trained):
    out = connect(trained, "cnn_bn_1", "cnn_bn_2", "bn")
    for name in ("connectivity", "barriers"):
        assert read_table(out[name], name)["bn_recomputed"].all(), name
    off = connect(trained, "cnn_bn_1", "cnn_bn_2", "bn_off", {**PARAMS, "recompute_bn": False,
                                                                  "methods": ["linear"]})
    assert not read_table(off["connectivity"], "connectivity")["bn_recomputed"].any()


def test_activation_matching_and_repair_on_a_batchnorm_pair(trained):
    """The new methods on a cnn_bn pair: a path per method, an alignment row per matching
    method, REPAIR's path ends where the aligned line does (REPAIR is the identity at the
    endpoints) and has a finite barrier; the activation-aligned B is B's function."""
    methods = ["linear", "aligned", "activation", "repair"]
    out = connect(trained, "cnn_bn_1", "cnn_bn_2", "bn_new", {**PARAMS, "methods": methods})
    tables = {name: read_table(path, name) for name, path in out.items()}
    for name, df in tables.items():
        assert list(df.columns) == [c.name for c in SCHEMAS[name]], name
    paths, barriers, align = tables["connectivity"], tables["barriers"], tables["alignment"]
    assert len(paths) == 4 * 5 * 2 and len(barriers) == 4 * 2
    assert paths.groupby("method").size().to_dict() == {m: 10 for m in methods}
    assert paths["bn_recomputed"].all() and barriers["bn_recomputed"].all()
    assert dict(zip(barriers["method"], barriers["endpoint_b"], strict=False)) == {
        "linear": "raw", "aligned": "aligned", "activation": "activation", "repair": "aligned"}
    assert np.isfinite(barriers[["loss_barrier", "error_barrier", "loss_barrier_mean"]]).all().all()
    assert (barriers[["loss_barrier", "error_barrier"]] >= 0).all().all()
    assert sorted(align["method"]) == ["activation", "weight"]
    assert align["converged"].all() and (align["n_units"] == 3 + 6 + 8).all()
    act = align.set_index("method").loc["activation"]
    assert act["iterations"] == 1 and act["seed"] == 0 and 0 < act["objective"] <= 17
    assert act["distance_after"] < act["distance_before"]
    loss = paths.set_index(["method", "split", "t"])["loss"]
    for split in ("train", "test"):
        for t in (0.0, 1.0):
            assert loss["repair", split, t] == pytest.approx(loss["aligned", split, t], abs=1e-5)
        assert loss["activation", split, 0.0] == loss["linear", split, 0.0]
        assert loss["activation", split, 1.0] == pytest.approx(loss["linear", split, 1.0],
                                                               abs=1e-5)
        assert loss["repair", split, 0.5] != loss["aligned", split, 0.5]
    # without an aligned path or REPAIR no weight matching is run
    only = connect(trained, "cnn_bn_1", "cnn_bn_2", "bn_act",
                   {**PARAMS, "methods": ["activation"]})
    assert list(read_table(only["alignment"], "alignment")["method"]) == ["activation"]


def test_different_architectures_are_refused(trained, capsys):
    with pytest.raises(AssertionError):
        connect(trained, "cnn_1", "cnn_bn_1", "mixed")
    assert "different architectures" in capsys.readouterr().err


def _diverge(src: Path, dest: Path) -> None:
    dest.mkdir()
    for name in ("checkpoint.pt", "snapshots.pt"):
        blob = load_verified(src / name)
        blob["meta"] = {**blob["meta"], "status": "diverged", "diverged_step": 7}
        save_verified(dest / name, blob)


def test_diverged_runs_are_skipped_with_a_reason(trained, tmp_path):
    _diverge(trained / "cnn_2", trained / "bad")
    out = connect(trained, "cnn_1", "bad", "diverged")
    for name, path in out.items():
        assert len(read_table(path, name)) == 0
        meta = table_meta(path)
        assert "diverged at step 7" in meta["skipped"] and meta["stage"] == "connectivity"
    gathered = gather([out["barriers"]], "barriers", tmp_path / "barriers.parquet")
    assert gathered.empty
    skipped = table_meta(tmp_path / "barriers.parquet")["skipped_runs"]
    assert [(e["run"], e["stage"]) for e in skipped] == [("cnn_sgd_lr0.05_bs32_wd0_s2",
                                                          "connectivity")]
    code, path = spawn(trained, "bad", 0, "diverged")
    assert code == 0 and len(read_table(path, "spawn_barriers")) == 0
    assert table_meta(path)["stage"] == "spawn"


def test_spawning(trained):
    """Children spawned at the final step are the run (barrier 0, no training); from step 5
    they train the rest of the budget with different data orders and end apart."""
    code, path = spawn(trained, "cnn_1", 2 * STEPS_PER_EPOCH, "end")
    assert code == 0
    end = read_table(path, "spawn_barriers")
    assert list(end.columns) == [c.name for c in SCHEMAS["spawn_barriers"]]
    assert len(end) == 2 and set(end["split"]) == {"train", "test"}
    assert (end[["steps_a", "steps_b", "distance", "loss_barrier", "error_barrier",
                 "loss_barrier_mean", "error_barrier_mean"]] == 0).all().all()
    assert (end["spawn_epoch"] == 2.0).all() and (end["seed_a"] != end["seed_b"]).all()
    code, path = spawn(trained, "cnn_1", 5, "early")
    early = read_table(path, "spawn_barriers")
    assert (early["steps_a"] == 2 * STEPS_PER_EPOCH - 5).all()
    assert (early["distance"] > 0).all()
    assert early["spawn_epoch"].iloc[0] == pytest.approx(5 / STEPS_PER_EPOCH)


def test_spawn_step_without_snapshot_is_a_one_line_error(trained, capsys):
    code, _ = spawn(trained, "cnn_1", 7, "nosnap")
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no snapshot at step 7" in err[0]


# ---------------------------------------------------------------- config


SMOKE = yaml.safe_load((REPO / "tests/smoke.yaml").read_text())


def config(**connectivity) -> dict:
    cfg = json.loads(json.dumps(SMOKE))
    cfg["study"].update(model=["cnn", "cnn_bn"], optimizer=["sgd"], batch_size=[64, 256],
                        seed=[1, 2])
    cfg["connectivity"] = {"spawn": {"steps": [0, 5, "end"]}, **connectivity}
    return cfg


@pytest.mark.parametrize("connectivity,expected", [
    ({"pairs": [["cnn_sgd_lr0.05_bs64_wd0_s1", "cnn_bn_sgd_lr0.05_bs64_wd0_s1"]]},
     'connectivity.pairs[0] = ["cnn_sgd_lr0.05_bs64_wd0_s1", "cnn_bn_sgd_lr0.05_bs64_wd0_s1"] is '
     "not allowed: expected two runs of the same architecture"),
    ({"pairs": [["cnn_sgd_lr0.05_bs64_wd0_s1", "nope"]]},
     'connectivity.pairs[0][1] = "nope" is not allowed: expected a run of the study'),
    ({"spawn": {"steps": [0, 7]}},
     "connectivity.spawn.steps[1] = 7 is not allowed: expected a snapshot step of the run "
     "(batch size 64, 16 steps per epoch): [0, 2, 5, 16, 32]"),
    ({"spawn": {"steps": ["epoch3"]}},
     'connectivity.spawn.steps[0] = "epoch3" is not allowed: expected \'end\' or \'epoch<e>\''),
    ({"spawn": {"steps": [32, "end"]}}, 'connectivity.spawn.steps[1] = "end" is not allowed: '
     "it is step 32"),
    ({"spawn": {"runs": ["nope"], "steps": [0]}},
     'connectivity.spawn.runs[0] = "nope" is not allowed: expected a run of the study'),
    ({"spawn": {"steps": ["epoch"]}}, "connectivity.spawn.steps[0] = \"epoch\" is not allowed"),
    ({"methods": ["curve"]}, "connectivity.methods[0] = \"curve\" is not allowed"),
])
def test_bad_connectivity_config_is_one_line(connectivity, expected):
    with pytest.raises(ConfigError) as exc:
        validate(config(**connectivity))
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("config error: ")
    assert expected in msg, msg


def test_pair_and_spawn_tables():
    cfg = validate(config())
    runs = run_table(cfg)
    pairs = pair_table(cfg, runs)  # default: every two runs that differ only in seed
    assert len(pairs) == 4 and pairs.index[0] == (
        "cnn_sgd_lr0.05_bs64_wd0_s1__cnn_sgd_lr0.05_bs64_wd0_s2")
    for _, row in pairs.iterrows():
        a, b = runs.loc[row["run_a"]], runs.loc[row["run_b"]]
        assert (a.drop("seed") == b.drop("seed")).all() and a["seed"] != b["seed"]
    by_bs = pair_table(validate(config(vary=["batch_size"])), runs)
    assert len(by_bs) == 4 and set(runs.loc[by_bs["run_a"], "batch_size"]) == {64}
    assert pair_table(validate(config(enabled=False)), runs).empty
    spawns = spawn_table(cfg, runs)
    assert list(spawns["run"].unique()) == [runs.index[0]]
    assert list(spawns["step"]) == [0, 5, 32] and list(spawns["epoch"]) == [0.0, 5 / 16, 2.0]
    assert spawn_table(validate(config(spawn={"enabled": False})), runs).empty


# ---------------------------------------------------------------- figures


def _synthetic(n_pairs: int = 6, points: int = 21):
    from landscape.connectivity import barrier_table

    runs = pd.DataFrame([{"run": f"r{lr}_{bs}_{s}", "model": "cnn", "optimizer": "sgd", "rho": 0.0,
                          "lr": lr, "batch_size": bs, "weight_decay": 0.0, "seed": s}
                         for lr in (0.02, 0.1) for bs in (32, 128, 512) for s in (1, 2)])
    t = np.linspace(0, 1, points)
    paths, barriers = [], []
    firsts = runs[runs["seed"] == 1]["run"].tolist()[:n_pairs]
    for i, a in enumerate(firsts):
        b = a[:-1] + "2"
        for method, height in (("linear", 1.2), ("aligned", 0.4), ("activation", 0.5),
                               ("repair", 0.1), ("bezier", 0.05)):
            for split in ("train", "test"):
                f = pd.DataFrame({"t": t, "split": split,
                                  "loss": 0.3 + height * (1 + 0.1 * i) * np.sin(np.pi * t) ** 2,
                                  "accuracy": 0.9 - 0.4 * height * np.sin(np.pi * t) ** 2})
                ident = {"pair": f"{a}__{b}", "run_a": a, "run_b": b, "method": method,
                         "eval_set": f"{split}[1024,seed=0]", "bn_recomputed": False}
                paths.append(f.assign(**ident))
                barriers.append(barrier_table(f).assign(**ident))
    spawn = pd.DataFrame([{"run": firsts[0], "spawn_step": k, "spawn_epoch": k / 625,
                           "split": split, "loss_barrier": h, "error_barrier": h / 4,
                           "distance": 10.0 - k / 300, "eval_set": f"{split}[1024,seed=0]"}
                          for k, h in ((0, 1.0), (10, 0.8), (30, 0.5), (100, 0.2), (625, 0.05),
                                       (2500, 0.0)) for split in ("train", "test")])
    return runs, pd.concat(paths), pd.concat(barriers), spawn


@pytest.mark.parametrize("n_pairs", [1, 6])
def test_figures_have_no_overlapping_tick_labels(n_pairs):
    runs, paths, barriers, spawn = _synthetic(n_pairs)
    for fig in (path_curves(paths, runs), barrier_chart(barriers, runs),
                spawn_chart(spawn, runs), spawn_chart(spawn.assign(run="other"), runs)):
        assert overlapping_tick_labels(fig) == []
        plt.close(fig)
    for fig in (path_curves(paths.iloc[:0], runs), barrier_chart(barriers.iloc[:0], runs),
                spawn_chart(spawn.iloc[:0], runs)):
        plt.close(fig)  # empty tables draw a placeholder


def test_plot_stage(cnn_pair, trained, tmp_path):
    paths = tmp_path / "paths.parquet"
    barriers = tmp_path / "barriers.parquet"
    gather([trained / "cnn.paths.parquet"], "connectivity", paths)
    gather([trained / "cnn.barriers.parquet"], "barriers", barriers)
    code, spawned = spawn(trained, "cnn_1", 2 * STEPS_PER_EPOCH, "plot")
    runs = tmp_path / "runs.parquet"
    gather([trained / "cnn_1/run.parquet", trained / "cnn_2/run.parquet"], "runs", runs)
    out = {k: tmp_path / f"{k}.png" for k in ("paths", "barriers", "spawn")}
    assert main(["plot-connectivity", "--paths", str(paths), "--barriers", str(barriers),
                 "--spawn", str(spawned), "--runs", str(runs), "--params", '{"dpi": 50}',
                 "--out-paths", str(out["paths"]), "--out-barriers", str(out["barriers"]),
                 "--out-spawn", str(out["spawn"])]) == 0
    for p in out.values():
        assert p.stat().st_size > 5000, p
