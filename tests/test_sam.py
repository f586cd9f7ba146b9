"""SAM and adaptive SAM against their closed forms on a quadratic, BatchNorm statistics updated on
the first pass only, and a SAM run through the training loop."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from landscape.sam import SAM
from landscape.train import TrainConfig, make_optimizer, train_step


def quadratic_step(adaptive: bool, rho: float, lr: float = 0.1):
    a = torch.tensor([3.0, 0.5, 1.0], dtype=torch.float64)
    w0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    w = nn.Parameter(w0.clone())
    opt = SAM([w], torch.optim.SGD([w], lr=lr, momentum=0.0), rho=rho, adaptive=adaptive)

    def loss():
        return 0.5 * (a * w * w).sum()

    opt.zero_grad()
    loss().backward()
    opt.first_step()
    opt.zero_grad()
    loss().backward()
    opt.second_step()
    return a, w0, w.detach()


@pytest.mark.parametrize("adaptive", [False, True])
def test_one_step_equals_the_closed_form(adaptive):
    rho, lr = 0.05, 0.1
    a, w0, w1 = quadratic_step(adaptive, rho, lr)
    g = a * w0
    if adaptive:  # ε = ρ T² g / ‖T g‖, T = diag(|w|)
        eps = rho * w0.abs() ** 2 * g / torch.linalg.vector_norm(w0.abs() * g)
    else:         # ε = ρ g / ‖g‖
        eps = rho * g / torch.linalg.vector_norm(g)
    expected = w0 - lr * a * (w0 + eps)  # the SGD step with the gradient at w + ε
    torch.testing.assert_close(w1, expected, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(w1, w0 - lr * g)  # not plain SGD


def test_batchnorm_statistics_move_on_the_first_pass_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    twin = copy.deepcopy(model)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    cfg = TrainConfig.from_config({"model": "mlp", "optimizer": "sam", "lr": 0.1,
                                   "batch_size": 16, "weight_decay": 0.0, "seed": 0})
    opt = make_optimizer(cfg, model.parameters())
    assert isinstance(opt, SAM) and opt.rho == cfg.rho == 0.05 and not opt.adaptive
    model.train()
    loss = train_step(model, opt, x, y, torch.arange(16))
    twin.train()
    with torch.no_grad():
        ref = nn.functional.cross_entropy(twin(x), y)  # one forward: the statistics' one update
    bn, bn_twin = model[1], twin[1]
    torch.testing.assert_close(bn.running_mean, bn_twin.running_mean)
    torch.testing.assert_close(bn.running_var, bn_twin.running_var)
    assert int(bn.num_batches_tracked) == 2  # counted twice, but momentum 0 on the second pass
    assert float(loss) == pytest.approx(float(ref))  # the reported loss: the first pass's
    assert bn.momentum == 0.1  # restored


def test_a_sam_run_trains(tmp_path):
    from landscape.data import load_prepared
    from landscape.train import train_run

    from .conftest import write_prepared

    data = write_prepared(tmp_path / "data.pt", 128, 64)
    train, test, fp = load_prepared(data)
    for optimizer in ("asam", "sgd"):
        cfg = TrainConfig.from_config(dict(model="mlp", optimizer=optimizer, lr=0.05,
                                           batch_size=32, weight_decay=0.0, seed=1, epochs=2))
        summary = train_run(cfg, train, test, tmp_path / optimizer, fingerprint=fp,
                            device="cpu", progress=False)
        assert summary["status"] == "ok" and summary["run"].split("_")[1] == optimizer


# ------------------------------------------------------------ ρ as a run hyper-parameter


def _study(**study):
    from landscape.config import validate

    base = {"model": ["cnn"], "optimizer": ["sgd", "sam"], "lr": [0.1], "batch_size": [32],
            "seed": [1, 2]}
    return validate({"study": {**base, **study}})


def test_each_radius_is_a_run_and_sgd_runs_once():
    from landscape.study import run_table

    runs = run_table(_study(sam_rho=[0.05, 0.2]))
    assert list(runs.index) == [
        "cnn_sgd_lr0.1_bs32_wd0_s1", "cnn_sgd_lr0.1_bs32_wd0_s2",
        "cnn_sam_rho0.05_lr0.1_bs32_wd0_s1", "cnn_sam_rho0.05_lr0.1_bs32_wd0_s2",
        "cnn_sam_rho0.2_lr0.1_bs32_wd0_s1", "cnn_sam_rho0.2_lr0.1_bs32_wd0_s2"]
    assert list(runs["rho"]) == [0.0, 0.0, 0.05, 0.05, 0.2, 0.2]
    one = run_table(_study(sam_rho=[0.05]))
    assert set(one.index) < set(runs.index)  # adding a radius adds only its runs


def test_a_runs_training_params_carry_its_radius():
    from landscape.study import run_table, train_params

    cfg = _study(sam_rho=[0.05, 0.2])
    runs = run_table(cfg)
    p = train_params(cfg, runs, "cnn_sam_rho0.2_lr0.1_bs32_wd0_s1")
    c = TrainConfig.from_config(p)
    assert c.rho == 0.2 and isinstance(make_optimizer(c, nn.Linear(2, 2).parameters()), SAM)
    assert train_params(cfg, runs, "cnn_sgd_lr0.1_bs32_wd0_s1")["rho"] == 0.0
    assert "sam_rho" not in p  # the radius is the run's, not a setting shared by all runs


def test_radius_must_fit_the_optimizer():
    base = dict(model="cnn", lr=0.1, batch_size=8, weight_decay=0.0, seed=1)
    with pytest.raises(ValueError, match="rho = 0.05 is not allowed for optimizer 'sgd'"):
        TrainConfig.from_config({**base, "optimizer": "sgd", "rho": 0.05})
    with pytest.raises(ValueError, match="rho = 0.0 is not allowed for optimizer 'sam'"):
        TrainConfig.from_config({**base, "optimizer": "sam", "rho": 0.0})


def test_the_old_train_key_says_where_the_radius_went():
    from landscape.config import validate
    from landscape.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        validate({"study": {"model": ["cnn"], "optimizer": ["sam"], "lr": [0.1],
                            "batch_size": [32], "seed": [1]}, "train": {"sam_rho": 0.1}})
    assert str(e.value) == ("config error: train.sam_rho = 0.1 has moved: write it as "
                            "study.sam_rho (a list: each radius is a run)")


def test_varying_the_optimizer_pairs_sgd_with_every_radius():
    """Connectivity pairs and Ψ's groups over the optimiser hold everything but (optimiser, ρ)
    fixed; over ρ, everything but ρ."""
    import numpy as np

    from landscape.connectivity.pairs import pair_table
    from landscape.generalisation import _Groups
    from landscape.study import run_table

    cfg = _study(sam_rho=[0.05, 0.2], seed=[1])
    cfg["connectivity"]["vary"] = ["optimizer"]
    runs = run_table(cfg)
    pairs = pair_table(cfg, runs)
    assert sorted(map(tuple, pairs[["run_a", "run_b"]].values)) == [
        ("cnn_sam_rho0.05_lr0.1_bs32_wd0_s1", "cnn_sam_rho0.2_lr0.1_bs32_wd0_s1"),
        ("cnn_sgd_lr0.1_bs32_wd0_s1", "cnn_sam_rho0.05_lr0.1_bs32_wd0_s1"),
        ("cnn_sgd_lr0.1_bs32_wd0_s1", "cnn_sam_rho0.2_lr0.1_bs32_wd0_s1")]
    g = _Groups(run_table(_study(sam_rho=[0.05, 0.2])).reset_index(), ["optimizer", "rho"],
                fixed=["seed"])
    assert g.group["optimizer"].shape[1] == 2  # one group per seed: all three optimisers
    np.testing.assert_array_equal(g.group["rho"].sum(axis=0), [1, 1, 2, 2])  # SAM: ρ pairs


def test_sam_findings_one_per_radius_and_the_radii_compared():
    import pandas as pd

    from landscape.report.findings import finding_sam

    rows = []
    lam = {0.0: 10.0, 0.05: 7.0, 0.2: 3.0}
    for seed in (1, 2):
        for opt, rho in (("sgd", 0.0), ("sam", 0.05), ("sam", 0.2)):
            rows.append({"run": f"{opt}{rho}_{seed}", "model": "cnn", "optimizer": opt,
                         "rho": rho, "lr": 0.1, "batch_size": 32, "weight_decay": 0.0,
                         "seed": seed, "lambda_max": lam[rho], "lambda_max_sd": 0.1,
                         "test_acc": 0.8 + rho, "gap_error": 0.05})
    f = {x.key: x for x in finding_sam(pd.DataFrame(rows))}
    assert set(f) == {"sam_rho0.05_vs_sgd", "sam_rho0.2_vs_sgd", "sam_radius"}
    assert f["sam_rho0.2_vs_sgd"].numbers["lambda_ratio_median"] == pytest.approx(0.3)
    assert "SAM (ρ = 0.05) against SGD" in f["sam_rho0.05_vs_sgd"].text
    r = f["sam_radius"].numbers
    assert (r["lower"], r["higher"], r["pairs"]) == (2, 0, 2)
    assert r["test_acc_diff_median"] == pytest.approx(0.15)


def test_figures_encode_the_radius_only_where_it_adds_to_the_optimizer():
    import pandas as pd

    from landscape.plots import run_label
    from landscape.plots.encoding import Encoding
    from landscape.study import run_table

    one = run_table(_study(sam_rho=[0.05], lr=[0.02, 0.1])).reset_index()
    two = run_table(_study(sam_rho=[0.05, 0.2])).reset_index()
    assert (Encoding(one).colour_by, Encoding(one).style_by) == ("lr", "optimizer")
    enc = Encoding(two)  # the optimiser and its radius are one channel
    assert (enc.colour_by, enc.style_by) == ("optimizer", "seed")
    assert list(enc.colours) == ["sam ρ=0.05", "sam ρ=0.2", "sgd"]
    assert enc.colour(dict(two.iloc[-1])) == enc.colour(two["run"].iloc[-1]) != \
        enc.colour(two["run"].iloc[2])
    assert run_label(pd.Series(two.iloc[-1])) == "sam ρ=0.2 η=0.1 B=32"
    assert run_label(pd.Series(two.iloc[0])) == "sgd η=0.1 B=32"
