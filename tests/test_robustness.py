"""Robustness measures (landscape.robustness): weight noise, ε-/adaptive sharpness, PAC-Bayes.

Exactness at zero perturbation, boxes that are never left, the bisection on curves known in closed
form, and the reparametrisation argument of Dinh et al. (2017): rescaling one ReLU layer by a and
the next by 1/a leaves the function unchanged; the relative/adaptive measures must not move, the
absolute ones must.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from landscape.directions import gaussian_like
from landscape.evaluate import evaluate
from landscape.evaluator import PointEvaluator, use_channels_last
from landscape.models import build_model
from landscape.params import (
    bitwise_equal,
    buffers,
    detached,
    filter_norms,
    norm,
    parameters,
)
from landscape.robustness import (
    MAG_EPS,
    adaptive_sharpness,
    adaptive_sharpness_average,
    bisect_sigma,
    box_ascent,
    epsilon_box,
    epsilon_sharpness,
    loss_and_grad,
    mean_curve,
    noise_direction,
    noise_seed,
    pacbayes_flatness,
    pacbayes_seed,
    robustness_curve,
    sigma_at_half_accuracy,
)

from .conftest import make_split

pytestmark = pytest.mark.usefixtures("one_thread")


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> nn.Module:
    """Full-batch heavy-ball gradient descent (β = 0.9), so the model sits on its way to a minimum
    of the synthetic data. (Hand-written: the first torch.optim optimiser costs seconds of lazy
    imports.)"""
    ps = parameters(model)
    velocity = [torch.zeros_like(p) for p in ps]
    model.eval()
    for _ in range(steps):
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), ps)
        with torch.no_grad():
            for p, v, g in zip(ps, velocity, grads, strict=True):
                p.sub_(v.mul_(0.9).add_(g), alpha=lr)
    return model


@pytest.fixture(scope="module")
def data():
    return {"train": make_split(192, 1).tensors(), "test": make_split(96, 2).tensors()}


@pytest.fixture(scope="module")
def mlp(data):
    torch.manual_seed(0)
    x, y = data["train"]
    # train accuracy 1 at loss ≈ 0.23: not yet the regime where every measure is tiny
    return fit(build_model("mlp", hidden=(16, 8)), x, y, steps=25, lr=0.05)


@pytest.fixture(scope="module")
def cnn(data):
    torch.manual_seed(0)
    x, y = data["train"]
    return fit(build_model("cnn", width=4, hidden=8), x[:96], y[:96], steps=10, lr=0.1)


def at_point(model: nn.Module, delta, x, y) -> tuple[float, float]:
    """Loss and accuracy of an independent copy of ``model`` moved by ``delta``."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p, d in zip(parameters(m), delta, strict=True):
            p.add_(d)
    return evaluate(m, x, y, 64)


def dinh_rescale(model: nn.Module, a: float) -> nn.Module:
    """MLP 784→16→8→10: first layer (weights and bias) × a, second layer's weights × 1/a. ReLU is
    positively homogeneous, so the function is unchanged (Dinh et al. 2017, Sec. 4)."""
    m = copy.deepcopy(model)
    first, second = m.net[1], m.net[3]
    with torch.no_grad():
        first.weight.mul_(a)
        first.bias.mul_(a)
        second.weight.div_(a)
    return m


# ---------------------------------------------------------------- weight noise

@pytest.mark.parametrize("name", ["cnn", "cnn_bn"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_zero_noise_reproduces_the_checkpoint_exactly(data, name, channels_last):
    torch.manual_seed(3)
    model = build_model(name, width=4, hidden=8).eval()
    x, y = data["test"]
    if channels_last:
        (x,) = use_channels_last(model, x)
    reference = evaluate(copy.deepcopy(model), x, y, 32)
    before, bufs = detached(parameters(model)), detached(buffers(model))
    with PointEvaluator(model, {"test": (x, y)}, 32) as ev:
        df = robustness_curve(ev, [0.0, 0.05], draws=2, seed=1)
    zero = df[df["sigma"] == 0.0]
    assert len(zero) == 2 * 2  # 2 modes × 2 draws
    assert (zero["loss"] == reference[0]).all() and (zero["accuracy"] == reference[1]).all()
    assert not (df[df["sigma"] > 0]["loss"] == reference[0]).any()
    assert bitwise_equal(parameters(model), before) and bitwise_equal(buffers(model), bufs)
    assert all(bool((d == 0).all()) for d in noise_direction(before, 0.0, "relative", 5))


def test_noise_direction_has_the_documented_scale():
    torch.manual_seed(0)
    w = [torch.randn(48, 400) * torch.linspace(0.1, 3.0, 48)[:, None],  # filters of varied norm
         torch.randn(48) * 2.0, torch.randn(10, 48)]
    sigma = 0.2
    d = noise_direction(w, sigma, "absolute", seed=7)
    assert abs(float(torch.cat([t.reshape(-1) for t in d]).std()) / sigma - 1) < 0.03
    ratios, bias = [], []
    for s in range(20):
        d = noise_direction(w, sigma, "relative", seed=s)
        ratios.append(filter_norms(d[0]) ** 2 / (sigma**2 * filter_norms(w[0]) ** 2))
        bias.append(d[1] / (sigma * w[1].abs()))
    ratios = torch.stack(ratios)
    # E‖δ_f‖² = σ²‖θ_f‖² filter by filter; one draw is within a few 1/√(2·400) of it
    assert torch.allclose(ratios.mean(0), torch.ones(48), atol=0.05)
    assert float((ratios.sqrt() - 1).abs().max()) < 0.2
    # 1-D tensors: std σ|θ_i| per entry
    assert abs(float(torch.stack(bias).std()) - 1) < 0.1
    # seeded, linear in σ, the same z for both modes (paired): relative / absolute = rms per filter
    a, b = noise_direction(w, 1.0, "relative", 3), noise_direction(w, 1.0, "relative", 3)
    assert bitwise_equal(a, b)
    assert not bitwise_equal(a, noise_direction(w, 1.0, "relative", 4))
    assert torch.allclose(noise_direction(w, 0.5, "relative", 3)[0], 0.5 * a[0])
    ab = noise_direction(w, 1.0, "absolute", 3)
    rms = filter_norms(w[0]) / math.sqrt(400)
    assert torch.allclose(a[0], ab[0] * rms[:, None], rtol=1e-5)
    with pytest.raises(ValueError, match="Supported modes"):
        noise_direction(w, 0.1, "layer", 0)


def test_robustness_curve_rows_are_the_documented_points(mlp, data):
    x, y = data["test"]
    with PointEvaluator(mlp, {"train": data["train"], "test": (x, y)}, 64) as ev:
        df = robustness_curve(ev, [0.0, 0.3, 0.03], modes=("relative", "absolute"), draws=2,
                              seed=11)
    assert list(df.columns) == ["mode", "sigma", "draw", "split", "loss", "accuracy"]
    assert len(df) == 2 * 3 * 2 * 2
    assert list(df["mode"].unique()) == ["relative", "absolute"]
    assert list(df["sigma"].unique()) == [0.0, 0.3, 0.03]
    theta = detached(parameters(mlp))
    for mode in ("relative", "absolute"):
        row = df[(df["mode"] == mode) & (df["sigma"] == 0.3) & (df["draw"] == 1)
                 & (df["split"] == "test")].iloc[0]
        loss, acc = at_point(mlp, noise_direction(theta, 0.3, mode, noise_seed(11, 1)), x, y)
        assert row["loss"] == pytest.approx(loss, rel=1e-5) and row["accuracy"] == acc
    # more noise hurts more on average
    mc = mean_curve(df, "test").set_index(["mode", "sigma"])["loss"]
    for mode in ("relative", "absolute"):
        assert mc[mode, 0.0] < mc[mode, 0.03] < mc[mode, 0.3]


def curve_frame(sigmas, accs_per_draw, mode="absolute", split="test") -> pd.DataFrame:
    rows = [{"mode": mode, "sigma": s, "draw": d, "split": split, "loss": 0.0, "accuracy": a}
            for s, accs in zip(sigmas, accs_per_draw, strict=True) for d, a in enumerate(accs)]
    return pd.DataFrame(rows)


def test_sigma_at_half_accuracy_by_hand():
    # mean accuracies 0.9, 0.8, 0.4, 0.1 at σ = 0, 0.1, 1, 10 (two draws each)
    df = curve_frame([0.0, 0.1, 1.0, 10.0], [(0.9, 0.9), (0.85, 0.75), (0.5, 0.3), (0.1, 0.1)])
    # threshold 0.1 + (0.9 − 0.1)/2 = 0.5, crossed between σ = 0.1 (0.8) and σ = 1 (0.4):
    # a quarter of the way from 0.8 to 0.4 is... (0.8 − 0.5)/(0.8 − 0.4) = 0.75 of a decade
    assert sigma_at_half_accuracy(df, "test", 0.1) == pytest.approx(0.1 * 10**0.75, rel=1e-12)
    # chance 0.5 → threshold 0.7, between 0.1 and 1: (0.8 − 0.7)/0.4 = 0.25 of a decade
    assert sigma_at_half_accuracy(df, "test", 0.5) == pytest.approx(0.1 * 10**0.25, rel=1e-12)
    # never crossed, crossed at the first σ > 0, clean accuracy at chance: NaN
    assert math.isnan(sigma_at_half_accuracy(curve_frame([0, 1], [(0.9,), (0.8,)])))
    assert math.isnan(sigma_at_half_accuracy(curve_frame([0, 1], [(0.9,), (0.2,)])))
    assert math.isnan(sigma_at_half_accuracy(curve_frame([0, 1], [(0.1,), (0.1,)])))
    with pytest.raises(ValueError, match="σ = 0"):
        sigma_at_half_accuracy(curve_frame([0.1, 1], [(0.9,), (0.2,)]))
    two = pd.concat([df, curve_frame([0.0, 1.0], [(0.9,), (0.1,)], mode="relative")])
    with pytest.raises(ValueError, match="pass mode="):
        sigma_at_half_accuracy(two)
    assert sigma_at_half_accuracy(two, mode="absolute") == pytest.approx(0.1 * 10**0.75)


# ---------------------------------------------------------------- sharpness

def test_epsilon_sharpness_is_zero_at_zero_and_grows_with_epsilon(mlp, data):
    x, y = data["train"]
    before = detached(parameters(mlp))
    values = []
    for eps in (0.0, 1e-3, 1e-2, 3e-2):
        r = epsilon_sharpness(mlp, x, y, eps, steps=6, return_delta=True)
        assert bitwise_equal(parameters(mlp), before)
        assert r["inside_box"] and r["max_violation"] <= 0.0
        assert r["value"] == pytest.approx(100 * (r["max_loss"] - r["base_loss"])
                                           / (1 + r["base_loss"]), rel=1e-12)
        # the reported maximum is the loss at the returned δ (checked on an independent copy)
        assert at_point(mlp, r["delta"], x, y)[0] == pytest.approx(r["max_loss"], rel=1e-6)
        values.append(r["value"])
    assert values[0] == 0.0
    assert values[1] > 0 and values[1] < values[2] < values[3]
    assert r["base_loss"] == evaluate(copy.deepcopy(mlp), x, y, 256)[0]


def test_ascent_beats_random_points_of_its_box(mlp, data):
    """A wrong sign (descent) or a wrong box would lose to random points of the same box."""
    x, y = data["train"]
    theta = detached(parameters(mlp))
    eps = 1e-2
    box = epsilon_box(theta, eps)
    r = epsilon_sharpness(mlp, x, y, eps, steps=6)
    g = torch.Generator().manual_seed(0)
    for _ in range(6):
        corner = [b * torch.sign(torch.rand(b.shape, generator=g) - 0.5) for b in box]
        assert r["max_loss"] > at_point(mlp, corner, x, y)[0]
    rho = 0.05
    worst = adaptive_sharpness(mlp, x, y, rho, steps=6)
    avg = adaptive_sharpness_average(mlp, x, y, rho, draws=4, distribution="uniform")
    assert worst["value"] > max(v - avg["base_loss"] for v in avg["losses"]) > 0


def test_projected_ascent_never_leaves_its_box(cnn, data):
    x, y = data["train"]
    x, y = x[:48], y[:48]
    theta = detached(parameters(cnn))
    g = torch.Generator().manual_seed(1)
    # uneven box sides, some zero; a random start and steps that overshoot the box
    half = [torch.rand(t.shape, generator=g) * 0.05 * (torch.rand(t.shape, generator=g) > 0.3)
            for t in theta]
    r = box_ascent(cnn, x, y, half, steps=5, step_size=1.5, random_start=True, seed=2,
                   return_delta=True)
    assert r["inside_box"] and r["max_violation"] <= 0.0
    for d, b in zip(r["delta"], half, strict=True):
        assert bool((d.abs() <= b).all())
        assert bool((d[b == 0] == 0).all())
    assert r["delta_fill"] == pytest.approx(1.0)  # overshooting steps end on the faces
    assert len(r["history"]) == 6 and r["grad_evals"] == 5
    assert r["max_loss"] == pytest.approx(max(r["history"]), rel=1e-5)
    assert bitwise_equal(parameters(cnn), theta)
    with pytest.raises(ValueError, match="≥ 0"):
        box_ascent(cnn, x, y, [-h for h in half], steps=1)


def test_evaluation_counts_are_the_passes_made(cnn, data):
    """The evaluation counts the cost model reads (flatness.ascent_evaluations and
    pacbayes_*evaluations) equal the passes made: inference-mode forward calls over the set, in
    batches; the ascent's gradient passes are the other calls."""
    x, y = data["train"]
    x, y = x[:48], y[:48]  # 3 batches of 16
    calls: list[bool] = []
    hook = cnn.register_forward_hook(
        lambda m, i, o: calls.append(torch.is_inference_mode_enabled()))
    try:
        seen = set()
        # a zero box from a random start (δ_0 = 0 there too) re-evaluates its best iterate
        for random_start, eps in ((False, 1e-2), (True, 1e-2), (False, 0.0), (True, 0.0)):
            calls.clear()
            r = box_ascent(cnn, x, y, epsilon_box(parameters(cnn), eps), steps=3,
                           random_start=random_start, seed=1, batch_size=16)
            assert sum(calls) == 3 * r["evaluations"]
            assert len(calls) - sum(calls) == 3 * r["grad_evals"]
            seen.add(r["evaluations"])
        assert seen == {2, 3}  # the best iterate was the last one, and an inner one
        calls.clear()
        with PointEvaluator(cnn, {"train": (x, y), "test": (x, y)}, 16) as ev:
            pb = pacbayes_flatness(ev, "train", draws=2, max_iter=4)
        assert len(calls) == sum(calls) == 3 * (1 + 2 * pb["evaluations"])  # train split only
    finally:
        hook.remove()


def test_sharpness_of_a_batchnorm_model_uses_and_keeps_its_statistics(data):
    torch.manual_seed(1)
    model = build_model("cnn_bn", width=4, hidden=8).eval()
    x, y = data["train"]
    x, y = x[:64], y[:64]
    with torch.no_grad():  # non-trivial running statistics
        model.train()
        model(x)
        model.eval()
    theta, bufs = detached(parameters(model)), detached(buffers(model))
    r = epsilon_sharpness(model, x, y, 1e-2, steps=3)
    a = adaptive_sharpness_average(model, x, y, 0.05, draws=2)
    assert r["base_loss"] == a["base_loss"] == evaluate(copy.deepcopy(model), x, y, 256)[0]
    assert r["value"] > 0 and r["inside_box"]
    assert bitwise_equal(parameters(model), theta) and bitwise_equal(buffers(model), bufs)
    assert not model.training


def test_loss_and_grad_matches_autograd_on_the_whole_set(mlp, data):
    x, y = data["train"]
    loss, grad = loss_and_grad(mlp, parameters(mlp), x, y, batch_size=50)
    ps = parameters(mlp)
    ref = torch.autograd.grad(F.cross_entropy(mlp(x), y), ps)
    assert loss == pytest.approx(evaluate(mlp, x, y, 64)[0], rel=1e-6)
    for a, b in zip(grad, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_adaptive_average_is_seeded_and_zero_at_zero(mlp, data):
    x, y = data["train"]
    assert adaptive_sharpness_average(mlp, x, y, 0.0, draws=2)["value"] == 0.0
    assert adaptive_sharpness(mlp, x, y, 0.0, steps=2)["value"] == 0.0
    a = adaptive_sharpness_average(mlp, x, y, 0.1, draws=3, seed=4)
    b = adaptive_sharpness_average(mlp, x, y, 0.1, draws=3, seed=4)
    c = adaptive_sharpness_average(mlp, x, y, 0.1, draws=3, seed=5)
    assert a["losses"] == b["losses"] and a["losses"] != c["losses"]
    assert a["se"] > 0 and math.isfinite(a["value"])
    with pytest.raises(ValueError, match="Supported distributions"):
        adaptive_sharpness_average(mlp, x, y, 0.1, distribution="laplace")


# ---------------------------------------------------------------- PAC-Bayes

def test_bisection_finds_sigma_of_a_known_curve():
    # acc(σ) = 0.1 + 0.8·exp(−(σ/s)²): the drop reaches d at σ* = s·√(−ln(1 − d/0.8))
    s, d = 0.3, 0.1
    star = s * math.sqrt(-math.log(1 - d / 0.8))
    calls = []

    def acc(sigma):
        calls.append(sigma)
        return 0.1 + 0.8 * math.exp(-((sigma / s) ** 2))

    r = bisect_sigma(acc, deviation=d, rtol=1e-4)
    assert r["bracketed"] and r["converged"] and r["acc0"] == 0.9
    assert r["lo"] <= star <= r["hi"] and r["hi"] - r["lo"] <= 1e-4 * r["hi"]
    assert r["sigma"] == pytest.approx(star, rel=1e-4)
    assert r["flatness"] == pytest.approx(1 / star**2, rel=2e-4)
    assert r["acc_lo"] >= r["target"] > r["acc_hi"]
    assert calls[:2] == [0.0, 2.0] and r["evaluations"] == len(calls)
    # a step: acceptable exactly below 0.37
    step = bisect_sigma(lambda sg: 0.9 if sg < 0.37 else 0.0, acc0=0.9, rtol=1e-6)
    assert step["lo"] < 0.37 <= step["hi"] and step["sigma"] == pytest.approx(0.37, rel=1e-6)
    # not bracketed: flat curve → σ = hi; early stop on the deviation tolerance
    flat = bisect_sigma(lambda sg: 0.9, hi=2.0)
    assert not flat["bracketed"] and flat["sigma"] == 2.0
    early = bisect_sigma(acc, deviation=d, deviation_tol=0.05)
    assert early["converged"] and abs(early["acc0"] - acc(early["sigma"]) - d) <= 0.05
    assert early["iterations"] < r["iterations"]


@pytest.mark.parametrize("magnitude_aware", [False, True])
def test_pacbayes_wrapper_uses_the_documented_noise(mlp, data, magnitude_aware):
    x, y = data["train"]
    theta = detached(parameters(mlp))
    with PointEvaluator(mlp, {"train": (x, y), "test": data["test"]}, 64) as ev:
        r = pacbayes_flatness(ev, "train", magnitude_aware, draws=3, seed=5, rtol=0.02)
        assert set(ev.data) == {"train", "test"}
    assert bitwise_equal(parameters(mlp), theta)
    assert r["bracketed"] and r["acc_lo"] >= r["target"] > r["acc_hi"]
    assert r["acc0"] == evaluate(copy.deepcopy(mlp), x, y, 64)[1]

    def acc_at(sigma):  # recomputed from the docstring's formula, on independent copies
        accs = []
        for k in range(3):
            z = gaussian_like(theta, pacbayes_seed(5, k))
            if magnitude_aware:
                u = [torch.sqrt(sigma**2 * t**2 + MAG_EPS**2) * zk
                     for t, zk in zip(theta, z, strict=True)]
            else:
                u = [sigma * zk for zk in z]
            accs.append(at_point(mlp, u, x, y)[1])
        return sum(accs) / 3

    assert acc_at(r["lo"]) == pytest.approx(r["acc_lo"], abs=1e-9)
    assert acc_at(r["hi"]) == pytest.approx(r["acc_hi"], abs=1e-9)


# ---------------------------------------------------------------- reparametrisation

def rel_change(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


@pytest.mark.parametrize("a", [4.0, 3.0])
def test_reparametrisation_moves_absolute_measures_only(mlp, data, a):
    """Dinh et al. (2017): same function, different weights. Relative and adaptive measures stay
    (a = 4 is exact in binary floating point; a = 3 only up to rounding), absolute ones move."""
    x, y = data["train"]
    other = dinh_rescale(mlp, a)
    assert torch.allclose(mlp(x), other(x), rtol=1e-5, atol=1e-5)  # the same function
    if a == 4.0:
        assert torch.equal(mlp(x), other(x))

    def measures(model):
        out = {}
        with PointEvaluator(model, {"train": (x, y)}, 64) as ev:
            curve = robustness_curve(ev, [0.0, 0.1, 0.3], draws=2, seed=0)
            for mode in ("relative", "absolute"):
                mc = mean_curve(curve[curve["mode"] == mode], "train")
                out[f"noise_{mode}"] = mc["loss"].to_numpy()
            for mag in (True, False):
                out[f"pacbayes_mag={mag}"] = pacbayes_flatness(
                    ev, "train", mag, draws=2, seed=0, rtol=0.02, mag_eps=0.0)["sigma"]
        out["adaptive"] = adaptive_sharpness(model, x, y, 0.05, steps=5)["value"]
        out["adaptive_avg"] = adaptive_sharpness_average(model, x, y, 0.1, draws=3)["value"]
        out["epsilon"] = epsilon_sharpness(model, x, y, 1e-2, steps=5)["value"]
        out["frobenius"] = norm(detached(parameters(model)))
        return out

    m0, m1 = measures(mlp), measures(other)
    # relative / adaptive: unchanged
    assert np.allclose(m0["noise_relative"], m1["noise_relative"], rtol=1e-4)
    assert m0["pacbayes_mag=True"] == pytest.approx(m1["pacbayes_mag=True"], rel=1e-9)
    assert m0["adaptive"] == pytest.approx(m1["adaptive"], rel=1e-3)
    assert m0["adaptive_avg"] == pytest.approx(m1["adaptive_avg"], rel=1e-3)
    # absolute: moved by far more than rounding
    noise_abs = max(rel_change(p, q) for p, q in zip(m0["noise_absolute"][1:],
                                                     m1["noise_absolute"][1:], strict=True))
    assert noise_abs > 0.1
    assert rel_change(m0["pacbayes_mag=False"], m1["pacbayes_mag=False"]) > 0.1
    assert rel_change(m0["epsilon"], m1["epsilon"]) > 0.1
    assert rel_change(m0["frobenius"], m1["frobenius"]) > 0.1

