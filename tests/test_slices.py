"""Loss-landscape slices (landscape.slices): exactness at the origin, in-place evaluation with a
bitwise restore, the analytic paraboloid of a quadratic toy, shard independence, BN handling."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from landscape.checkpoints import load_model, save_checkpoint
from landscape.directions import random_direction
from landscape.evaluate import evaluate
from landscape.evaluator import PointEvaluator, recompute_bn_statistics, use_channels_last
from landscape.models import build_model
from landscape.params import bitwise_equal, buffers, detached, from_state, parameters
from landscape.slices import (
    SliceSpec,
    evaluate_points,
    grid,
    grid_through_zero,
    line_grid,
    plan_slices,
    rows_to_tables,
    shard_bounds,
    slice_1d,
    slice_2d,
)
from landscape.tables import write_table

META = {"config": {"model": "cnn", "model_options": {"width": 2, "hidden": 8}},
        "run": "cnn_sgd_lr0.1_bs32_wd0_s1", "status": "ok"}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(name: str = "cnn", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, width=2, hidden=8).eval()


@pytest.fixture
def data(tiny_splits):
    train, test = tiny_splits
    return {"train": train.tensors(), "test": test.tensors()}


def fake_snapshots(model: nn.Module, n: int = 5, seed: int = 1) -> list[dict]:
    """A drifting trajectory ending at the model's weights (plus BN buffers that drift too)."""
    g = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    out = []
    for i in range(n):
        s = {k: v.clone() for k, v in state.items()}
        scale = (n - 1 - i) / max(n - 1, 1)
        for k, v in s.items():
            if v.is_floating_point():
                s[k] = v + scale * 0.3 * torch.randn(v.shape, generator=g)
                if "running_var" in k:
                    s[k] = s[k].abs() + 0.1
        out.append({"step": i * 10, "epoch": i / 2, "state": s})
    out[-1]["state"] = {k: v.clone() for k, v in state.items()}
    return out


def snapshot_dicts(model: nn.Module, snaps: list[dict]) -> list[dict]:
    names = [n for n, _ in model.named_buffers()]
    return [{"step": s["step"], "epoch": s["epoch"], "params": from_state(s["state"], model),
             "buffers": [s["state"][n] for n in names] or None} for s in snaps]


@pytest.mark.parametrize("channels_last", [False, True])
def test_origin_reproduces_the_checkpoint_loss_exactly(tmp_path, data, channels_last):
    save_checkpoint(tmp_path / "c.pt", tiny_model().state_dict(), META)
    model, _ = load_model(tmp_path / "c.pt")
    reference, _ = load_model(tmp_path / "c.pt")
    x, y = data["train"]
    if channels_last:
        (x,) = use_channels_last(model, x)
        use_channels_last(reference)
    expected = evaluate(reference, x, y, 64)  # the checkpoint's own loss on this set
    w = detached(parameters(model))
    d1, d2 = random_direction(w, 1), random_direction(w, 2)
    df = slice_2d(model, d1, d2, grid(-1, 1, 5), grid(-1, 1, 5), {"train": (x, y)}, 64)
    origin = df[(df.alpha == 0) & (df.beta == 0)].iloc[0]
    assert (origin["loss"], origin["accuracy"]) == expected  # exact, not approximate
    line = slice_1d(model, d1, grid(-1, 1, 3), {"train": (x, y)}, 64)
    assert tuple(line[line.alpha == 0][["loss", "accuracy"]].iloc[0]) == expected
    assert len(set(df["loss"])) > 20  # the other points differ


def test_model_is_restored_bitwise_and_never_copied(data):
    model = tiny_model("cnn_bn")
    before_p, before_b = detached(parameters(model)), detached(buffers(model))
    ids = [id(p) for p in parameters(model)]
    d = random_direction(before_p, 0)
    with pytest.raises(ZeroDivisionError):
        with PointEvaluator(model, {"train": data["train"]}, 32,
                            bn_data=data["train"][0]) as ev:
            ev.at(terms=[(ev.adopt(d), 0.7)])
            assert not bitwise_equal(parameters(model), before_p)
            assert not bitwise_equal(buffers(model), before_b)  # BN stats re-estimated
            _ = 1 / 0  # an error mid-slice still restores θ
    assert [id(p) for p in parameters(model)] == ids
    assert bitwise_equal(parameters(model), before_p)
    assert bitwise_equal(buffers(model), before_b)
    assert not model.training


def test_at_requires_the_context(data):
    ev = PointEvaluator(tiny_model(), {"train": data["train"]})
    with pytest.raises(RuntimeError, match="outside its `with` block"):
        ev.at()


class Quadratic(nn.Module):
    def __init__(self, w0: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w0.clone())


def test_quadratic_toy_gives_the_analytic_paraboloid():
    g = torch.Generator().manual_seed(0)
    n = 6
    m = torch.randn(n, n, generator=g, dtype=torch.float64)
    a_mat = m @ m.T + n * torch.eye(n, dtype=torch.float64)  # SPD
    centre = torch.randn(n, generator=g, dtype=torch.float64)
    w0 = torch.randn(n, generator=g)
    model = Quadratic(w0)

    def quad_eval(model, x, y, batch_size):  # L(w) = ½ (w − c)ᵀ A (w − c)
        r = model.w.detach().double() - centre
        return float(0.5 * r @ a_mat @ r), 0.0

    d1, d2 = torch.randn(n, generator=g), torch.randn(n, generator=g)
    alphas, betas = grid(-2, 2, 9), grid(-1, 1, 5)
    dummy = {"train": (torch.zeros(1), torch.zeros(1))}
    df = slice_2d(model, [d1], [d2], alphas, betas, dummy, evaluate_fn=quad_eval)
    r0 = w0.double() - centre
    gvec = a_mat @ r0
    e1, e2 = d1.double(), d2.double()
    for _, row in df.iterrows():
        a, b = row["alpha"], row["beta"]
        analytic = (0.5 * float(r0 @ a_mat @ r0) + a * float(gvec @ e1) + b * float(gvec @ e2)
                    + 0.5 * (a * a * float(e1 @ a_mat @ e1) + 2 * a * b * float(e1 @ a_mat @ e2)
                             + b * b * float(e2 @ a_mat @ e2)))
        assert row["loss"] == pytest.approx(analytic, rel=2e-6, abs=1e-5)
    line = slice_1d(model, [d1], alphas, dummy, evaluate_fn=quad_eval)
    coeff = np.polyfit(line["alpha"], line["loss"], 2)  # exactly a parabola in α
    assert coeff[0] == pytest.approx(0.5 * float(e1 @ a_mat @ e1), rel=1e-5)
    assert bitwise_equal([model.w.detach()], [w0])


def _plan(model, spec=None):
    snaps = snapshot_dicts(model, fake_snapshots(model))
    spec = spec or SliceSpec.from_config(dict(points_1d=5, points_2d=5, random_1d=2))
    return plan_slices(detached(parameters(model)), spec, snaps[0]["params"], snaps), snaps


@pytest.mark.parametrize("name", ["cnn", "cnn_bn"])
def test_sharded_grid_equals_unsharded_bitwise(data, name):
    model = tiny_model(name)
    plan, _ = _plan(model)
    with PointEvaluator(model, data, 48) as ev:
        full = evaluate_points(ev, plan)
    assert len(full) == 2 * len(plan.points)
    for shards in (2, 3, 7):
        parts = {}
        for i in reversed(range(shards)):  # any order, each shard in a "fresh process" model
            fresh = copy.deepcopy(model)
            start, stop = shard_bounds(len(plan.points), i, shards)
            with PointEvaluator(fresh, data, 48) as ev:
                parts[i] = evaluate_points(ev, plan, start, stop)
        gathered = [row for i in range(shards) for row in parts[i]]
        assert gathered == full  # same floats, bit for bit


def test_shard_bounds_partition_the_points():
    for n in (0, 1, 7, 100):
        for shards in (1, 2, 3, 8):
            spans = [shard_bounds(n, i, shards) for i in range(shards)]
            covered = [j for a, b in spans for j in range(a, b)]
            assert covered == list(range(n))
            sizes = [b - a for a, b in spans]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="shard = 3 is not allowed"):
        shard_bounds(10, 3, 3)
    with pytest.raises(ValueError, match="shards = 0"):
        shard_bounds(10, 0, 0)


def test_grids_contain_their_special_points():
    assert 0.0 in grid(-1, 1, 21) and len(grid(-1, 1, 21)) == 21
    t = line_grid(-0.5, 1.5, 9)
    assert 0.0 in t and 1.0 in t and list(t) == sorted(t)
    g = grid_through_zero(-3.3, 0.4, 15)
    assert len(g) == 15 and 0.0 in g and g[0] <= -3.3 and g[-1] >= 0.4
    assert np.allclose(np.diff(g), np.diff(g)[0])


def test_plan_layout(data):
    model = tiny_model()
    plan, snaps = _plan(model, SliceSpec.from_config(dict(points_1d=5, points_2d=7, random_1d=2,
                                         line_range=(-0.25, 1.25))))
    kinds = [(p["table"], p["direction"]) for p in plan.points]
    n_line = len(line_grid(-0.25, 1.25, 5))
    assert kinds == ([("slice_1d", "random")] * 10 + [("slice_1d", "init_to_final")] * n_line
                     + [("slice_2d", "random")] * 49 + [("slice_2d", "pca")] * 49
                     + [("trajectory_projection", "pca")] * len(snaps))
    pca = [p for p in plan.points if p["direction"] == "pca" and p["table"] == "slice_2d"]
    traj = [p for p in plan.points if p["table"] == "trajectory_projection"]
    alphas, betas = {p["alpha"] for p in pca}, {p["beta"] for p in pca}
    assert 0.0 in alphas and 0.0 in betas
    assert min(alphas) < min(p["alpha"] for p in traj) and max(alphas) >= 0
    assert min(betas) <= min(p["beta"] for p in traj) and max(betas) >= max(p["beta"]
                                                                             for p in traj)
    assert (traj[-1]["alpha"], traj[-1]["beta"], traj[-1]["off_plane"]) == (0.0, 0.0, 0.0)
    assert float(plan.pca_ratio.sum()) == pytest.approx(1.0)


def test_init_to_final_line_ends_exactly_at_the_trained_weights(data):
    model = tiny_model()
    plan, snaps = _plan(model, SliceSpec.from_config(dict(points_1d=5, random_1d=0, planes=())))
    assert {p["direction"] for p in plan.points} == {"init_to_final"}
    with PointEvaluator(model, data, 64) as ev:
        rows = evaluate_points(ev, plan)
    line = {(r["alpha"], r["split"]): r["loss"] for r in rows if r["direction"] == "init_to_final"}
    assert line[(1.0, "train")] == evaluate(model, *data["train"], 64)[0]
    init = copy.deepcopy(model)
    init.load_state_dict(fake_snapshots(model)[0]["state"])
    assert line[(0.0, "train")] == pytest.approx(evaluate(init, *data["train"], 64)[0], rel=1e-5)


def test_trajectory_rows_are_the_snapshots_actual_losses_with_their_bn_buffers(data):
    model = tiny_model("cnn_bn")
    plan, _ = _plan(model)
    snaps = fake_snapshots(model)
    with PointEvaluator(model, data, 64) as ev:
        rows = evaluate_points(ev, plan)
    traj = [r for r in rows if r["table"] == "trajectory_projection" and r["split"] == "test"]
    for r in traj:
        m = copy.deepcopy(model)
        m.load_state_dict(snaps[r["index"]]["state"])
        assert r["loss"] == evaluate(m, *data["test"], 64)[0]


def test_recomputed_bn_statistics_match_torch_update_bn(data):
    from torch.optim.swa_utils import update_bn

    model = tiny_model("cnn_bn")
    x = data["train"][0]
    ref = copy.deepcopy(model)
    update_bn([x[i:i + 50] for i in range(0, len(x), 50)], ref)
    recompute_bn_statistics(model, x, 50)
    for a, b in zip(buffers(model), buffers(ref), strict=True):
        torch.testing.assert_close(a, b)
    assert not model.training


def test_recompute_changes_only_bn_models_results(data):
    for name, changes in (("cnn_bn", True), ("cnn", False)):
        model = tiny_model(name)
        x, y = data["train"]
        with PointEvaluator(model, {"train": (x, y)}, 64) as ev:
            plain = ev.at()["train"]
        with PointEvaluator(model, {"train": (x, y)}, 64, bn_data=x) as ev:
            recomputed = ev.at()["train"]
        assert (plain != recomputed) == changes


def test_spec_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="slices.points_2d = 14 is not allowed: expected an odd"):
        SliceSpec.from_config(dict(points_2d=14))
    with pytest.raises(ValueError, match=r"Unsupported planes \['pcaa'\]"):
        SliceSpec.from_config(dict(planes=("pcaa",)))
    with pytest.raises(ValueError, match="slices.line_range"):
        SliceSpec.from_config(dict(line_range=(1.5, -0.5)))
    with pytest.raises(ValueError, match="Unsupported normalization"):
        SliceSpec.from_config(dict(normalization="filtre"))
    spec = SliceSpec.from_config({"points_2d": 9, "shards": 3, "planes": ["pca"]})
    assert spec.points_2d == 9 and spec.planes == ("pca",)


def test_runs_with_seeds():
    from landscape.config import with_defaults
    from landscape.study import run_table, runs_with_seeds

    cfg = {"study": with_defaults({"model": ["cnn"], "optimizer": ["sgd"], "lr": [0.1],
                                   "batch_size": [8], "seed": [1, 2, 11]}, "study")}
    runs = run_table(cfg)
    ids = list(runs.index)
    assert runs_with_seeds(runs, None) == ids[:1]
    assert runs_with_seeds(runs, [2, 11]) == ids[1:]
    with pytest.raises(ValueError, match=r"slices.seeds = \[3\] is not allowed"):
        runs_with_seeds(runs, [3], "slices.seeds")

def test_rows_fit_the_table_schemas(tmp_path, data):
    model = tiny_model()
    plan, _ = _plan(model)
    with PointEvaluator(model, data, 64) as ev:
        rows = evaluate_points(ev, plan, 0, 40)  # 15 1-D points, 25 2-D points, no trajectory
    extra = {"run": "r", "eval_set": {"train": "train[320,seed=0]", "test": "test[all]"},
             "eval_size": {"train": 320, "test": 160}, "bn_recomputed": False,
             "direction_seed": 0}
    tables = rows_to_tables(rows, extra)
    assert set(tables) == {"slice_1d", "slice_2d", "trajectory_projection"}
    for name, df in tables.items():
        write_table(df, name, tmp_path / f"{name}.parquet")
    assert len(tables["slice_1d"]) == 30 and len(tables["slice_2d"]) == 50
    assert isinstance(tables["trajectory_projection"], pd.DataFrame)
    assert len(tables["trajectory_projection"]) == 0


def test_non_finite_loss_at_a_point_is_refused(data):
    model = tiny_model("cnn")
    plan, _ = _plan(model)
    nan_data = {k: (torch.full_like(x, float("nan")), y) for k, (x, y) in data.items()}
    with PointEvaluator(model, nan_data, 48) as ev:
        with pytest.raises(FloatingPointError, match="non-finite .* loss .* slice point"):
            evaluate_points(ev, plan)
