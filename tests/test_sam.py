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
    assert isinstance(opt, SAM) and opt.rho == cfg.sam_rho and not opt.adaptive
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
