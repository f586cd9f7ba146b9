"""Gauss–Newton and empirical Fisher products against dense matrices built explicitly on tiny
networks (G = (1/N) Σ J_iᵀ H_ℓ,i J_i and F = (1/N) Σ g_i g_iᵀ from the full Jacobian)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from landscape.hessian.gauss_newton import GaussNewtonOperator
from landscape.hessian.lanczos import lanczos_eigs
from landscape.hessian.operator import HessianOperator


def tiny(seed: int = 0, hidden: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)] if hidden else [nn.Linear(4, 3)]
    return nn.Sequential(*layers).double().eval()


def data(n: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 4, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (n,), generator=g))


def dense(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """(H, G, F) as dense float64 matrices over the flat parameters."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def unflat(t):
        out, k = {}, 0
        for n, s in zip(names, shapes, strict=True):
            m = int(np.prod(s))
            out[n] = t[k:k + m].view(s)
            k += m
        return out

    def logits(t):
        return functional_call(model, unflat(t), (x,))

    def mean_loss(t):
        return F.cross_entropy(logits(t), y)

    h = torch.autograd.functional.hessian(mean_loss, flat)
    jac = torch.autograd.functional.jacobian(logits, flat)  # [N, C, P]
    p = torch.softmax(logits(flat), -1)
    n = x.shape[0]
    g = sum(jac[i].T @ (torch.diag(p[i]) - torch.outer(p[i], p[i])) @ jac[i] for i in range(n)) / n
    r = p - F.one_hot(y, 3).double()
    grads = torch.stack([jac[i].T @ r[i] for i in range(n)])  # per-sample gradients [N, P]
    fisher = grads.T @ grads / n
    return h, g, fisher


@pytest.mark.parametrize("cache_mb", [1024.0, 0.0])  # cached maps / recomputed each product
@pytest.mark.parametrize("batch_size", [None, 3])
def test_products_equal_dense_matrices(batch_size, cache_mb):
    model = tiny()
    x, y = data()
    _, g, fisher = dense(model, x, y)
    gen = torch.Generator().manual_seed(5)
    for kind, mat in (("ggn", g), ("ef", fisher)):
        op = GaussNewtonOperator(model, x, y, kind, batch_size=batch_size, max_cache_mb=cache_mb)
        assert op.cached == (cache_mb > 0) and op.graph_mb_estimate > 0
        assert op.dim == mat.shape[0]
        for _ in range(3):
            v = torch.randn(op.dim, generator=gen, dtype=torch.float64)
            torch.testing.assert_close(op.matvec(v), mat @ v, rtol=1e-10, atol=1e-12)
        assert op.n_hvp == 3


def test_ggn_and_fisher_are_psd_and_the_hessian_is_ggn_plus_residual():
    model = tiny()
    x, y = data()
    h, g, fisher = dense(model, x, y)
    assert torch.linalg.eigvalsh(g).min() > -1e-12
    assert torch.linalg.eigvalsh(fisher).min() > -1e-12
    assert not torch.allclose(h, g, atol=1e-6)  # a hidden nonlinearity: R ≠ 0
    # a linear model (logits linear in θ): ∇²f = 0, so H = G exactly
    lin = tiny(hidden=False)
    h_lin, g_lin, _ = dense(lin, x, y)
    torch.testing.assert_close(h_lin, g_lin, rtol=1e-10, atol=1e-12)
    op_g = GaussNewtonOperator(lin, x, y, "ggn")
    op_h = HessianOperator(lin, x, y)
    v = torch.randn(op_g.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(op_g.matvec(v), op_h.matvec(v), rtol=1e-10, atol=1e-12)


def test_lanczos_on_the_operators_finds_the_dense_top_eigenvalue():
    model = tiny(seed=3)
    x, y = data(n=9)
    _, g, fisher = dense(model, x, y)
    for kind, mat in (("ggn", g), ("ef", fisher)):
        op = GaussNewtonOperator(model, x, y, kind)
        res = lanczos_eigs(op.matvec, op.dim, k=1, smallest=False, tol=1e-8, max_iter=op.dim)
        top = float(torch.linalg.eigvalsh(mat)[-1])
        assert res.largest[0] == pytest.approx(top, rel=1e-7)


def test_bad_arguments_are_errors():
    model = tiny()
    x, y = data()
    with pytest.raises(ValueError, match="Unknown curvature matrix 'fisher'"):
        GaussNewtonOperator(model, x, y, "fisher")
    op = GaussNewtonOperator(model, x, y)
    with pytest.raises(ValueError, match="expected"):
        op.matvec(torch.zeros(3, dtype=torch.float64))
    model.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        op.matvec(torch.zeros(op.dim, dtype=torch.float64))


def test_layer_blocks_against_dense_blocks():
    """Per-layer λ_max of the diagonal blocks (Lanczos in the block, enough steps to be exact)
    equals the dense block's top eigenvalue; in a ReLU network each layer's block of H equals G's
    (the logits are piecewise linear in one layer's weights) while H ≠ G; the blocks' traces from
    the shared probes add up to the whole matrix's estimate."""
    from landscape.stages.curvature_matrices import compare, layer_blocks

    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).double().eval()
    x, y = data(n=9)
    h, g, _ = dense(model, x, y)
    assert not torch.allclose(h, g, atol=1e-6)
    params = {"batch_size": None, "hvp_method": "auto", "max_cache_mb": 64, "seed": 0,
              "eigs": {"tol": 1e-6}, "density": {"sigma_scale": 1.0, "grid_size": 64},
              "matrices": {"names": ["hessian", "ggn"], "lanczos_steps": 43, "hutchinson": 6,
                           "layer_matrices": ["hessian", "ggn"], "layer_steps": 40}}
    rows, _, layers = compare(model, x, y, params)
    blocks = layer_blocks(HessianOperator(model, x, y))
    assert [b[0] for b in blocks] == ["0", "2"] and blocks[-1][2] == h.shape[0]
    for r in layers:
        _, a, b = blocks[r["position"]]
        mat = (h if r["matrix"] == "hessian" else g)[a:b, a:b]
        assert r["lambda_max"] == pytest.approx(float(torch.linalg.eigvalsh(mat)[-1]), rel=1e-8)
        torch.testing.assert_close(h[a:b, a:b], g[a:b, a:b], rtol=1e-9, atol=1e-12)
    for row in rows:
        parts = sum(r["trace"] for r in layers if r["matrix"] == row["matrix"])
        assert parts == pytest.approx(row["trace"], rel=1e-10)
        top = float(torch.linalg.eigvalsh(h if row["matrix"] == "hessian" else g)[-1])
        assert row["lambda_max"] == pytest.approx(top, rel=1e-8)
