"""Training: determinism, outputs, resume after SIGKILL, divergence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from landscape.checkpoints import all_snapshots, load_checkpoint, load_snapshots
from landscape.io import tensor_digest
from landscape.study import run_id
from landscape.tables import read_table
from landscape.train import TrainConfig, dense_steps, train_run

from .conftest import REPO


def cfg(**kw) -> TrainConfig:
    base = dict(model="cnn", optimizer="sgd", lr=0.05, batch_size=32, weight_decay=0.0, seed=1,
                epochs=2, model_options={"width": 2, "hidden": 8}, snapshot_steps=[2, 5])
    base.update(kw)
    return TrainConfig.from_config(base)


def test_run_id_format():
    assert run_id("cnn_bn", "adam", 1e-05, 64, 0.0005, 3) == "cnn_bn_adam_lr1e-05_bs64_wd0.0005_s3"


def test_train_config_takes_defaults_from_the_schema():
    from landscape.config import defaults

    c = TrainConfig.from_config(dict(model="cnn", optimizer="sgd", lr=0.1, batch_size=8,
                                     weight_decay=0.0, seed=1))
    assert c.epochs == defaults("train")["epochs"]
    assert c.model_options == defaults("models", "cnn")
    with pytest.raises(TypeError):
        TrainConfig(model="cnn", optimizer="sgd", lr=0.1, batch_size=8, weight_decay=0.0, seed=1)


def test_outputs_and_learning(tmp_path, tiny_splits):
    s = train_run(cfg(epochs=3, lr=0.1), *tiny_splits, tmp_path, progress=False)
    assert s["status"] == "ok" and s["epochs"] == 3
    m = read_table(tmp_path / "metrics.parquet", "training")
    assert m["epoch"].tolist() == [0, 1, 2, 3]
    assert m["train_loss"].iloc[-1] < m["train_loss"].iloc[0]
    snaps = load_snapshots(tmp_path / "snapshots.pt")
    steps_per_epoch = 10  # 320 samples / 32
    assert snaps["step"] == [0, 2, 5, 10, 20, 30]
    assert snaps["epoch"] == [0.0, 0.2, 0.5, 1.0, 2.0, 3.0]
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ck["meta"]["config"]["lr"] == 0.1 and "torch" in ck["meta"]["versions"]
    assert torch.equal(snaps["states"][-1]["classifier.3.weight"],
                       ck["state_dict"]["classifier.3.weight"])
    r = read_table(tmp_path / "run.parquet", "runs").iloc[0]
    assert r["gap_loss"] == pytest.approx(r["test_loss"] - r["train_loss"])
    assert r["gap_error"] == pytest.approx(r["train_acc"] - r["test_acc"])
    assert not (tmp_path / "state.pt").exists()
    assert steps_per_epoch * 3 == m["step"].iloc[-1]


def _digests(folder):
    ck = load_checkpoint(folder / "checkpoint.pt")
    snaps = load_snapshots(folder / "snapshots.pt")
    m = read_table(folder / "metrics.parquet", "training").drop(columns="wall_time")
    return tensor_digest(ck["state_dict"]), tensor_digest(snaps["states"]), m


def test_deterministic(tmp_path, tiny_splits):
    train_run(cfg(), *tiny_splits, tmp_path / "a", progress=False)
    train_run(cfg(), *tiny_splits, tmp_path / "b", progress=False)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert a[0] == b[0] and a[1] == b[1]
    assert a[2].equals(b[2])
    assert (tmp_path / "a" / "checkpoint.pt").read_bytes() == \
        (tmp_path / "b" / "checkpoint.pt").read_bytes()
    train_run(cfg(seed=2), *tiny_splits, tmp_path / "c", progress=False)
    assert _digests(tmp_path / "c")[0] != a[0]


def test_resume_in_process_is_bit_identical(tmp_path, tiny_splits):
    c = cfg(epochs=3)
    train_run(c, *tiny_splits, tmp_path / "full", progress=False)
    assert train_run(c, *tiny_splits, tmp_path / "cut", progress=False, stop_after_epochs=1) == {}
    assert (tmp_path / "cut" / "state.pt").exists()
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()
    train_run(c, *tiny_splits, tmp_path / "cut", progress=False)
    a, b = _digests(tmp_path / "full"), _digests(tmp_path / "cut")
    assert a[0] == b[0] and a[1] == b[1] and a[2].equals(b[2])


def test_resume_state_of_other_config_is_ignored(tmp_path, tiny_splits):
    train_run(cfg(epochs=3), *tiny_splits, tmp_path / "x", progress=False, stop_after_epochs=1)
    train_run(cfg(epochs=3, lr=0.02), *tiny_splits, tmp_path / "x", progress=False)
    train_run(cfg(epochs=3, lr=0.02), *tiny_splits, tmp_path / "ref", progress=False)
    assert _digests(tmp_path / "x")[0] == _digests(tmp_path / "ref")[0]


def _train_cmd(data, out, epochs):
    params = json.dumps({"model": "cnn", "optimizer": "sgd", "lr": 0.05, "batch_size": 16,
                         "weight_decay": 0.0, "seed": 1, "epochs": epochs, "snapshot_steps": [3],
                         "model_options": {"width": 4, "hidden": 16}})
    return [sys.executable, "-m", "landscape", "train", "--threads", "1", "--data", str(data),
            "--params", params, "--device", "cpu",
            "--out", str(out), "--no-progress"]


def test_sigkill_mid_training_then_resume_is_bit_identical(tmp_path, prepared_file):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    epochs = 6
    subprocess.run(_train_cmd(prepared_file, tmp_path / "ref", epochs), check=True, env=env,
                   capture_output=True)
    proc = subprocess.Popen(_train_cmd(prepared_file, tmp_path / "cut", epochs), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    state = tmp_path / "cut" / "state.pt"
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "training finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()
    assert not list((tmp_path / "cut").glob("*.tmp")) or True  # temp files are never trusted
    out = subprocess.run(_train_cmd(prepared_file, tmp_path / "cut", epochs), check=True,
                         env=env, capture_output=True, text=True)
    assert "resuming" in out.stdout
    a, b = _digests(tmp_path / "ref"), _digests(tmp_path / "cut")
    assert a[0] == b[0] and a[1] == b[1] and a[2].equals(b[2])


def test_divergence_is_recorded(tmp_path, tiny_splits):
    s = train_run(cfg(lr=1e6, epochs=3), *tiny_splits, tmp_path, progress=False)
    assert s["status"] == "diverged" and s["diverged_step"] >= 0
    r = read_table(tmp_path / "run.parquet", "runs").iloc[0]
    assert r["status"] == "diverged" and r["diverged_step"] == s["diverged_step"]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["meta"]["status"] == "diverged"


def test_nan_written_by_the_last_step_is_divergence(tmp_path, tiny_splits):
    """One step per epoch with a huge η: the forward loss before the step is finite, the step
    writes inf/NaN into the weights. Such a run must be `diverged`, not `ok`."""
    n = len(tiny_splits[0])
    s = train_run(cfg(lr=1e30, epochs=1, batch_size=n, snapshot_steps=[]), *tiny_splits,
                  tmp_path, progress=False)
    assert s["status"] == "diverged" and s["diverged_step"] == 1
    r = read_table(tmp_path / "run.parquet", "runs").iloc[0]
    assert r["status"] == "diverged"
    m = read_table(tmp_path / "metrics.parquet", "training")
    assert m["train_loss"].notna().all() and m["epoch"].tolist() == [0]


def test_bad_optimizer_named():
    with pytest.raises(ValueError, match="Supported optimizers are"):
        cfg(optimizer="rmsprop")


def test_adam_run_resumes_bit_identical(tmp_path, tiny_splits):
    """Adam keeps 0-d step counters in its state; saving and resuming must handle them."""
    c = cfg(optimizer="adam", lr=1e-3, epochs=2)
    train_run(c, *tiny_splits, tmp_path / "full", progress=False)
    train_run(c, *tiny_splits, tmp_path / "cut", progress=False, stop_after_epochs=1)
    train_run(c, *tiny_splits, tmp_path / "cut", progress=False)
    assert _digests(tmp_path / "full")[0] == _digests(tmp_path / "cut")[0]


def test_dense_steps_are_log_spaced_distinct_and_avoid_the_others():
    steps = dense_steps(628, 40, exclude={10, 30, 100, 157, 314, 471, 628})
    assert len(steps) == 40 == len(set(steps)) and steps == sorted(steps)
    assert steps[0] == 1 and steps[-1] <= 627
    assert not {10, 30, 100, 157, 314, 471, 628} & set(steps)
    # log spacing: as many steps in [1, 25) as in [25, 628) give or take the integer floor
    ratios = np.diff(np.log(steps[10:]))
    assert ratios.max() < 4 * ratios.min() + 0.05
    # fewer free steps than asked: all of them; none asked: none
    assert dense_steps(12, 40, exclude={10}) == [s for s in range(1, 13) if s != 10]
    assert dense_steps(628, 0) == []
    # deterministic and a function of its arguments only
    assert dense_steps(628, 40, {10}) == dense_steps(628, 40, {10})


def test_dense_snapshots_change_nothing_but_add_states(tmp_path, tiny_splits):
    """train.sharpness_snapshots saves more states under 'dense' and leaves the trained weights,
    the metrics and the trajectory snapshots (PCA, spawning) bitwise as they were."""
    train_run(cfg(epochs=3), *tiny_splits, tmp_path / "a", progress=False)
    train_run(cfg(epochs=3, sharpness_snapshots=12), *tiny_splits, tmp_path / "b",
              progress=False)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert a[:2] == b[:2]
    pd.testing.assert_frame_equal(a[2], b[2])
    sa, sb = load_snapshots(tmp_path / "a" / "snapshots.pt"), load_snapshots(tmp_path / "b" /
                                                                             "snapshots.pt")
    assert sa["step"] == sb["step"] == [0, 2, 5, 10, 20, 30]
    assert sa["dense"]["step"] == []
    dense = sb["dense"]["step"]
    assert dense == dense_steps(30, 12, exclude={2, 5, 10, 20, 30})
    assert sb["dense"]["epoch"] == [s / 10 for s in dense]
    merged = all_snapshots(sb)
    assert [s["step"] for s in merged] == sorted(sb["step"] + dense)
    assert [s["trajectory"] for s in merged] == [s["step"] in sb["step"] for s in merged]
    # a dense state is the weights at that step: the same as a run that snapshots it in epoch 1
    train_run(cfg(epochs=1, snapshot_steps=[dense[1]]), *tiny_splits, tmp_path / "c",
              progress=False)
    sc = load_snapshots(tmp_path / "c" / "snapshots.pt")
    assert tensor_digest(sc["states"][1]) == tensor_digest(sb["dense"]["states"][1])


def test_images_in_steps_counts_the_short_last_batch():
    from landscape.train import images_in_steps

    assert images_in_steps(0, 8, 100, 32) == 200     # 2 epochs of 4 steps
    assert images_in_steps(2, 3, 100, 32) == 32 + 4 + 32
    assert images_in_steps(5, 0, 100, 32) == 0
