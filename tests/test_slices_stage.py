"""The slice stages end to end through the CLI: directions → shards → gather → plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from landscape.checkpoints import load_model
from landscape.cli import main
from landscape.data import eval_subset, load_prepared
from landscape.evaluate import evaluate
from landscape.evaluator import use_channels_last
from landscape.io import load_verified, save_verified
from landscape.tables import read_table, table_meta
from landscape.train import TrainConfig, train_run

from .conftest import write_prepared

RUN = "cnn_sgd_lr0.1_bs32_wd0_s1"
PARAMS = {"points_1d": 5, "points_2d": 5, "train_size": 200, "test_size": 100, "batch_size": 64,
          "seed": 3}
TABLES = {"1d": "slice_1d", "2d": "slice_2d", "trajectory": "trajectory_projection"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("slices_stage")
    data = write_prepared(root / "data.pt", 600, 200)
    train, test, fp = load_prepared(data)
    cfg = TrainConfig.from_config(dict(
        model="cnn", optimizer="sgd", lr=0.1, batch_size=32, weight_decay=0.0,
                      seed=1, epochs=2, model_options={"width": 2, "hidden": 8},
                      snapshot_steps=[2, 5], eval_batch_size=512))
    train_run(cfg, train, test, root / "run", fingerprint=fp, device="cpu", progress=False)
    return root


def directions(root: Path, plan: str = "plan.pt", params=PARAMS, run: str = "run") -> int:
    return main(["slice-directions", "--in", f"checkpoint={root}/{run}/checkpoint.pt",
                 "--in", f"snapshots={root}/{run}/snapshots.pt", "--params", json.dumps(params),
                 "--file", f"plan={root / plan}", "--out",
                 f"pca_variance={root / f'{plan}.pca.parquet'}"])


def shard(root: Path, i: int, n: int, plan: str = "plan.pt", run: str = "run") -> dict[str, Path]:
    out = {k: root / f"{plan}.{n}.{i}.{t}.parquet" for k, t in TABLES.items()}
    code = main(["slices", "--in", f"data={root / 'data.pt'}", "--in",
                 f"checkpoint={root}/{run}/checkpoint.pt", "--in",
                 f"slice_directions.plan={root / plan}", "--params", json.dumps(PARAMS),
                 "--device", "cpu", "--job", f"shard={i}", "--job", f"shards={n}",
                 "--no-progress", *(a for k, t in TABLES.items()
                                    for a in ("--out", f"{t}={out[k]}"))])
    assert code == 0
    return out


def gather(root: Path, parts: list[dict[str, Path]], pca: list[Path], tag: str) -> dict[str, Path]:
    out = {k: root / f"gathered_{tag}_{t}.parquet" for k, t in TABLES.items()}
    out["pca"] = root / f"gathered_{tag}_pca.parquet"
    args = ["gather"]
    for k, table in TABLES.items():
        args += ["--table", table, "--out", str(out[k]), "--inputs", *[str(p[k]) for p in parts]]
    args += ["--table", "pca_variance", "--out", str(out["pca"]), "--inputs", *map(str, pca)]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def gathered(trained):
    assert directions(trained) == 0
    pca = [trained / "plan.pt.pca.parquet"]
    one = gather(trained, [shard(trained, 0, 1)], pca, "one")
    three = gather(trained, [shard(trained, i, 3) for i in (2, 0, 1)], pca, "three")
    return one, three


def test_gathered_tables_are_identical_for_any_shard_count(gathered):
    one, three = gathered
    for key, name in {**TABLES, "pca": "pca_variance"}.items():
        a, b = read_table(one[key], name), read_table(three[key], name)
        assert len(a) and a.equals(b), name


def test_tables_content(gathered, trained):
    one, _ = gathered
    s1 = read_table(one["1d"], "slice_1d")
    assert set(s1["direction"]) == {"random", "init_to_final"}
    assert set(s1["eval_set"]) == {"train[200,seed=0]", "test[100,seed=0]"}
    assert set(s1["direction_seed"]) == {3} and set(s1["normalization"]) == {"filter", "none"}
    s2 = read_table(one["2d"], "slice_2d")
    assert len(s2) == 2 * 2 * 25 and set(s2["plane"]) == {"random", "pca"}
    traj = read_table(one["trajectory"], "trajectory_projection")
    snaps = load_verified(trained / "run/snapshots.pt")
    assert list(traj[traj.split == "train"]["step"]) == list(snaps["step"])
    pca = read_table(one["pca"], "pca_variance")
    assert pca["explained_variance_ratio"].sum() == pytest.approx(1.0)
    assert list(pca["component"]) == list(range(1, len(pca) + 1))


def test_origin_equals_the_checkpoint_evaluated_on_the_same_subset(gathered, trained):
    one, _ = gathered
    s2 = read_table(one["2d"], "slice_2d")
    model, _ = load_model(trained / "run/checkpoint.pt")
    train, _, _ = load_prepared(trained / "data.pt")
    x, y = eval_subset(train, 200, 0).tensors()
    (x,) = use_channels_last(model, x)
    loss, acc = evaluate(model, x, y, 64)
    for plane in ("random", "pca"):
        row = s2[(s2.plane == plane) & (s2.alpha == 0) & (s2.beta == 0) & (s2.split == "train")]
        assert (row["loss"].item(), row["accuracy"].item()) == (loss, acc)
    traj = read_table(one["trajectory"], "trajectory_projection")
    final = traj[(traj.alpha == 0) & (traj.beta == 0) & (traj.split == "train")]
    assert final["loss"].item() == loss


def test_diverged_run_yields_empty_tables_with_a_reason(trained, tmp_path):
    run = tmp_path / "bad"
    run.mkdir()
    for name in ("checkpoint.pt", "snapshots.pt"):
        blob = load_verified(trained / "run" / name)
        blob["meta"] = {**blob["meta"], "status": "diverged", "diverged_step": 7}
        save_verified(run / name, blob)
    (tmp_path / "data.pt").write_bytes((trained / "data.pt").read_bytes())
    assert directions(tmp_path, "bad.pt", run="bad") == 0
    out = shard(tmp_path, 0, 1, "bad.pt", run="bad")
    for key, name in TABLES.items():
        assert len(read_table(out[key], name)) == 0
        assert "diverged at step 7" in table_meta(out[key])["skipped"]
    g = gather(tmp_path, [out], [tmp_path / "bad.pt.pca.parquet"], "bad")
    skipped = table_meta(g["2d"])["skipped_runs"]
    assert [(e["run"], e["stage"]) for e in skipped] == [(RUN, "slices")]


def test_plan_from_another_checkpoint_is_refused(trained, tmp_path, capsys):
    if not (trained / "plan.pt").exists():  # made by the tests above; alone, make it here
        assert directions(trained) == 0
    blob = load_verified(trained / "plan.pt")
    blob["weights_digest"] = "0" * 64
    save_verified(tmp_path / "plan.pt", blob)
    (tmp_path / "data.pt").write_bytes((trained / "data.pt").read_bytes())
    (tmp_path / "run").symlink_to(trained / "run")
    with pytest.raises(AssertionError):
        shard(tmp_path, 0, 1)
    assert "made for another checkpoint" in capsys.readouterr().err


def test_bad_spec_is_a_one_line_error(trained, tmp_path, capsys):
    code = directions(trained, "x.pt", params={**PARAMS, "points_2d": 4})
    assert code == 1
    assert "slices.points_2d = 4 is not allowed" in capsys.readouterr().err


def test_plots(gathered, trained, tmp_path):
    one, _ = gathered
    figdir = tmp_path / "figs"
    runs = [RUN, "cnn_sgd_lr0.1_bs32_wd0_s9"]
    code = main(["plot-slices", "--slice-1d", str(one["1d"]), "--slice-2d", str(one["2d"]),
                 "--trajectory", str(one["trajectory"]), "--pca", str(one["pca"]), "--runs",
                 str(trained / "run/run.parquet"), "--params", '{"dpi": 50}', "--curves",
                 str(tmp_path / "c.png"), "--multiples", str(tmp_path / "m.png"), "--run-ids",
                 *runs, "--contours", *[str(figdir / f"contour_{r}.png") for r in runs],
                 "--surfaces", *[str(figdir / f"surface_{r}.png") for r in runs]])
    assert code == 0
    for p in [tmp_path / "c.png", tmp_path / "m.png", *[figdir / f"{k}_{r}.png" for k in
              ("contour", "surface") for r in runs]]:
        assert p.stat().st_size > 2000, p  # a run without slices gets a placeholder


def test_hessian_slices_curve_by_lambda_1_along_v1(trained, tmp_path):
    """The hessian plane and lines: the curvature stage keeps its top eigenvectors (checked file
    beside its tables); along v₁ the slice's second difference at 0, per unit length², equals
    λ₁ (the same 200 images for both stages; steps small enough that the quadratic model holds
    and float32 rounding stays below the tolerance); the plan refuses another run's vectors."""
    root = trained
    hess = {"eval_size": 200, "eval_seed": 0, "batch_size": 64, "repeats": 1,
            "eigs": {"top_k": 2, "tol": 1e-6, "max_iter": 120, "power_k": 0},
            "trace": {"hutchinson": 0, "hutchpp": 0}, "density": {"n_starts": 0}}
    out = {t: tmp_path / f"{t}.parquet" for t in ("hessian_eigs", "hessian_trace",
                                                  "hessian_density", "curvature_repeats")}
    vec = tmp_path / "eigvecs.pt"
    assert main(["hessian", "--in", f"data={root / 'data.pt'}", "--in",
                 f"checkpoint={root}/run/checkpoint.pt", "--params", json.dumps(hess),
                 "--device", "cpu", "--file", f"eigvecs={vec}", "--no-progress",
                 *(a for t, p in out.items() for a in ("--out", f"{t}={p}"))]) == 0
    eigs = read_table(out["hessian_eigs"], "hessian_eigs")
    lam1 = float(eigs.query("which == 'largest_algebraic' and k == 1")["eigenvalue"].iloc[0])
    params = {**PARAMS, "planes": ["hessian"], "hessian_rise": 1e-3, "points_1d": 9,
              "random_1d": 0, "train_size": 200, "subset_seed": 0}
    plan = tmp_path / "plan.pt"
    assert main(["slice-directions", "--in", f"checkpoint={root}/run/checkpoint.pt", "--in",
                 f"snapshots={root}/run/snapshots.pt", "--in", f"hessian.eigvecs={vec}",
                 "--params", json.dumps(params), "--file", f"plan={plan}", "--out",
                 f"pca_variance={tmp_path / 'pca.parquet'}"]) == 0
    tables = {k: tmp_path / f"s_{t}.parquet" for k, t in TABLES.items()}
    assert main(["slices", "--in", f"data={root / 'data.pt'}", "--in",
                 f"checkpoint={root}/run/checkpoint.pt", "--in", f"slice_directions.plan={plan}",
                 "--params", json.dumps(params), "--device", "cpu", "--job", "shard=0", "--job",
                 "shards=1", "--no-progress",
                 *(a for k, t in TABLES.items() for a in ("--out", f"{t}={tables[k]}"))]) == 0
    one = read_table(tables["1d"], "slice_1d")
    assert set(one["direction"]) == {"init_to_final", "hessian_v1", "gradient"}
    assert set(read_table(tables["2d"], "slice_2d")["plane"]) == {"hessian"}
    from landscape.report.findings import curvature_at_zero

    v1 = one[(one["direction"] == "hessian_v1") & (one["split"] == "train")]
    assert set(v1["eval_set"]) == {"train[200,seed=0]"}
    nz = v1[v1["alpha"] != 0]
    length = float((nz["distance"] / nz["alpha"].abs()).iloc[0])
    assert length == pytest.approx(np.sqrt(2e-3 / lam1), rel=1e-6)  # s = √(2·rise/λ₁)
    assert curvature_at_zero(v1) / length ** 2 == pytest.approx(lam1, rel=2e-2)
    # vectors of another run's weights are refused
    other = tmp_path / "other.pt"
    save_verified(other, {**load_verified(vec), "run": "someone_else"})
    rc = main(["slice-directions", "--in", f"checkpoint={root}/run/checkpoint.pt", "--in",
               f"snapshots={root}/run/snapshots.pt", "--in", f"hessian.eigvecs={other}",
               "--params", json.dumps(params), "--file", f"plan={tmp_path / 'p2.pt'}", "--out",
               f"pca_variance={tmp_path / 'pca2.parquet'}"])
    assert rc == 1
