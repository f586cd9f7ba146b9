"""Directions (landscape.directions) and parameter-set helpers (landscape.params)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

import landscape.directions as directions_module
from landscape.directions import (
    NORMALIZATIONS,
    cosine,
    derived_seed,
    gaussian_like,
    normalize,
    pca_directions,
    project,
    random_direction,
)
from landscape.models import build_model
from landscape.params import (
    bitwise_equal,
    buffers,
    detached,
    dot,
    filter_norms,
    flatten,
    norm,
    parameters,
    unflatten,
    write_,
)


@pytest.fixture(params=["cnn_bn", "mlp", "simple_cnn"])
def weights(request) -> list[torch.Tensor]:
    torch.manual_seed(0)
    opts = {"cnn_bn": {"width": 4, "hidden": 8}, "mlp": {"hidden": [16, 8]}, "simple_cnn": {}}
    model = build_model(request.param, **opts[request.param])
    with torch.no_grad():  # non-trivial BN weights and biases
        for p in parameters(model):
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    return detached(parameters(model))


def test_docstring_example():
    result = doctest.testmod(directions_module)
    assert result.attempted >= 4 and result.failed == 0


def test_filter_normalisation_matches_each_filter_and_zeroes_bias_bn(weights):
    d = random_direction(weights, seed=3)
    assert len(d) == len(weights)
    for di, wi in zip(d, weights, strict=True):
        assert di.shape == wi.shape
        if wi.dim() <= 1:
            assert torch.count_nonzero(di) == 0  # biases and BN weight/bias zeroed
        else:
            # conv [out, in, k, k]: one norm per output filter; linear [out, in]: per row
            assert filter_norms(di).shape == (wi.shape[0],)
            torch.testing.assert_close(filter_norms(di), filter_norms(wi), rtol=1e-5, atol=1e-7)


def test_filter_is_per_output_filter_not_per_tensor():
    w = [torch.stack([torch.full((2, 3, 3), 1.0), torch.full((2, 3, 3), 5.0)])]  # [2, 2, 3, 3]
    d = random_direction(w, seed=0)
    torch.testing.assert_close(filter_norms(d[0]), torch.tensor([18**0.5, 5 * 18**0.5]))


def test_bias_bn_follow_weights_when_not_zeroed(weights):
    d = random_direction(weights, seed=1, zero_bias_bn=False)
    for di, wi in zip(d, weights, strict=True):
        if wi.dim() <= 1:
            assert torch.equal(di, wi)  # Li et al.'s code copies the weights


def test_layer_model_and_none_normalisations(weights):
    raw = gaussian_like(weights, 5)
    layer = random_direction(weights, 5, "layer")
    for di, wi in zip(layer, weights, strict=True):
        if wi.dim() > 1:
            assert abs(float(di.norm()) - float(wi.norm())) < 1e-4 * float(wi.norm())
    model = random_direction(weights, 5, "model")
    covered = [w for w in weights if w.dim() > 1]
    assert abs(norm(model) - norm(covered)) < 1e-5 * norm(covered)
    none = random_direction(weights, 5, "none")
    for di, ri, wi in zip(none, raw, weights, strict=True):
        assert torch.equal(di, ri if wi.dim() > 1 else torch.zeros_like(ri))


def test_directions_are_seeded_and_named_seeds_are_independent(weights):
    a = random_direction(weights, seed=7)
    b = random_direction(weights, seed=7)
    c = random_direction(weights, seed=8)
    assert bitwise_equal(a, b)
    assert not bitwise_equal(a, c)
    assert abs(cosine(a, c)) < 0.2
    assert derived_seed(0, "plane_random_0") != derived_seed(0, "plane_random_1")
    assert derived_seed(0, "x") != derived_seed(1, "x")


def test_unknown_normalisation_lists_the_allowed_ones(weights):
    with pytest.raises(ValueError, match=r"Unsupported normalization 'filters'.*'filter'"):
        random_direction(weights, 0, "filters")
    with pytest.raises(ValueError, match="Supported normalizations"):
        normalize(weights, weights, "l2")
    assert set(NORMALIZATIONS) == {"filter", "layer", "model", "none"}


def test_directions_cover_parameters_not_batchnorm_buffers():
    model = build_model("cnn_bn", width=4, hidden=8)
    w = detached(parameters(model))
    d = random_direction(w, 0)
    names = [n for n, p in model.named_parameters()]
    assert len(d) == len(names) and not any("running" in n for n in names)
    assert len(buffers(model)) == 6  # 2 BN layers × (mean, var, count): untouched by directions


def _plane_trajectory(n: int = 6, dim: int = 50, seed: int = 0, offset: float = 0.0):
    """Snapshots θ_i = θ_T + a_i·u + b_i·v (+ offset·w, w ⟂ u, v), as parameter sets."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, 3, generator=g, dtype=torch.float64))
    u, v, w = q[:, 0], q[:, 1], q[:, 2]
    final = torch.randn(dim, generator=g, dtype=torch.float64)
    a = torch.linspace(-3.0, -0.2, n, dtype=torch.float64)
    b = 0.5 * torch.sin(torch.arange(n, dtype=torch.float64))
    like = [torch.zeros(5, 4, dtype=torch.float64), torch.zeros(30, dtype=torch.float64)]
    snaps = [unflatten(final + a[i] * u + b[i] * v + offset * w, like) for i in range(n)]
    return snaps + [unflatten(final, like)], unflatten(final, like), (u, v), (a, b)


def test_pca_recovers_a_planar_trajectory_exactly():
    traj, final, (u, v), (a, b) = _plane_trajectory()
    dirs, ratio = pca_directions(traj, final)
    basis = torch.stack([flatten(d) for d in dirs])
    torch.testing.assert_close(basis @ basis.T, torch.eye(2, dtype=torch.float64))
    # the two directions span {u, v}
    span = torch.stack([u, v])
    torch.testing.assert_close(torch.linalg.matrix_rank(torch.cat([basis, span])),
                               torch.tensor(2))
    assert float(ratio[:2].sum()) == pytest.approx(1.0, abs=1e-12)
    coords, off = project(traj, final, dirs)
    assert float(off.max()) < 1e-10
    # distances from θ_T are preserved and the initialisation sits at negative coordinates
    torch.testing.assert_close(coords.norm(dim=1)[:-1], (a**2 + b**2).sqrt())
    assert (coords[0] < 0).all()
    assert torch.equal(coords[-1], torch.zeros(2, dtype=torch.float64))


def test_uncentred_plane_fits_the_path_through_final_better_than_centred():
    traj, final, *_ = _plane_trajectory(offset=1.0)
    _, off_u = project(traj, final, pca_directions(traj, final, centre=False)[0])
    _, off_c = project(traj, final, pca_directions(traj, final, centre=True)[0])
    assert float((off_u**2).sum()) <= float((off_c**2).sum()) + 1e-12


def test_centred_pca_matches_numpy_pca():
    traj, final, *_ = _plane_trajectory(offset=0.7, seed=3)
    _, ratio = pca_directions(traj, final, centre=True)
    m = np.stack([flatten(t).numpy() - flatten(final).numpy() for t in traj[:-1]])
    s = np.linalg.svd(m - m.mean(0), compute_uv=False)
    np.testing.assert_allclose(ratio.numpy(), s**2 / (s**2).sum(), atol=1e-12)


def test_pca_needs_enough_snapshots():
    traj, final, *_ = _plane_trajectory(n=2)
    with pytest.raises(ValueError, match=r"at least 3 snapshots.*slices.planes"):
        pca_directions(traj, final)


def test_project_handles_non_orthogonal_directions():
    origin = [torch.zeros(3, dtype=torch.float64)]
    d1 = [torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)]
    d2 = [torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)]
    p = [torch.tensor([3.0, 2.0, 4.0], dtype=torch.float64)]
    coords, off = project([p], origin, [d1, d2])
    torch.testing.assert_close(coords[0], torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert float(off[0]) == pytest.approx(4.0)


def test_write_is_exact_at_zero_and_independent_of_previous_content():
    torch.manual_seed(0)
    base = [torch.randn(4, 3), torch.tensor([0.0, -0.0, 1.0])]
    d = [torch.randn(4, 3), torch.tensor([-1.0, 1.0, 2.0])]
    target = [torch.empty(4, 3), torch.empty(3)]
    write_(target, base, [(d, 0.0)])
    assert bitwise_equal(target, base)  # including the sign of −0.0
    write_(target, base, [(d, 0.3)])
    first = detached(target)
    write_(target, base, [(d, -2.0)])
    write_(target, base, [(d, 0.3)])
    assert bitwise_equal(target, first)


def test_flatten_unflatten_round_trip_and_dot():
    ts = [torch.randn(2, 3), torch.randn(4)]
    back = unflatten(flatten(ts), ts)
    assert bitwise_equal(back, ts)
    assert dot(ts, ts) == pytest.approx(float(flatten(ts).double().pow(2).sum()))
    with pytest.raises(ValueError, match="has 9 entries but the parameter set has 10"):
        unflatten(torch.zeros(9), ts)
