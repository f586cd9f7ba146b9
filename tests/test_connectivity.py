"""Mode connectivity (landscape.connectivity): weight matching keeps the function and recovers
known permutations, paths have exact endpoints, barriers match hand computations, the Bézier
bend's gradient is the chain rule's and training it lowers the curve, spawned children are
reproducible and resume mid-epoch correctly."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from landscape.checkpoints import load_snapshots
from landscape.connectivity import (
    BezierPath,
    LinearPath,
    align,
    apply_permutation,
    barrier,
    barrier_location,
    barrier_mean,
    barrier_table,
    bezier_images,
    bezier_point,
    bezier_t_sequence,
    child_order_seeds,
    evaluate_path,
    identity_permutation,
    invert_permutation,
    linear_point,
    permutation_spec,
    pick_snapshot,
    random_permutation,
    spawn_children,
    train_bezier,
    weight_matching,
)
from landscape.evaluate import evaluate
from landscape.evaluator import use_channels_last
from landscape.models import MODELS, build_model
from landscape.params import bitwise_equal, parameter_names
from landscape.train import TrainConfig, train_run

from .conftest import make_split

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"simple_cnn": {}, "cnn": {"width": 4, "hidden": 8}, "cnn_bn": {"width": 4, "hidden": 8},
        "mlp": {"hidden": (16, 8)}}


def tiny(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, **TINY[name]).eval()


def randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Random running statistics and affine parameters, so that permuting them matters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and bitwise_equal([a[k] for k in a], [b[k] for k in a])


@pytest.fixture(scope="module")
def data():
    x, y = make_split(192, 3).tensors()
    return x, y


# ---------------------------------------------------------------- alignment


def test_every_registry_model_has_a_spec():
    assert set(TINY) == set(MODELS)
    sizes = {name: permutation_spec(tiny(name)).sizes for name in TINY}
    assert sizes["simple_cnn"] == {"features.0": 16, "features.2": 32, "classifier.1": 128}
    assert sizes["cnn"] == {"features.0": 4, "features.3": 8, "classifier.1": 8}
    assert sizes["cnn_bn"] == {"features.0": 4, "features.4": 8, "classifier.1": 8}
    assert sizes["mlp"] == {"net.1": 16, "net.3": 8}
    spec = permutation_spec(tiny("cnn"))
    # the conv→flatten→FC boundary: FC columns move in blocks of H·W = 7·7 per channel
    assert spec.axes["classifier.1.weight"][1].perm == "features.3"
    assert spec.axes["classifier.1.weight"][1].block == 49
    assert spec.axes["classifier.3.weight"] == (None, spec.axes["classifier.3.weight"][1])
    assert spec.axes["classifier.3.bias"] == (None,)
    bn = permutation_spec(tiny("cnn_bn"))
    assert bn.axes["features.1.num_batches_tracked"] == ()
    assert bn.axes["features.1.running_var"][0].perm == "features.0"


@pytest.mark.parametrize("name", sorted(TINY))
def test_permuted_network_computes_the_same_logits(name):
    model = tiny(name)
    randomise_bn(model)
    state = model.state_dict()
    perms = random_permutation(model, seed=5)
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    permuted = apply_permutation(model, state, perms)
    changed = [k for k in state if not torch.equal(state[k], permuted[k])]
    assert changed, "the permutation moved nothing"
    other = copy.deepcopy(model)
    other.load_state_dict(permuted)
    other.eval()
    x = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out = model(x), other(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    if "bn" in name:
        assert "features.1.running_mean" in changed
        assert torch.equal(permuted["features.1.num_batches_tracked"],
                           state["features.1.num_batches_tracked"])
    back = apply_permutation(model, permuted, invert_permutation(perms))
    assert states_equal(back, state)


def test_a_wrong_flatten_grouping_would_change_the_logits():
    """Control: permuting FC columns one by one instead of per channel breaks the function, so
    the logits test above can fail."""
    model = tiny("cnn")
    perms = random_permutation(model, seed=2)
    state = apply_permutation(model, model.state_dict(), perms)
    w = model.state_dict()["classifier.1.weight"]
    state["classifier.1.weight"] = w[:, :].index_select(
        1, torch.cat([perms["features.3"], torch.arange(8, w.shape[1])]))
    other = copy.deepcopy(model)
    other.load_state_dict(state)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (model(x) - other(x)).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["cnn", "cnn_bn", "mlp"])
def test_weight_matching_recovers_a_random_permutation(name):
    model = tiny(name)
    randomise_bn(model)
    state_a = model.state_dict()
    perms = random_permutation(model, seed=11)
    state_b = apply_permutation(model, state_a, perms)
    aligned, info = align(model, state_a, state_b, seed=3)
    assert info["converged"]
    assert states_equal(aligned, state_a)
    assert info["distance_before"] > 0 and info["distance_after"] == 0.0
    expected = invert_permutation(perms)
    assert all(torch.equal(info["perms"][p], expected[p]) for p in perms)


@pytest.mark.parametrize("name", ["cnn", "cnn_bn", "mlp"])
def test_aligning_a_model_to_itself_is_the_identity(name):
    model = tiny(name)
    state = model.state_dict()
    perms, info = weight_matching(model, state, state, seed=0)
    ident = identity_permutation(model)
    assert all(torch.equal(perms[p], ident[p]) for p in ident)
    assert info == {**info, "iterations": 1, "converged": True}
    aligned, _ = align(model, state, state)
    assert states_equal(aligned, state)


def test_weight_matching_brings_independent_models_closer():
    model, other = tiny("cnn", 0), tiny("cnn", 1)
    aligned, info = align(model, model.state_dict(), other.state_dict(), seed=0)
    assert info["converged"]
    assert info["distance_after"] < info["distance_before"]
    # and keeps B's function
    b = copy.deepcopy(other)
    b.load_state_dict(aligned)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(b(x), other(x), atol=1e-5, rtol=1e-5)


def test_distances_sum_the_parameters_in_one_order_in_every_process():
    # a float sum depends on its order; iterating the spec's frozenset of keys followed string
    # hashing, which changes per process, so distance_after differed in the last bit between runs
    from landscape.connectivity.alignment import PermutationSpec, _param_distance

    keys = [f"layer{i}.weight" for i in range(12)]
    seen: list[str] = []

    class Logged(dict):
        def __getitem__(self, key):
            seen.append(key)
            return super().__getitem__(key)

    spec = PermutationSpec(sizes={}, axes={k: (None,) for k in keys}, parameters=frozenset(keys))
    state = Logged({k: torch.ones(1) for k in keys})
    assert _param_distance(spec, state, {k: torch.zeros(1) for k in keys}) == math.sqrt(12)
    assert seen == sorted(keys)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.b(x + self.a(x))


@pytest.mark.parametrize("model, message", [
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.LayerNorm(8), nn.Linear(8, 10)),
     "Unsupported layer '2' of type LayerNorm"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, groups=1), nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(),
                   nn.Linear(4 * 24 * 24, 10)), "grouped"),
    (Residual(), "not a plain chain|Unsupported operation"),
])
def test_unsupported_models_raise_a_clear_error(model, message):
    with pytest.raises(ValueError, match=message):
        permutation_spec(model)


# ---------------------------------------------------------------- paths and barriers


def test_barrier_of_a_hand_made_curve():
    ts = [0.5, 0.0, 0.25, 1.0, 0.75]
    values = [4.0, 1.0, 2.0, 3.0, 2.0]
    # line 1 + 2t: excess at .25: 2 − 1.5, at .5: 4 − 2, at .75: 2 − 2.5
    assert barrier(ts, values) == pytest.approx(2.0, abs=1e-15)
    assert barrier_location(ts, values) == 0.5
    assert barrier([0, 0.5, 1], [3.0, 1.0, 2.0]) == 0.0  # a valley has no barrier
    assert barrier([0, 0.3, 1, 1.5], [0.0, 1.0, 1.0, 99.0]) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="t = 1"):
        barrier([0, 0.5], [1.0, 2.0])


def test_both_barrier_forms_on_a_path_with_unequal_endpoints():
    """Entezari et al. (2022): the rise above the chord; Frankle et al. (2020): the value above the
    endpoints' mean. With v(0) ≠ v(1) they differ, in either direction; both match brute force."""
    ts = np.array([1.0, 0.0, 0.1, 0.5, 0.9, 2.0])  # unsorted; t = 2 lies outside [0, 1]
    v = np.array([2.0, 0.0, 1.9, 1.5, 2.1, 50.0])
    inside = (ts >= 0) & (ts <= 1)
    chord = max(v[i] - ((1 - ts[i]) * 0.0 + ts[i] * 2.0) for i in range(len(ts)) if inside[i])
    mean = max(v[i] for i in range(len(ts)) if inside[i]) - 0.5 * (0.0 + 2.0)
    assert chord == pytest.approx(1.7) and mean == pytest.approx(1.1)  # the forms differ
    assert barrier(ts, v) == pytest.approx(chord, abs=1e-12)
    assert barrier_mean(ts, v) == pytest.approx(mean, abs=1e-12)
    assert barrier_location(ts, v) == 0.1
    # the other way round: a bump near the higher endpoint rises little above the chord
    assert barrier([0, 0.9, 1], [0.0, 2.1, 2.0]) == pytest.approx(0.3)
    assert barrier_mean([0, 0.9, 1], [0.0, 2.1, 2.0]) == pytest.approx(1.1)
    # a monotone path: no barrier above the chord, but ½|v(1) − v(0)| above the mean
    assert barrier([0, 0.5, 1], [0.0, 0.5, 3.0]) == 0.0
    assert barrier_mean([0, 0.5, 1], [0.0, 0.5, 3.0]) == 1.5
    # equal endpoints: the forms agree, and a flat path gives exactly 0 in both
    assert barrier_mean([0, 0.5, 1], [0.7, 1.2, 0.7]) == barrier([0, 0.5, 1], [0.7, 1.2, 0.7])
    assert barrier_mean([0, 0.3, 1], [0.1, 0.1, 0.1]) == 0.0
    assert math.isnan(barrier_mean([0, 0.5, 1], [0.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="t = 0"):
        barrier_mean([0.5, 1], [1.0, 2.0])
    # barrier_table writes both forms for the loss and the error 1 − accuracy
    frame = pd.DataFrame({"t": ts, "split": "train", "loss": v, "accuracy": 1.0 - v / 10})
    row = barrier_table(frame).iloc[0]
    assert row.loss_barrier == pytest.approx(chord) and row.loss_barrier_mean == pytest.approx(mean)
    assert row.error_barrier == pytest.approx(chord / 10)
    assert row.error_barrier_mean == pytest.approx(mean / 10)
    assert row.loss_max == 2.1


def test_linear_and_bezier_points():
    g = torch.Generator().manual_seed(0)
    a, c, b = ([torch.randn(3, 4, generator=g), torch.randn(5, generator=g)] for _ in range(3))
    for fn, args in ((linear_point, (a, b)), (bezier_point, (a, c, b))):
        assert bitwise_equal(fn(*args, 0.0), a)
        assert bitwise_equal(fn(*args, 1.0), b)
    for t in (0.2, 0.5, 0.9):
        exp_lin = [(1 - t) * x + t * z for x, z in zip(a, b, strict=True)]
        exp_bez = [(1 - t) ** 2 * x + 2 * t * (1 - t) * y + t * t * z
                   for x, y, z in zip(a, c, b, strict=True)]
        for got, exp in ((linear_point(a, b, t), exp_lin), (bezier_point(a, c, b, t), exp_bez)):
            for u, v in zip(got, exp, strict=True):
                torch.testing.assert_close(u, v, atol=1e-6, rtol=1e-6)
    # a bend at the midpoint is the straight line
    mid = linear_point(a, b, 0.5)
    for u, v in zip(bezier_point(a, mid, b, 0.3), linear_point(a, b, 0.3), strict=True):
        torch.testing.assert_close(u, v, atol=1e-6, rtol=1e-6)
    # state dicts: integer entries from the nearer endpoint
    sa = {"w": a[0], "n": torch.tensor(3)}
    sb = {"w": b[0], "n": torch.tensor(7)}
    assert int(linear_point(sa, sb, 0.4)["n"]) == 3 and int(linear_point(sa, sb, 0.6)["n"]) == 7


@pytest.mark.parametrize("name", ["cnn", "cnn_bn"])
def test_path_endpoints_reproduce_both_checkpoints_exactly(name, data):
    x, y = data
    ma, mb = tiny(name, 0), tiny(name, 1)
    randomise_bn(ma, 0)
    randomise_bn(mb, 1)
    sa, sb = ma.state_dict(), mb.state_dict()
    model = copy.deepcopy(ma)
    (xc,) = use_channels_last(model, x)
    use_channels_last(ma)
    use_channels_last(mb)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref_a, ref_b = evaluate(ma, xc, y, 64), evaluate(mb, xc, y, 64)
    bend = {k: (v + 0.1 if v.is_floating_point() else v) for k, v in sa.items()}
    paths = [LinearPath.from_states(model, sa, sb), BezierPath.from_states(model, sa, bend, sb),
             lambda t: linear_point(sa, sb, t), [linear_point(sa, sb, t) for t in (0, .5, 1)]]
    for path in paths:
        frame = evaluate_path(model, path, [0.0, 0.5, 1.0], {"train": (xc, y)}, batch_size=64)
        assert list(frame.columns) == ["t", "split", "loss", "accuracy", "bn_recomputed"]
        assert (frame.loc[frame.t == 0.0, ["loss", "accuracy"]].iloc[0].tolist()
                == list(ref_a))
        assert (frame.loc[frame.t == 1.0, ["loss", "accuracy"]].iloc[0].tolist()
                == list(ref_b))
        assert not frame.bn_recomputed.any()
        assert frame.loc[frame.t == 0.5, "loss"].iloc[0] != ref_a[0]
    assert states_equal(model.state_dict(), before)  # restored bitwise


def test_path_midpoint_is_the_interpolated_model(data):
    x, y = data
    ma, mb = tiny("cnn", 0), tiny("cnn", 1)
    sa, sb = ma.state_dict(), mb.state_dict()
    mid = copy.deepcopy(ma)
    mid.load_state_dict({k: 0.75 * sa[k] + 0.25 * sb[k] for k in sa})
    frame = evaluate_path(ma, LinearPath.from_states(ma, sa, sb), [0.0, 0.25, 1.0],
                          {"train": (x, y)}, batch_size=64)
    loss, _ = evaluate(mid, x, y, 64)
    assert frame.loc[frame.t == 0.25, "loss"].iloc[0] == pytest.approx(loss, rel=1e-5)


def test_bn_statistics_are_recomputed_along_the_path(data):
    x, y = data
    ma, mb = tiny("cnn_bn", 0), tiny("cnn_bn", 1)
    randomise_bn(ma, 0)
    randomise_bn(mb, 1)
    path = LinearPath.from_states(ma, ma.state_dict(), mb.state_dict())
    with pytest.raises(ValueError, match="BatchNorm"):
        evaluate_path(ma, LinearPath(path.a, path.b), [0.0, 1.0], {"train": (x, y)})
    frame = evaluate_path(ma, path, [0.0, 0.5, 1.0], {"train": (x, y)}, batch_size=64,
                          bn_data=x[:128])
    assert frame.bn_recomputed.all()
    ref = copy.deepcopy(ma)
    from landscape.evaluator import recompute_bn_statistics
    recompute_bn_statistics(ref, x[:128], 64)
    assert frame.loc[frame.t == 0.0, "loss"].iloc[0] == evaluate(ref, x, y, 64)[0]
    assert frame.loc[frame.t == 0.0, "loss"].iloc[0] != evaluate(ma, x, y, 64)[0]


def test_barrier_between_a_model_and_itself_is_zero(data):
    x, y = data
    model = tiny("cnn")
    state = model.state_dict()
    frame = evaluate_path(model, LinearPath.from_states(model, state, state),
                          np.linspace(0, 1, 5), {"train": (x, y), "test": (x[:64], y[:64])},
                          batch_size=64)
    table = barrier_table(frame)
    assert list(table.split) == ["train", "test"]
    assert (table[["loss_barrier", "error_barrier", "loss_barrier_mean",
                   "error_barrier_mean"]] == 0.0).all().all()
    assert (table.loss_a == table.loss_b).all()


# ---------------------------------------------------------------- Bézier training


def test_bezier_gradient_is_the_chain_rule(data):
    """One SGD step (momentum 0, full batch) equals bend − lr·∂L(θ(t))/∂bend from autograd."""
    x, y = data
    model = tiny("mlp", 0)
    sa = {k: v.clone() for k, v in model.state_dict().items()}
    sb = tiny("mlp", 1).state_dict()
    g = torch.Generator().manual_seed(0)
    bend0 = {k: 0.5 * (sa[k] + sb[k]) + 0.05 * torch.randn(sa[k].shape, generator=g)
             for k in sa}
    lr = 0.3
    out = train_bezier(model, sa, sb, x, y, init_bend=bend0, steps=1, lr=lr, momentum=0.0,
                       batch_size=x.shape[0], seed=4)
    (t,) = bezier_t_sequence(4, 1)
    names = parameter_names(model)
    c = {k: bend0[k].clone().requires_grad_(True) for k in names}
    theta = {k: (1 - t) ** 2 * sa[k] + 2 * t * (1 - t) * c[k] + t ** 2 * sb[k] for k in names}
    loss = F.cross_entropy(functional_call(model, theta, (x,)), y)
    grads = torch.autograd.grad(loss, [c[k] for k in names])
    for k, g in zip(names, grads, strict=True):
        torch.testing.assert_close(out[k], bend0[k] - lr * g, atol=1e-6, rtol=1e-5)
        assert not torch.equal(out[k], bend0[k])
    assert states_equal(model.state_dict(), sa)  # the model is restored


def _train(model: nn.Module, x, y, epochs: int, seed: int) -> dict:
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], 32):
            idx = order[i:i + 32]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_training_the_bend_lowers_the_loss_along_the_curve(data):
    x, y = data
    sa = _train(tiny("mlp", 0), x, y, 8, 0)
    sb = _train(tiny("mlp", 1), x, y, 8, 1)
    model = tiny("mlp", 2)
    ts = np.linspace(0, 1, 9)
    line = evaluate_path(model, LinearPath.from_states(model, sa, sb), ts, {"train": (x, y)})
    bend = train_bezier(model, sa, sb, x, y, epochs=15, lr=0.05, momentum=0.9, batch_size=32,
                        seed=0)
    assert set(bend) == set(sa)
    path = BezierPath.from_states(model, sa, bend, sb)
    curve = evaluate_path(model, path, ts, {"train": (x, y)})
    assert bitwise_equal(path.params(0.0), [sa[k] for k in parameter_names(model)])
    assert bitwise_equal(path.params(1.0), [sb[k] for k in parameter_names(model)])
    assert line.loss.iloc[[0, -1]].tolist() == curve.loss.iloc[[0, -1]].tolist()
    assert line.loss.iloc[[0, -1]].max() < 0.1, "both endpoints should be trained"
    assert barrier(ts, line.loss) > 0.3, "the endpoints should not be linearly connected"
    assert curve.loss.mean() < 0.5 * line.loss.mean()
    assert barrier(ts, curve.loss) < 0.2 * barrier(ts, line.loss)


def test_train_bezier_runs_a_batchnorm_cnn_and_restores_it(data):
    x, y = data
    model = tiny("cnn_bn", 0)
    sa, sb = model.state_dict(), tiny("cnn_bn", 1).state_dict()
    before = {k: v.clone() for k, v in sa.items()}
    bend = train_bezier(model, sa, sb, x, y, steps=3, lr=0.01, batch_size=64, seed=1)
    again = train_bezier(model, sa, sb, x, y, steps=3, lr=0.01, batch_size=64, seed=1)
    assert states_equal(bend, again)  # deterministic
    assert states_equal(model.state_dict(), before)
    assert not model.training
    mid = linear_point(sa, sb, 0.5)
    assert torch.equal(bend["features.1.running_mean"], mid["features.1.running_mean"])
    assert not torch.equal(bend["features.0.weight"], mid["features.0.weight"])
    with pytest.raises(ValueError, match="exactly one"):
        train_bezier(model, sa, sb, x, y, lr=0.01)



def test_bezier_images_are_the_images_the_bend_trains_on(data):
    """What the connectivity job records for the cost model (bezier_images) is what
    train_bezier passes forward and backward: epochs, or steps ending inside an epoch."""
    x, y = data
    model = tiny("cnn", 0)
    sa, sb = model.state_dict(), tiny("cnn", 1).state_dict()
    seen: list[int] = []
    hook = model.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    try:
        for kw in ({"epochs": 1}, {"steps": 5}):
            seen.clear()
            train_bezier(model, sa, sb, x, y, lr=0.01, batch_size=50, seed=1, **kw)
            assert sum(seen) == bezier_images(len(y), 50, **kw)
    finally:
        hook.remove()
    assert bezier_images(120, 50, steps=4) == 120 + 50  # an epoch of 50 + 50 + 20, then 50


# ---------------------------------------------------------------- spawning


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny run without momentum (so a child with the run's own data order reproduces it)."""
    train, test = make_split(160, 1), make_split(40, 2)
    cfg = TrainConfig(model="cnn", optimizer="sgd", lr=0.05, batch_size=32, weight_decay=1e-4,
                      seed=7, epochs=2, stop_at_loss=None, momentum=0.0, rho=0.0,
                      schedule="cosine",
                      model_options={"width": 2, "hidden": 8}, snapshot_steps=[2],
                      sharpness_snapshots=3, eval_batch_size=64, channels_last=True)
    out = tmp_path_factory.mktemp("run")
    train_run(cfg, train, test, out, device="cpu", progress=False)
    return cfg, load_snapshots(out / "snapshots.pt"), train.tensors()


def test_spawned_children_at_the_final_step_equal_the_run(trained_run, data):
    cfg, snaps, (x, y) = trained_run
    final_step = snaps["step"][-1]
    assert final_step == 10
    final = pick_snapshot(snaps, final_step)
    kids = spawn_children(cfg, final, final_step, x, y, spawn_seed=0, device="cpu")
    assert [k["steps"] for k in kids] == [0, 0]
    assert all(states_equal(k["state"], final) for k in kids)
    model = build_model(cfg.model, **cfg.model_options)
    frame = evaluate_path(model, LinearPath.from_states(model, kids[0]["state"], kids[1]["state"]),
                          np.linspace(0, 1, 5), {"train": data}, batch_size=64)
    assert barrier_table(frame).loc[0, ["loss_barrier", "error_barrier"]].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("step", [0, 2, 5])
def test_a_child_with_the_runs_order_reproduces_the_run(trained_run, step):
    """With momentum 0 the optimiser state is empty, so a child from step k (k = 2: inside
    epoch 1; k = 5: an epoch end) with order seed = run seed retraces the run bitwise."""
    cfg, snaps, (x, y) = trained_run
    (child,) = spawn_children(cfg, pick_snapshot(snaps, step), step, x, y,
                              order_seeds=[cfg.seed], device="cpu")
    assert child["steps"] == 10 - step and child["status"] == "ok"
    assert states_equal(child["state"], snaps["states"][-1])


def test_children_are_deterministic_and_differ(trained_run):
    cfg, snaps, (x, y) = trained_run
    state = pick_snapshot(snaps, 2)
    kids = spawn_children(cfg, state, 2, x, y, spawn_seed=3, device="cpu")
    again = spawn_children(cfg, state, 2, x, y, spawn_seed=3, device="cpu")
    assert [k["order_seed"] for k in kids] == child_order_seeds(cfg.seed, 3) != \
        child_order_seeds(cfg.seed, 4)
    assert all(states_equal(a["state"], b["state"]) for a, b in zip(kids, again, strict=True))
    assert not states_equal(kids[0]["state"], kids[1]["state"])
    assert all(math.isfinite(k["final_loss"]) for k in kids)
    with pytest.raises(ValueError, match="no snapshot at step 3"):
        pick_snapshot(snaps, 3)
    with pytest.raises(ValueError, match="spawn step 11"):
        spawn_children(cfg, state, 11, x, y, device="cpu")
