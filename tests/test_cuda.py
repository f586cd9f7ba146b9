"""CUDA paths: every stage's maths runs on a GPU and agrees with the CPU (skipped without one)."""

from __future__ import annotations

import pytest
import torch

from landscape.evaluate import evaluate, resolve_device
from landscape.evaluator import PointEvaluator
from landscape.hessian import HessianOperator, lanczos_eigs
from landscape.params import parameters

from .conftest import make_split

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def test_auto_device_is_cuda():
    assert resolve_device("auto").type == "cuda"


def test_training_evaluation_hessian_and_points_on_cuda(tmp_path):
    from landscape.train import TrainConfig, train_run

    tr, te = make_split(256, 1), make_split(128, 2)
    cfg = TrainConfig.from_config(dict(model="cnn_bn", optimizer="sgd", lr=0.05, batch_size=32,
                                       weight_decay=0.0, seed=1, epochs=1,
                                       model_options={"width": 4, "hidden": 8}))
    s = train_run(cfg, tr, te, tmp_path / "gpu", device="cuda", progress=False)
    assert s["status"] == "ok"
    from landscape.checkpoints import load_model

    gpu, meta = load_model(tmp_path / "gpu" / "checkpoint.pt", "cuda")
    cpu, _ = load_model(tmp_path / "gpu" / "checkpoint.pt", "cpu")
    assert meta["device"].startswith("cuda")
    x, y = te.tensors("cuda")
    xc, yc = te.tensors("cpu")
    lg, _ = evaluate(gpu, x, y)
    lc, _ = evaluate(cpu, xc, yc)
    assert lg == pytest.approx(lc, rel=1e-4)
    op_g, op_c = HessianOperator(gpu, x, y), HessianOperator(cpu, xc, yc)
    eg = lanczos_eigs(op_g.matvec, op_g.dim, k=1, tol=1e-4, max_iter=60, device="cuda")
    ec = lanczos_eigs(op_c.matvec, op_c.dim, k=1, tol=1e-4, max_iter=60)
    assert eg.largest[0] == pytest.approx(ec.largest[0], rel=1e-3)
    d = [torch.randn_like(p) * 0.01 for p in parameters(gpu)]
    with PointEvaluator(gpu, {"test": (x, y)}, 64) as ev:
        loss0 = ev.at()["test"][0]
        ev.at(terms=[(d, 1.0)])
    assert loss0 == pytest.approx(lg, rel=1e-6)
