"""train.stop_at_loss: runs stop at one training loss (Jiang et al. 2020), with train.epochs as
the budget; the runs table says why each run stopped, and the findings count it."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch

from landscape.checkpoints import load_checkpoint, load_snapshots
from landscape.config import ConfigError, validate
from landscape.report.findings import finding_training
from landscape.study import run_id
from landscape.tables import SCHEMAS, read_table
from landscape.train import TrainConfig, train_run

from .test_config import BASE, SMOKE
from .test_train import _digests, cfg


def _curve(folder) -> list[float]:
    return read_table(folder / "metrics.parquet", "training")["train_loss"].tolist()


@pytest.fixture
def reference(tmp_path, tiny_splits, one_thread):
    """A 4-epoch run without a target, and the first epoch end after epoch 1 whose training
    loss is below every earlier one (a target that stops exactly there)."""
    train_run(cfg(epochs=4, lr=0.1), *tiny_splits, tmp_path / "ref", progress=False)
    losses = _curve(tmp_path / "ref")
    stop = next(e for e in range(2, 5) if losses[e] < min(losses[1:e]))
    return tmp_path / "ref", losses, stop


def test_no_target_trains_every_epoch(reference):
    folder, losses, _ = reference
    r = read_table(folder / "run.parquet", "runs").iloc[0]
    assert r["stop_reason"] == "epochs" and math.isnan(r["stop_at_loss"]) and r["epochs"] == 4
    assert load_checkpoint(folder / "checkpoint.pt")["meta"]["stop_reason"] == "epochs"


def test_reached_target_stops_there_as_a_prefix_of_the_full_run(tmp_path, tiny_splits,
                                                                reference):
    ref, losses, stop = reference
    target = losses[stop]
    s = train_run(cfg(epochs=4, lr=0.1, stop_at_loss=target), *tiny_splits, tmp_path / "t",
                  progress=False)
    assert s["stop_reason"] == "target" and s["epochs"] == stop < 4
    assert s["stop_at_loss"] == target and s["train_loss"] <= target
    r = read_table(tmp_path / "t" / "run.parquet", "runs").iloc[0]
    assert r["stop_reason"] == "target" and r["epochs"] == stop and r["stop_at_loss"] == target
    # metrics, snapshots and checkpoint end at that epoch and equal the full run's up to it
    m = read_table(tmp_path / "t" / "metrics.parquet", "training")
    full = read_table(ref / "metrics.parquet", "training")
    assert m["epoch"].tolist() == list(range(stop + 1))
    cols = ["step", "train_loss", "test_loss", "train_acc", "test_acc"]
    assert m[cols].equals(full[cols].iloc[:stop + 1])
    snaps, full_snaps = load_snapshots(tmp_path / "t" / "snapshots.pt"), load_snapshots(
        ref / "snapshots.pt")
    n = len(snaps["step"])
    assert snaps["step"] == full_snaps["step"][:n] and snaps["epoch"][-1] == stop
    ck = load_checkpoint(tmp_path / "t" / "checkpoint.pt")
    assert ck["meta"]["stop_reason"] == "target" and ck["meta"]["epochs"] == stop
    assert ck["meta"]["steps"] == snaps["step"][-1] == m["step"].iloc[-1]
    for k, v in ck["state_dict"].items():
        assert torch.equal(v, full_snaps["states"][n - 1][k])


def test_generous_target_stops_after_the_first_epoch(tmp_path, tiny_splits, one_thread):
    """The target is checked at epoch ends only: initialisation (epoch 0) never stops a run."""
    s = train_run(cfg(epochs=3, stop_at_loss=50.0), *tiny_splits, tmp_path, progress=False)
    assert s["stop_reason"] == "target" and s["epochs"] == 1


def test_unreachable_target_uses_the_budget(tmp_path, tiny_splits, reference):
    ref, losses, _ = reference
    s = train_run(cfg(epochs=4, lr=0.1, stop_at_loss=1e-9), *tiny_splits, tmp_path / "b",
                  progress=False)
    assert s["stop_reason"] == "budget" and s["epochs"] == 4 and s["train_loss"] > 1e-9
    assert _curve(tmp_path / "b") == losses
    r = read_table(tmp_path / "b" / "run.parquet", "runs").iloc[0]
    assert r["stop_reason"] == "budget" and r["stop_at_loss"] == 1e-9


@pytest.mark.parametrize("cut", [1, "stop"])
def test_resume_with_target_is_bit_identical(tmp_path, tiny_splits, reference, cut):
    """Killed before the target (1) or right after saving the epoch that reached it ("stop"):
    the resumed run stops at the same epoch with the same bytes."""
    _, losses, stop = reference
    c = cfg(epochs=4, lr=0.1, stop_at_loss=losses[stop])
    train_run(c, *tiny_splits, tmp_path / "full", progress=False)
    after = stop if cut == "stop" else cut
    assert train_run(c, *tiny_splits, tmp_path / "cut", progress=False,
                     stop_after_epochs=after) == {}
    s = train_run(c, *tiny_splits, tmp_path / "cut", progress=False)
    assert s["stop_reason"] == "target" and s["epochs"] == stop
    a, b = _digests(tmp_path / "full"), _digests(tmp_path / "cut")
    assert a[0] == b[0] and a[1] == b[1] and a[2].equals(b[2])


def test_diverged_run_says_so(tmp_path, tiny_splits, one_thread):
    s = train_run(cfg(lr=1e6, epochs=3, stop_at_loss=0.1), *tiny_splits, tmp_path,
                  progress=False)
    assert s["status"] == "diverged" and s["stop_reason"] == "diverged"


def test_stop_at_loss_default_and_bad_values():
    assert TrainConfig.from_config(dict(model="cnn", optimizer="sgd", lr=0.1, batch_size=8,
                                        weight_decay=0.0, seed=1)).stop_at_loss is None
    assert validate(SMOKE)["train"]["stop_at_loss"] is None
    for bad, expected in ((-1, "train.stop_at_loss = -1"), (0, "train.stop_at_loss = 0"),
                          ("low", 'train.stop_at_loss = "low"')):
        config = copy.deepcopy(BASE)
        config["train"]["stop_at_loss"] = bad
        with pytest.raises(ConfigError) as exc:
            validate(config)
        msg = str(exc.value)
        assert "\n" not in msg and msg.startswith("config error: ") and expected in msg, msg
    with pytest.raises(ValueError, match="stop_at_loss"):
        cfg(stop_at_loss=-1.0)


def _runs(reasons, target=0.3) -> pd.DataFrame:
    rows = []
    for i, reason in enumerate(reasons):
        lr = [0.01, 0.03, 0.1, 0.3][i % 4]
        bs, seed = 32 * (1 + i // 4), 1
        ok = reason != "diverged"
        rows.append({"run": run_id("cnn", "sgd", lr, bs, 0.0, seed), "model": "cnn",
                     "optimizer": "sgd",
                     "rho": 0.0, "lr": lr, "batch_size": bs, "weight_decay": 0.0,
                     "seed": seed, "status": "ok" if ok else "diverged",
                     "diverged_step": -1 if ok else 5, "stop_at_loss": target,
                     "stop_reason": reason, "epochs": {"target": 3 + i, "budget": 10}.get(
                         reason, 1), "n_params": 10,
                     "train_loss": {"target": 0.29, "budget": 0.45}.get(reason, math.nan),
                     "train_acc": 0.9, "test_loss": 0.5, "test_acc": 0.85, "gap_loss": 0.2,
                     "gap_error": 0.05, "train_seconds": 1.0, "train_size": 100,
                     "test_size": 50, "data_fingerprint": "x"})
    df = pd.DataFrame(rows)
    assert list(df.columns) == [c.name for c in SCHEMAS["runs"]]
    return df


def test_finding_counts_target_and_budget_runs():
    runs = _runs(["target", "budget", "target", "diverged", "target"])
    f = {x.key: x for x in finding_training(runs)}["stopping"]
    assert f.stage == "training"
    assert f.numbers == {"target": 3, "budget": 1, "n": 4, "stop_at_loss": 0.3}
    assert "3 of 4 finished runs reached it" in f.text and "≤ 0.3" in f.text
    assert "1 hit the epoch budget" in f.text
    assert "cnn sgd η=0.03 B=32 s1 (loss 0.45 after 10 epochs)" in f.text
    assert "η=0.01 B=32 s1" not in f.text.split("budget")[-1]  # target runs are not named


def test_finding_all_reached_and_absent_without_target():
    f = {x.key: x for x in finding_training(_runs(["target", "target"]))}["stopping"]
    assert f.numbers["budget"] == 0 and "none hit the epoch budget" in f.text
    no_target = _runs(["epochs", "epochs"], target=math.nan)
    assert "stopping" not in {x.key for x in finding_training(no_target)}
    old = no_target.drop(columns=["stop_at_loss", "stop_reason"])  # a table from before the key
    assert "stopping" not in {x.key for x in finding_training(old)}


# ------------------------------------------------- consumers: spawning trains the run's length


def test_spawned_child_trains_to_where_a_stopped_run_ended(tmp_path, tiny_splits, one_thread):
    """Momentum 0: a child from step k with the run's own order retraces the run bitwise, up
    to the step where stop_at_loss ended it (not the budget); later steps are out of range."""
    from landscape.connectivity.spawn import pick_snapshot, spawn_children

    c = cfg(epochs=4, momentum=0.0, stop_at_loss=50.0)
    train_run(c, *tiny_splits, tmp_path, progress=False)
    snaps = load_snapshots(tmp_path / "snapshots.pt")
    end = load_checkpoint(tmp_path / "checkpoint.pt")["meta"]["steps"]
    assert end == snaps["step"][-1] == 10  # one epoch of 320 / 32, budget 40
    x, y = tiny_splits[0].tensors()
    (child,) = spawn_children(c, pick_snapshot(snaps, 2), 2, x, y, order_seeds=[c.seed],
                              device="cpu", end_step=end)
    assert child["steps"] == end - 2
    assert all(torch.equal(v, snaps["states"][-1][k]) for k, v in child["state"].items())
    (whole,) = spawn_children(c, pick_snapshot(snaps, 2), 2, x, y, order_seeds=[c.seed],
                              device="cpu")
    assert whole["steps"] == 40 - 2  # without end_step: the budget, as before
    with pytest.raises(ValueError, match="spawn step 20 .* where the run ended"):
        spawn_children(c, snaps["states"][-1], 20, x, y, device="cpu", end_step=end)


def test_spawn_stage_skips_steps_after_a_stopped_run_ended(tmp_path, one_thread):
    import json

    from landscape.cli import main
    from landscape.data import load_prepared
    from landscape.tables import table_meta

    from .conftest import write_prepared

    data = write_prepared(tmp_path / "data.pt", 320, 160)
    train, test, fp = load_prepared(data)
    c = cfg(epochs=3, stop_at_loss=50.0)
    train_run(c, train, test, tmp_path / "run", fingerprint=fp, device="cpu", progress=False)
    params = json.dumps({"points": 3, "train_size": 100, "test_size": 100, "batch_size": 100})

    def spawn(step):
        out = tmp_path / f"step{step}.parquet"
        assert main(["spawn", "--in", f"data={data}", "--in",
                     f"snapshots={tmp_path / 'run' / 'snapshots.pt'}", "--job",
                     f"spawn_step={step}", "--params", params, "--device", "cpu",
                     "--no-progress", "--out", f"spawn_barriers={out}"]) == 0
        return out

    rows = read_table(spawn(5), "spawn_barriers")
    assert (rows["steps_a"] == 10 - 5).all() and (rows["steps_b"] == 10 - 5).all()
    skipped = spawn(30)  # 'end' of the 3-epoch budget: after the run stopped at step 10
    assert read_table(skipped, "spawn_barriers").empty
    assert "stopped at step 10" in table_meta(skipped)["skipped"]


def test_training_curves_draw_the_target():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from landscape.plots.training import training_curves

    runs = _runs(["target", "budget"])
    training = pd.DataFrame([{"run": r, "epoch": e, "train_loss": 1.0 / (e + 1),
                              "test_loss": 1.0, "test_acc": 0.8}
                             for r in runs["run"] for e in range(3)])
    ax = training_curves(training, runs).axes[0]
    assert any(list(line.get_ydata()) == [0.3, 0.3] for line in ax.get_lines())
    assert "1 of 2 runs reached it" in ax.get_title()
    plt.close("all")


def test_findings_page_run_table_shows_why_runs_stopped():
    from landscape.stages.findings import generate

    findings, table = generate({"runs": _runs(["target", "budget"])})
    assert "stopping" in {f.key for f in findings}
    assert table.set_index("run")["stop_reason"].to_dict() == {
        run_id("cnn", "sgd", 0.01, 32, 0.0, 1): "target",
        run_id("cnn", "sgd", 0.03, 32, 0.0, 1): "budget"}
    assert "stop_reason" not in generate({"runs": _runs(["epochs"], target=math.nan)})[1]
