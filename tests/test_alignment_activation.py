"""Activation matching and REPAIR (landscape.connectivity.activation, .repair): activation
matching recovers known permutations (dead units included) and solves a hand-built case;
its correlations are numpy's; REPAIR gives every corrected unit the interpolated goal
statistics (measured directly), is the identity at the endpoints, and evaluate_path with REPAIR
leaves the model bitwise as it was and without hooks."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from landscape.connectivity import (
    LinearPath,
    Repair,
    activation_correlations,
    activation_matching,
    align_activations,
    apply_permutation,
    evaluate_path,
    invert_permutation,
    linear_point,
    random_permutation,
    repair_corrections,
    repair_points,
    unit_statistics,
)
from landscape.connectivity.repair import corrected
from landscape.evaluate import evaluate
from landscape.evaluator import recompute_bn_statistics, use_channels_last

from .conftest import make_split
from .test_connectivity import randomise_bn, states_equal, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    x, y = make_split(160, 3).tensors()
    return x, y


def logits(model: nn.Module, state: dict, x: torch.Tensor) -> torch.Tensor:
    net = copy.deepcopy(model)
    net.load_state_dict(state)
    with torch.no_grad():
        return net.eval()(x)


# ---------------------------------------------------------------- activation matching


@pytest.mark.parametrize("name", ["mlp", "cnn", "cnn_bn"])
def test_activation_matching_recovers_a_random_permutation(name, data):
    x, _ = data
    model = tiny(name)
    randomise_bn(model)
    state_a = model.state_dict()
    perms = random_permutation(model, seed=7)
    state_b = apply_permutation(model, state_a, perms)
    aligned, info = align_activations(model, state_a, state_b, x, batch_size=64)
    expected = invert_permutation(perms)
    assert all(torch.equal(info["perms"][p], expected[p]) for p in perms)
    assert states_equal(aligned, state_a)  # values are only moved: bitwise
    assert info["distance_before"] > 0 and info["distance_after"] == 0.0
    assert info["iterations"] == 1 and info["converged"] and info["images"] == 160
    assert info["objective"] > info["objective_identity"]
    torch.testing.assert_close(logits(model, aligned, x), logits(model, state_b, x),
                               atol=1e-5, rtol=1e-5)  # B's function is kept
    assert states_equal(model.state_dict(), state_a)  # the model itself is not touched


def test_dead_units_are_matched_by_their_preactivations(data):
    """Three hidden units dead on every input: their activations are 0, so only the tie-break by
    the pre-activations can pair them; the permuted copy still comes back exactly."""
    x, _ = data
    model = tiny("mlp")
    state = model.state_dict()
    state["net.1.bias"][:3] = -1e3
    model.load_state_dict(state)
    corr, _ = activation_correlations(model, state, state, x, 64)
    assert (corr["net.1"][:3] == 0).all() and (corr["net.1"][:, :3] == 0).all()
    perms = random_permutation(model, seed=1)
    aligned, info = align_activations(model, state, apply_permutation(model, state, perms), x)
    assert states_equal(aligned, state)


def test_hand_built_two_units():
    """A's units read x0 and x1; B's unit 0 follows x1 (and a little x0), unit 1 follows x0:
    B's unit P[i] must be A's unit i's partner, P = [1, 0]."""
    torch.manual_seed(0)
    x = torch.randn(500, 2)
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    state_a = {"0.weight": torch.eye(2), "0.bias": torch.zeros(2),
               "2.weight": torch.ones(1, 2), "2.bias": torch.zeros(1)}
    state_b = {"0.weight": torch.tensor([[0.2, 1.0], [2.0, -0.3]]),
               "0.bias": torch.tensor([0.1, -0.2]), "2.weight": torch.ones(1, 2),
               "2.bias": torch.zeros(1)}
    perms, info = activation_matching(net, state_a, state_b, x, batch_size=128)
    assert perms["0"].tolist() == [1, 0]
    # the correlations and the objective by hand
    a = torch.relu(x @ state_a["0.weight"].T + state_a["0.bias"]).double().numpy()
    b = torch.relu(x @ state_b["0.weight"].T + state_b["0.bias"]).double().numpy()
    c = np.corrcoef(a.T, b.T)[:2, 2:]
    assert c[0, 1] > c[0, 0] and c[1, 0] > c[1, 1]
    assert info["objective"] == pytest.approx(c[0, 1] + c[1, 0], rel=1e-10)
    assert info["objective_identity"] == pytest.approx(c[0, 0] + c[1, 1], rel=1e-10)


def test_correlations_and_assignment_against_brute_force(data):
    """The accumulated float64 correlations equal numpy's on the stored activations (conv:
    every position a sample), and no permutation of a layer has a larger sum."""
    x, _ = data
    ma, mb = tiny("cnn", 0), tiny("cnn", 1)
    sa, sb = ma.state_dict(), mb.state_dict()
    corr, samples = activation_correlations(ma, sa, sb, x, batch_size=48)
    assert samples == 160 * 28 * 28

    def acts(model):
        out = model.features[1](model.features[0](x))  # post-ReLU of the first conv
        return out.detach().movedim(1, -1).reshape(-1, 4).double().numpy()

    ref = np.corrcoef(acts(ma).T, acts(mb).T)[:4, 4:]
    np.testing.assert_allclose(corr["features.0"].numpy(), ref, rtol=1e-9, atol=1e-12)
    perms, _ = activation_matching(ma, sa, sb, x)
    c = corr["features.0"].numpy()
    best = max(sum(c[i, p[i]] for i in range(4)) for p in itertools.permutations(range(4)))
    got = perms["features.0"].numpy()
    assert sum(c[i, got[i]] for i in range(4)) == pytest.approx(best, abs=1e-6)


def test_a_network_matched_to_itself_is_not_moved(data):
    x, _ = data
    model = tiny("cnn_bn")
    randomise_bn(model)
    state = model.state_dict()
    perms, _ = activation_matching(model, state, state, x)
    assert all(torch.equal(p, torch.arange(len(p))) for p in perms.values())


# ---------------------------------------------------------------- REPAIR


def measured(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict:
    """Per-unit mean and population std of each module's output, from the stored outputs."""
    outs: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda _m, _i, out, n=n: outs[n].append(out.detach())) for n in names]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    res = {}
    for n, o in outs.items():
        z = torch.cat(o).movedim(1, -1).reshape(-1, o[0].shape[1]).double()
        res[n] = (z.mean(0), z.std(0, unbiased=False))
    return res


def pair(name: str, dtype=torch.float64):
    ma, mb = tiny(name, 0).to(dtype), tiny(name, 1).to(dtype)
    randomise_bn(ma, 0)
    randomise_bn(mb, 1)
    return ma, ma.state_dict(), mb.state_dict()


@pytest.mark.parametrize("name,dtype,rtol", [("mlp", torch.float64, 1e-7),
                                             ("cnn", torch.float64, 1e-7),
                                             ("cnn_bn", torch.float64, 1e-7),
                                             ("cnn", torch.float32, 1e-4)])
def test_repair_gives_every_unit_the_goal_statistics(name, dtype, rtol, data):
    x = data[0].to(dtype)
    model, sa, sb = pair(name, dtype)
    bn = "bn" in name
    repair = Repair.from_states(model, sa, sb, x, batch_size=64, bn_data=x if bn else None)
    net = copy.deepcopy(model)
    net.load_state_dict(linear_point(sa, sb, 0.5))
    if bn:  # as on the path: statistics re-estimated first, then REPAIR
        recompute_bn_statistics(net, x, 64)
    names = repair_points(net)
    assert names == (["features.1", "features.5", "classifier.1"] if bn else
                     ["net.1", "net.3"] if name == "mlp" else
                     ["features.0", "features.3", "classifier.1"])
    goal = repair.goal(0.5)
    # the endpoint statistics are what direct hooks measure on each endpoint
    end = copy.deepcopy(model)
    end.load_state_dict(sb)
    if bn:
        recompute_bn_statistics(end, x, 64)
    tol = 1e-9 if dtype == torch.float64 else 1e-6  # float32: differences formed in float32
    for n, (m, s) in measured(end, x, names).items():
        torch.testing.assert_close(repair.stats_b[n][0], m, rtol=tol, atol=tol)
        torch.testing.assert_close(repair.stats_b[n][1], s, rtol=tol, atol=tol)
    before = measured(net, x, names)
    collapsed = [float((before[n][1] / goal[n][1]).min()) for n in names]
    assert min(collapsed) < 0.95, collapsed  # control: the midpoint is off the goal
    corrections = repair.corrections(net, 0.5)
    with corrected(net, corrections):
        after = measured(net, x, names)
    for n in names:
        mean, std = goal[n]
        np.testing.assert_allclose(after[n][1].numpy(), std.numpy(), rtol=rtol)
        np.testing.assert_allclose(after[n][0].numpy(), mean.numpy(), rtol=rtol,
                                   atol=rtol * float(std.max()))
    assert all(not m._forward_hooks for m in net.modules())  # hooks gone


def test_repair_measures_later_layers_with_the_earlier_corrections(data):
    """Control: corrections from one uncorrected pass (each layer's own statistics) miss the
    goal after the first layer; the layer-by-layer measurement hits it."""
    x = data[0].double()
    model, sa, sb = pair("mlp")
    repair = Repair.from_states(model, sa, sb, x, batch_size=64)
    net = copy.deepcopy(model)
    net.load_state_dict(linear_point(sa, sb, 0.5))
    goal = repair.goal(0.5)
    from landscape.connectivity.repair import affine

    stats = unit_statistics(net, x, 64)
    naive = {n: affine(*stats[n], *goal[n]) for n in goal}
    with corrected(net, naive):
        wrong = measured(net, x, list(goal))
    with corrected(net, repair_corrections(net, goal, x, 64)):
        right = measured(net, x, list(goal))
    torch.testing.assert_close(wrong["net.1"][1], goal["net.1"][1])  # first layer: the same
    assert not torch.allclose(wrong["net.3"][1], goal["net.3"][1], rtol=1e-3)
    torch.testing.assert_close(right["net.3"][1], goal["net.3"][1])


@pytest.mark.parametrize("name", ["mlp", "cnn", "cnn_bn"])
def test_repaired_path_ends_at_the_endpoints_and_restores_the_model(name, data):
    x, y = data
    model, sa, sb = pair(name, torch.float32)
    (xc,) = use_channels_last(model, x)
    bn_data = xc if "bn" in name else None
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ts = [0.0, 0.5, 1.0]
    sets = {"train": (xc, y), "test": (xc[:64], y[:64])}
    path = LinearPath.from_states(model, sa, sb)
    plain = evaluate_path(model, path, ts, sets, 64, bn_data=bn_data)
    repair = Repair.from_states(model, sa, sb, xc, batch_size=64, bn_data=bn_data)
    fixed = evaluate_path(model, path, ts, sets, 64, bn_data=bn_data, repair=repair)
    assert states_equal(model.state_dict(), before)  # restored bitwise
    assert all(not m._forward_hooks for m in model.modules())
    assert list(fixed.columns) == list(plain.columns)
    for t in (0.0, 1.0):
        p = plain[plain.t == t].set_index("split")
        f = fixed[fixed.t == t].set_index("split")
        for split in sets:
            assert f.loc[split, "loss"] == pytest.approx(p.loc[split, "loss"], abs=1e-6)
    mid = fixed[(fixed.t == 0.5) & (fixed.split == "train")]["loss"].item()
    assert mid != plain[(plain.t == 0.5) & (plain.split == "train")]["loss"].item()
    # the repaired midpoint by hand: the interpolated network with its corrections
    net = copy.deepcopy(model)
    net.load_state_dict(linear_point(sa, sb, 0.5))
    if bn_data is not None:
        recompute_bn_statistics(net, bn_data, 64)
    with corrected(net, repair.corrections(net, 0.5)):
        loss, _ = evaluate(net, xc, y, 64)
    assert mid == pytest.approx(loss, rel=1e-6)
