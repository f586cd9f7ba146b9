"""Directions in parameter space for loss-landscape slices (Li et al., 2018).

* ``random_direction``: a seeded Gaussian direction, normalised against the weights. The default,
  *filter normalisation* (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets", Sec. 4),
  rescales every filter of the direction to the norm of the matching filter of the weights:
  ``d_ij ← d_ij / ‖d_ij‖ · ‖θ_ij‖`` where a filter is an output channel of a conv weight
  ``[out, in, k, k]`` or a neuron (row) of a linear weight ``[out, in]``. Biases and BatchNorm
  weights/biases (every parameter with ≤ 1 dimension) are zeroed by default, as the authors'
  ``--xignore biasbn`` does. ``layer`` normalisation rescales whole tensors, ``model`` the whole
  direction to ‖θ‖, ``none`` leaves the N(0, 1) draw as it is; these exist for comparison.
* ``pca_directions``: the first principal directions of the optimisation path (Li et al. 2018,
  Sec. 7): PCA of the rows ``θ_i − θ_final`` over the snapshots (uncentred by default, so the
  plane through θ_final fits the path best; centred, as the authors' code, on request). Returns
  unit directions and the explained-variance ratios.
* ``project``: coordinates of points in a plane spanned by (not necessarily orthonormal)
  directions through an origin, by least squares, plus the distance left outside the plane.

Directions act on trainable parameters only, never on BatchNorm buffers.

Example (run as a doctest by tests/test_directions.py)::

    >>> import torch
    >>> from landscape.params import filter_norms
    >>> w = [torch.ones(2, 3), torch.zeros(2)]
    >>> d = random_direction(w, seed=0)
    >>> filter_norms(d[0])  # each row rescaled to ‖(1, 1, 1)‖ = √3
    tensor([1.7321, 1.7321])
    >>> d[1]  # bias zeroed
    tensor([0., 0.])
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from .params import ParamSet, bitwise_equal, dot, filter_norms, flatten, norm, sub, unflatten
from .slicespec import NORMALIZATIONS, check_normalization  # noqa: F401 (re-exported)

EPS = 1e-10  # as in Li et al.'s code: guards against all-zero filters of the direction


def derived_seed(seed: int, name: str) -> int:
    """A 63-bit seed for the direction called ``name`` under the study seed ``seed``.

    Each named direction has its own generator, so adding a direction never changes another.
    """
    digest = hashlib.sha256(f"landscape-direction:{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def gaussian_like(weights: Sequence[torch.Tensor], seed: int) -> ParamSet:
    """Independent N(0, 1) entries shaped like ``weights``, drawn on the CPU from a generator
    seeded with ``seed`` (so every device gets the same numbers), then moved to the weights'
    device and dtype."""
    g = torch.Generator().manual_seed(int(seed))
    return [torch.randn(w.shape, generator=g, dtype=torch.float32).to(w.device, w.dtype)
            for w in weights]


def normalize(direction: Sequence[torch.Tensor], weights: Sequence[torch.Tensor],
              normalization: str = "filter", zero_bias_bn: bool = True) -> ParamSet:
    """Return ``direction`` rescaled against ``weights`` (a new parameter set).

    ``filter``: each filter (slice along dim 0) gets the norm of the weights' filter.
    ``layer``: each tensor gets the norm of the weights' tensor. ``model``: the whole direction
    gets the norm of the weights (over the entries it does not zero). ``none``: unchanged.
    Parameters with ≤ 1 dimension (biases, BatchNorm weight and bias) are zeroed when
    ``zero_bias_bn``; otherwise, under ``filter`` and ``layer``, they are set equal to the
    weights, as in Li et al.'s code, and under ``model``/``none`` they stay random.
    """
    check_normalization(normalization)
    if len(direction) != len(weights):
        raise ValueError(f"direction has {len(direction)} tensors, weights {len(weights)}")
    out: ParamSet = []
    for d, w in zip(direction, weights, strict=True):
        d = d.detach().clone()
        if w.dim() <= 1:
            if zero_bias_bn:
                d.zero_()
            elif normalization in ("filter", "layer"):
                d.copy_(w)
        elif normalization == "filter":
            factor = filter_norms(w) / (filter_norms(d) + EPS)
            d.mul_(factor.reshape(-1, *([1] * (d.dim() - 1))))
        elif normalization == "layer":
            d.mul_(w.norm() / (d.norm() + EPS))
        out.append(d)
    if normalization == "model":
        covered = [w if not (zero_bias_bn and w.dim() <= 1) else torch.zeros_like(w)
                   for w in weights]
        factor = norm(covered) / (norm(out) + EPS)
        out = [d.mul_(factor) for d in out]
    return out


def random_direction(weights: Sequence[torch.Tensor], seed: int, normalization: str = "filter",
                     zero_bias_bn: bool = True) -> ParamSet:
    """A seeded Gaussian direction normalised against ``weights`` (filter-wise by default)."""
    check_normalization(normalization)
    return normalize(gaussian_like(weights, seed), weights, normalization, zero_bias_bn)


def pca_directions(trajectory: Sequence[Sequence[torch.Tensor]], final: Sequence[torch.Tensor],
                   k: int = 2, centre: bool = False) -> tuple[list[ParamSet], torch.Tensor]:
    """First ``k`` principal directions of the optimisation path (Li et al. 2018, Sec. 7).

    Rows ``θ_i − θ_final`` for every snapshot ``θ_i`` that is not bitwise the final weights are
    decomposed by SVD in float64. Returns (``k`` unit directions in the weights' dtype and device,
    explained-variance ratio of every component [min(n, P)]).

    ``centre=False`` (default) decomposes the rows as they are, which gives the plane *through
    θ_final* closest to the snapshots (least total squared distance) and ratios that are shares
    of Σ‖θ_i − θ_final‖². ``centre=True`` subtracts the rows' mean first, as Li et al.'s code
    (scikit-learn PCA) does; the plane drawn through θ_final then misses the path by about the
    mean offset (``project`` reports that distance). Signs are fixed so the first snapshot (the
    initialisation) has negative coordinates: the path runs towards the origin from the lower
    left.
    """
    rows = [flatten(sub(s, final)).double() for s in trajectory if not bitwise_equal(s, final)]
    if len(rows) < k + 1:
        raise ValueError(f"PCA of the trajectory needs at least {k + 1} snapshots besides the "
                         f"final weights to find {k} directions; got {len(rows)}. Save more "
                         "snapshots (train.snapshot_steps, more epochs or a lower "
                         "train.stop_at_loss) or drop 'pca' from slices.planes.")
    m = torch.stack(rows)
    centred = m - m.mean(dim=0, keepdim=True) if centre else m
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    var = s**2
    ratio = var / var.sum()
    comps = vh[:k].clone()
    first = m[0]
    for j in range(k):
        c = float(first @ comps[j])
        if c > 0 or (c == 0 and float(comps[j][comps[j].abs().argmax()]) < 0):
            comps[j] = -comps[j]
    dirs = [[t.to(device=w.device, dtype=w.dtype)
             for t, w in zip(unflatten(comps[j], final), final, strict=True)]
            for j in range(k)]
    return dirs, ratio


def project(points: Sequence[Sequence[torch.Tensor]], origin: Sequence[torch.Tensor],
            directions: Sequence[Sequence[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares coordinates of ``points − origin`` in the span of ``directions``.

    Returns (coordinates [n_points, k] float64, distance from the plane [n_points] float64, in
    parameter-space units). Exact for orthonormal directions; the Gram matrix handles the small
    non-orthogonality left by casting PCA directions to float32.
    """
    k = len(directions)
    gram = torch.tensor([[dot(directions[a], directions[b]) for b in range(k)] for a in range(k)],
                        dtype=torch.float64)
    dmat = torch.stack([flatten(d).double() for d in directions])  # [k, P]
    coords, resid = [], []
    for p in points:
        v = flatten(sub(p, origin)).double()
        c = torch.linalg.solve(gram, dmat @ v)
        coords.append(c)
        resid.append(torch.linalg.vector_norm(v - c @ dmat))
    if not coords:
        return torch.zeros(0, k, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    return torch.stack(coords), torch.stack(resid)


def cosine(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """Cosine of the angle between two directions (≈ 0 for random high-dimensional ones)."""
    return dot(a, b) / (norm(a) * norm(b) + EPS)
