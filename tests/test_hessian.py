"""Curvature maths against exact references on tiny problems (landscape/hessian/)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from landscape.hessian import (
    HessianOperator,
    hutchinson,
    hutchpp,
    lanczos_eigs,
    power_iteration,
    spectral_density,
    stability_threshold,
    two_over_lr,
)
from landscape.hessian.density import smooth_density
from landscape.hessian.trace import estimate_trace


class Tiny(nn.Module):
    """Conv(1→2, 3×3) + BatchNorm + tanh + Linear(32→5): 189 parameters, smooth, with buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.bn(self.conv(x))).flatten(1))


def tiny_problem(dtype=torch.float64, n: int = 40, seed: int = 0):
    torch.manual_seed(seed)
    model = Tiny()
    with torch.no_grad():  # non-trivial running statistics, used in eval mode
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 2.0)
        for p in model.parameters():
            p.mul_(2.0)
    model = model.to(dtype).eval()
    x = torch.randn(n, 1, 6, 6, dtype=dtype)
    y = torch.randint(0, 5, (n,))
    return model, x, y


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact Hessian of the mean cross-entropy (eval mode) by torch.autograd.functional.hessian."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    buffers = dict(model.named_buffers())
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(flat):
        ps = {n: t.view(s) for n, t, s in zip(names, torch.split(flat, sizes), shapes, strict=True)}
        return F.cross_entropy(functional_call(model, (ps, buffers), (x,)), y)

    return torch.autograd.functional.hessian(loss, theta, vectorize=True).to(torch.float64)


@pytest.fixture(scope="module")
def problem():
    model, x, y = tiny_problem()
    h = dense_hessian(model, x, y)
    return model, x, y, h, np.linalg.eigvalsh(h.numpy())


def test_tiny_model_size(problem):
    model, _, _, h, _ = problem
    n = sum(p.numel() for p in model.parameters())
    assert 100 <= n <= 500 and h.shape == (n, n)


@pytest.mark.parametrize("method", ["cached", "rev-rev", "fwd-rev"])
def test_hvp_equals_dense_hessian(problem, method):
    model, x, y, h, _ = problem
    op = HessianOperator(model, x, y, batch_size=16, method=method)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = torch.randn(op.dim, generator=g, dtype=torch.float64)
        torch.testing.assert_close(op.matvec(v), h @ v, rtol=1e-5, atol=1e-8)
    assert op.n_hvp == 3 and op.method == method


def test_hvp_float32_model_matches_float64_reference(problem):
    model64, x64, y, h, _ = problem
    model = Tiny().eval()
    model.load_state_dict({k: v.float() for k, v in model64.state_dict().items()})
    op = HessianOperator(model, x64.float(), y, batch_size=16)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    hv = op.matvec(v)
    assert hv.dtype == torch.float64
    assert float((hv - h @ v).norm() / (h @ v).norm()) < 1e-5


@pytest.mark.parametrize("method", ["cached", "rev-rev", "fwd-rev"])
def test_hvp_independent_of_batch_size(problem, method):
    model, x, y, _, _ = problem
    v = torch.randn(sum(p.numel() for p in model.parameters()),
                    generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref = HessianOperator(model, x, y, batch_size=None, method=method).matvec(v)
    for bs in (1, 7, 16, 39, 1000):
        out = HessianOperator(model, x, y, batch_size=bs, method=method).matvec(v)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_hvp_independent_of_batch_size_float32():
    model, x, y = tiny_problem(torch.float32)
    v = torch.randn(sum(p.numel() for p in model.parameters()),
                    generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref = HessianOperator(model, x, y, batch_size=None).matvec(v)
    for bs in (3, 8, 25):
        out = HessianOperator(model, x, y, batch_size=bs).matvec(v)
        assert float((out - ref).norm() / ref.norm()) < 1e-5


def test_cached_graph_is_built_once_and_reused(problem):
    model, x, y, _, _ = problem
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        cached = HessianOperator(model, x, y, batch_size=10, method="cached")
        calls.clear()  # the memory estimate's probe forward
        v = torch.ones(cached.dim, dtype=torch.float64)
        for _ in range(5):
            out = cached.matvec(v)
            assert not out.requires_grad
        assert len(calls) == 4  # one forward per mini-batch, for all five products
        recompute = HessianOperator(model, x, y, batch_size=10, method="rev-rev")
        calls.clear()
        for _ in range(5):
            recompute.matvec(v)
        assert len(calls) == 20
    finally:
        hook.remove()


def test_auto_method_respects_memory_cap(problem):
    model, x, y, _, _ = problem
    assert HessianOperator(model, x, y).method == "cached"
    op = HessianOperator(model, x, y, max_cache_mb=0.0)
    assert op.method == "rev-rev" and op.graph_mb_estimate > 0


def test_graph_estimate_counts_each_saved_tensor_once():
    """A tensor saved by several graph nodes is one allocation (the cache estimate decides
    between cached and recomputed products); views of a larger tensor count their own size."""
    from landscape.hessian.operator import saved_mb

    x = torch.randn(1000, requires_grad=True)
    w = torch.randn(1000, requires_grad=True)
    # two products, each saving x and w: four references to two tensors of 4,000 bytes
    assert saved_mb(lambda: (x * w).sum() + (x * w).sum(), 1, 1) == 8000 / 2**20
    big = torch.randn(100, 10)
    v = torch.randn(10, requires_grad=True)
    # a 2-row slice of a 100-row tensor saved for the gradient: its own 80 bytes, × n / samples
    assert saved_mb(lambda: (big[:2] * v).sum(), 2, 100) == 80 / 2 * 100 / 2**20


def test_operator_errors(problem):
    model, x, y, _, _ = problem
    with pytest.raises(ValueError, match=r"Unknown HVP method 'exact'. Supported methods are"):
        HessianOperator(model, x, y, method="exact")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        HessianOperator(model, x, y, batch_size=0)
    op = HessianOperator(model, x, y)
    with pytest.raises(ValueError, match=r"expected \(189,\)"):
        op.matvec(torch.zeros(5))


def test_gradient_and_loss(problem):
    model, x, y, _, _ = problem
    op = HessianOperator(model, x, y, batch_size=7)
    loss, g = op.loss_and_gradient()
    model.zero_grad()
    ref = F.cross_entropy(model(x), y)
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    assert op.loss() == pytest.approx(ref.item(), rel=1e-12)
    torch.testing.assert_close(g, torch.cat([p.grad.reshape(-1) for p in model.parameters()]))


def test_linear_operator_with_scipy_eigsh(problem):
    from scipy.sparse.linalg import eigsh

    model, x, y, _, exact = problem
    lin = HessianOperator(model, x, y).to_linear_operator()
    vals = np.sort(eigsh(lin, k=2, which="LA", tol=1e-10)[0])
    np.testing.assert_allclose(vals, exact[-2:], rtol=1e-6)


def test_lanczos_matches_eigvalsh(problem):
    model, x, y, _, exact = problem
    op = HessianOperator(model, x, y)
    res = lanczos_eigs(op.matvec, op.dim, k=3, tol=1e-8, max_iter=op.dim,
                       generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(res.largest, exact[::-1][:3], rtol=1e-4)
    assert res.smallest == pytest.approx(exact[0], rel=1e-4)
    assert exact[0] < 0, "the tiny problem should have a negative eigenvalue"
    assert res.largest_converged.all() and res.smallest_converged
    assert res.n_hvp < op.dim, "should converge well before dim products"


def test_lanczos_residual_estimates_are_true_residuals(problem):
    model, x, y, h, _ = problem
    op = HessianOperator(model, x, y)
    res = lanczos_eigs(op.matvec, op.dim, k=3, tol=1e-12, max_iter=12,
                       generator=torch.Generator().manual_seed(5))
    assert res.n_hvp == 12 and not res.smallest_converged  # stopped early on purpose
    for val, r, u in zip(res.largest, res.largest_residuals, res.vectors, strict=True):
        assert float(u.norm()) == pytest.approx(1.0, abs=1e-10)
        true = float((h @ u - val * u).norm())
        assert r == pytest.approx(true, rel=1e-6, abs=1e-12)
        assert r > 1e-6
    u = res.smallest_vector
    assert res.smallest_residual == pytest.approx(float((h @ u - res.smallest * u).norm()),
                                                  rel=1e-6)


def spd_with_negative_outlier(dim=60, seed=0) -> tuple[torch.Tensor, np.ndarray]:
    """A symmetric matrix whose largest-|λ| eigenvalue is negative (a saddle)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    lam = torch.linspace(-0.5, 3.0, dim, dtype=torch.float64)
    lam[0] = -8.0
    a = q @ torch.diag(lam) @ q.T
    return (a + a.T) / 2, np.sort(lam.numpy())


def test_power_iteration_finds_largest_magnitude_not_lambda_max():
    a, lam = spd_with_negative_outlier()
    pw = power_iteration(lambda v: a @ v, a.shape[0], k=1, tol=1e-10, max_iter=500)
    assert pw.values[0] == pytest.approx(-8.0, rel=1e-6)  # largest |λ|, negative
    lz = lanczos_eigs(lambda v: a @ v, a.shape[0], k=1, tol=1e-10, max_iter=60)
    assert lz.largest[0] == pytest.approx(lam[-1], rel=1e-8)  # λ_max
    assert lz.smallest == pytest.approx(-8.0, rel=1e-8)


def test_power_iteration_top_k_with_deflation(problem):
    model, x, y, _, exact = problem
    op = HessianOperator(model, x, y)
    pw = power_iteration(op.matvec, op.dim, k=2, tol=1e-9, max_iter=2000)
    by_mag = exact[np.argsort(-np.abs(exact))][:2]
    np.testing.assert_allclose(pw.values, by_mag, rtol=1e-3)
    assert pw.n_hvp == pw.n_hvp_each.sum() == op.n_hvp
    assert (pw.residuals >= 0).all()


def test_hutchinson_within_three_standard_errors(problem):
    model, x, y, h, _ = problem
    op = HessianOperator(model, x, y)
    exact = float(torch.trace(h))
    est = hutchinson(op.matvec, op.dim, 200, torch.Generator().manual_seed(0))
    assert est.n_hvp == 200 == op.n_hvp
    assert abs(est.trace - exact) < 3 * est.std_error
    assert est.std_error < 0.2 * abs(exact)


def test_hutchpp_within_three_standard_errors(problem):
    model, x, y, h, _ = problem
    op = HessianOperator(model, x, y)
    exact = float(torch.trace(h))
    est = hutchpp(op.matvec, op.dim, 60, torch.Generator().manual_seed(0))
    assert est.n_hvp == 60 == op.n_hvp
    assert abs(est.trace - exact) < 3 * est.std_error


def test_hutchpp_exact_on_low_rank_matrix():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(80, 4, generator=g, dtype=torch.float64)
    a = u @ torch.diag(torch.tensor([5.0, 2.0, 1.0, 0.5], dtype=torch.float64)) @ u.T
    est = hutchpp(lambda v: a @ v, 80, 15, g)
    assert est.trace == pytest.approx(float(torch.trace(a)), rel=1e-10)
    assert est.std_error < 1e-8
    loose = hutchinson(lambda v: a @ v, 80, 15, torch.Generator().manual_seed(0))
    assert loose.std_error > 1.0  # plain Hutchinson is far from exact here


def test_trace_dispatch_errors():
    with pytest.raises(ValueError, match=r"Unknown trace estimator 'gauss'. Supported estimators "
                                         r"are \['hutchinson', 'hutchpp'\]"):
        estimate_trace("gauss", lambda v: v, 3, 10, torch.Generator())
    with pytest.raises(ValueError, match="n_matvecs >= 6"):
        hutchpp(lambda v: v, 10, 5, torch.Generator())


def test_density_integrates_to_one_and_sits_on_the_spectrum(problem):
    model, x, y, _, exact = problem
    op = HessianOperator(model, x, y)
    d = spectral_density(op.matvec, op.dim, n_starts=20, n_steps=40, sigma_scale=0.78,
                         grid_size=800, generator=torch.Generator().manual_seed(0))
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=1e-9)
    assert (d.density >= 0).all() and d.n_hvp == 20 * 40
    assert d.grid[0] <= exact[0] and d.grid[-1] >= exact[-1]
    # against the exact eigenvalues smoothed with the same Gaussian on the same grid
    ref = smooth_density(exact[None, :], np.full((1, len(exact)), 1.0 / len(exact)), d.sigma,
                         d.grid)
    assert np.trapezoid(np.abs(d.density - ref), d.grid) < 0.25
    # the first moment is the mean eigenvalue tr(H)/dim
    mean = np.trapezoid(d.grid * d.density, d.grid)
    assert mean == pytest.approx(exact.mean(), abs=0.1 * np.abs(exact).max())
    # and the mass sits where the eigenvalues are: CDFs agree to a few percent
    cdf = np.cumsum(d.density) * (d.grid[1] - d.grid[0])
    for q in (0.1, 0.5, 0.9):
        lam_q = np.quantile(exact, q)
        assert np.interp(lam_q, d.grid, cdf) == pytest.approx(q, abs=0.12)


def test_density_with_full_krylov_space_has_exact_nodes():
    a, lam = spd_with_negative_outlier(dim=30)
    d = spectral_density(lambda v: a @ v, 30, n_starts=2, n_steps=30, sigma_scale=0.29,
                         generator=torch.Generator().manual_seed(1))
    for row_nodes, row_weights in zip(d.nodes, d.weights, strict=True):
        keep = row_weights > 1e-14
        assert np.abs(row_nodes[keep][:, None] - lam[None, :]).min(1).max() < 1e-8
        assert row_weights.sum() == pytest.approx(1.0, abs=1e-10)


def test_density_reuses_a_previous_lanczos_run():
    a, _ = spd_with_negative_outlier(dim=50)
    eig = lanczos_eigs(lambda v: a @ v, 50, k=1, tol=1e-6, max_iter=25)
    d = spectral_density(lambda v: a @ v, 50, n_starts=3, n_steps=10, first=(eig.ritz_values,
                         eig.ritz_weights), generator=torch.Generator().manual_seed(0))
    assert d.n_hvp == 2 * 10 and d.nodes.shape[0] == 3
    np.testing.assert_allclose(d.nodes[0, :len(eig.ritz_values)], eig.ritz_values)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=1e-9)


def test_stability_thresholds():
    assert two_over_lr(0.1) == pytest.approx(20.0)
    assert stability_threshold("sgd", 0.1, 0.9) == pytest.approx(38.0)
    assert stability_threshold("sgd", 0.02, 0.0) == pytest.approx(100.0)
    assert math.isnan(stability_threshold("adam", 1e-3, 0.9))
    with pytest.raises(ValueError, match="Unknown optimizer 'rmsprop'"):
        stability_threshold("rmsprop", 0.1)


def test_lanczos_argument_errors():
    with pytest.raises(ValueError, match="k must be >= 1"):
        lanczos_eigs(lambda v: v, 5, k=0)
    with pytest.raises(ValueError, match="tol must be > 0"):
        lanczos_eigs(lambda v: v, 5, tol=0.0)


def test_guards_train_mode_and_non_finite(problem):
    """The operator refuses a model switched back to train mode, and non-finite products."""
    model, x, y, _, _ = problem
    op = HessianOperator(model, x, y, batch_size=16)
    v = torch.ones(op.dim, dtype=torch.float64)
    model.train()
    try:
        with pytest.raises(RuntimeError, match="train mode"):
            op.matvec(v)
    finally:
        model.eval()
    bad = HessianOperator(model, torch.full_like(x, float("nan")), y, batch_size=16)
    with pytest.raises(FloatingPointError, match="non-finite Hessian-vector product"):
        bad.matvec(v)


def test_sharpness_records_nan_when_the_product_overflows(problem, monkeypatch):
    """Finite loss but an overflowing Hessian-vector product (raised by the operator's own
    check): the snapshot gets λ_max = NaN, not converged, and the trajectory goes on."""
    from landscape.hessian.trajectory import sharpness_trajectory

    model, x, y, _, _ = problem
    state = {k: v.clone() for k, v in model.state_dict().items()}
    real = HessianOperator._matvec
    calls = {"n": 0}

    def overflow_on_first_snapshot(self, v):
        calls["n"] += 1
        out = real(self, v)
        return out * math.inf if self.marker == 0 else out

    monkeypatch.setattr(HessianOperator, "_matvec", overflow_on_first_snapshot)
    markers = iter([0, 1])
    init = HessianOperator.__init__

    def tagged_init(self, *a, **kw):
        init(self, *a, **kw)
        self.marker = next(markers)

    monkeypatch.setattr(HessianOperator, "__init__", tagged_init)
    df = sharpness_trajectory(model, [state, state], x, y, tol=1e-3, max_iter=30, batch_size=16)
    assert math.isfinite(df["eval_loss"].iloc[0])
    assert math.isnan(df["lambda_max"].iloc[0]) and not df["converged"].iloc[0]
    assert math.isfinite(df["lambda_max"].iloc[1]) and df["converged"].iloc[1]


def test_density_width_follows_the_node_count_no_comb():
    """A smooth spectrum (eigenvalues spread evenly over [0, 10]) seen through 12 nodes per
    start: σ from the node count gives one smooth hump, not a comb of 12 separate bumps."""
    lam = torch.linspace(0.0, 10.0, 400, dtype=torch.float64)
    d = spectral_density(lambda v: lam * v, 400, n_starts=3, n_steps=12,
                         generator=torch.Generator().manual_seed(0))
    span = d.nodes[d.weights > 0].max() - d.nodes[d.weights > 0].min()
    assert d.sigma == pytest.approx(span / 11)
    inside = (d.grid > 1.5) & (d.grid < 8.5)  # away from the spectrum's edges
    dip = d.density[inside].min() / d.density.max()
    assert dip > 0.7, f"density falls to {dip:.2f} of its peak between nodes: a comb"
    narrow = spectral_density(lambda v: lam * v, 400, n_starts=3, n_steps=12, sigma_scale=0.1,
                              generator=torch.Generator().manual_seed(0))
    assert narrow.density[inside].min() / narrow.density.max() < 0.3  # the test can fail


def test_trace_interval_uses_student_t():
    from scipy.stats import t

    a = torch.diag(torch.linspace(1.0, 2.0, 40, dtype=torch.float64))
    est = hutchpp(lambda v: a @ v, 40, 12, torch.Generator().manual_seed(0))
    assert len(est.samples) == 4
    lo, hi = est.interval(0.95)
    assert (hi - lo) / 2 == pytest.approx(t.ppf(0.975, 3) * est.std_error)
    assert (hi - lo) / 2 > 1.5 * 1.96 * est.std_error  # the normal quantile would be too narrow


def test_lambda_min_flag_is_relative_to_itself():
    """λ_max = 100, λ_min = −0.01: a λ_min residual ≤ tol·‖H‖ can exceed |λ_min| itself; the
    flag must then say not converged."""
    dim = 60
    g = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    lam = torch.cat([torch.tensor([-0.01, 100.0], dtype=torch.float64),
                     torch.linspace(0.0, 1.0, dim - 2, dtype=torch.float64)])
    a = q @ torch.diag(lam) @ q.T
    res = lanczos_eigs(lambda v: a @ v, dim, k=1, smallest=True, tol=1e-3, max_iter=12,
                       generator=torch.Generator().manual_seed(0))
    assert res.smallest_residual > 1e-3 * abs(res.smallest)
    assert not res.smallest_converged
    assert res.largest_converged[0]


def test_warm_started_sharpness_agrees_with_cold_and_needs_fewer_products(problem):
    """Along a slowly moving sequence of weights, starting each snapshot's Lanczos run from the
    previous top Ritz vector gives λ_max within the residual bound of the exact value (as the
    cold start does) with fewer products in all; the first snapshot is always a cold start."""
    from landscape.hessian.trajectory import sharpness_trajectory

    model, x, y, _, _ = problem
    base = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(5)
    names = {n for n, _ in model.named_parameters()}
    drift = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in base.items()
             if k in names}
    states = [{k: v + 0.01 * i * drift[k] if k in drift else v for k, v in base.items()}
              for i in range(8)]
    runs = {warm: sharpness_trajectory(model, states, x, y, tol=1e-3, max_iter=60,
                                       batch_size=16, warm_start=warm)
            for warm in (False, True)}
    model.load_state_dict(base)
    exact = []
    for state in states:
        model.load_state_dict(state)
        exact.append(float(np.linalg.eigvalsh(dense_hessian(model, x, y).numpy())[-1]))
    model.load_state_dict(base)
    for warm, df in runs.items():
        assert df["converged"].all()
        assert (np.abs(df["lambda_max"] - exact) <= df["residual"] + 1e-12).all(), warm
        assert list(df["warm_start"]) == ([False] + [True] * 7 if warm else [False] * 8)
    cold, warm = runs[False]["n_hvp"].sum(), runs[True]["n_hvp"].sum()
    assert warm < 0.8 * cold, (warm, cold)
    # the cold starts are the seeded draws whether or not other snapshots were warm
    assert runs[True]["lambda_max"].iloc[0] == runs[False]["lambda_max"].iloc[0]


def test_repeat_subsets_start_from_the_main_set_s_eigenvector(problem):
    """curvature_summary started from the top eigenvector of a nearby Hessian (another subset)
    meets the same tolerance with fewer products than from the seeded Gaussian vector."""
    from landscape.hessian.analysis import CurvatureOptions, curvature_summary

    model, x, y, h, _ = problem
    opts = CurvatureOptions.from_params({"batch_size": 16, "trace": {"hutchinson": 0},
                                         "eigs": {"tol": 1e-6, "max_iter": 80}})
    top = torch.linalg.eigh(dense_hessian(model, x[:30], y[:30]))[1][:, -1]
    cold = curvature_summary(model, x[10:], y[10:], opts, progress=False)
    warm = curvature_summary(model, x[10:], y[10:], opts, progress=False, start=top)
    exact = float(np.linalg.eigvalsh(dense_hessian(model, x[10:], y[10:]).numpy())[-1])
    for r in (cold, warm):
        assert r["converged"] and abs(r["lambda_max"] - exact) <= r["residual"] + 1e-12
    assert warm["warm_start"] and not cold["warm_start"]
    assert warm["n_hvp"] < cold["n_hvp"], (warm["n_hvp"], cold["n_hvp"])
