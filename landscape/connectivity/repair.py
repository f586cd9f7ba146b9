"""REPAIR: renormalise the hidden units of an interpolated network to the endpoints' statistics.

Jordan, Sedghi, Saukh, Entezari & Neyshabur (2023), "REPAIR: REnormalizing Permuted Activations
for Interpolation Repair", ICLR. Between two aligned networks A and B' (B permuted to match A),
the interpolated network θ(t) = (1 − t)·θ_A + t·θ_B' suffers "variance collapse": its hidden
units vary less than the endpoints' do, and the collapse compounds with depth. REPAIR gives
every hidden unit at the pre-activation point the statistics interpolated from the endpoints',

    μ_goal = (1 − t)·μ_A + t·μ_B',   σ_goal = (1 − t)·σ_A + t·σ_B',

by the per-unit affine map z ↦ (z − μ_t)/σ_t · σ_goal + μ_goal, where μ_t, σ_t are the
interpolated network's own mean and standard deviation of that unit. The pre-activation point
(``repair_points``) is the output of every Conv2d/Linear but the last (the ones with a
permutation, ``alignment.permutation_spec``), after its BatchNorm when one follows: just before
the nonlinearity. Conv channels: every spatial position of every image is a sample. Statistics
are population (ddof 0) means and standard deviations in float64, over the inputs ``x`` (a
training subset), with the networks in eval mode.

Endpoint statistics: each endpoint with its own weights and BatchNorm buffers, the ones the path
evaluation uses at that endpoint: with ``bn_data`` (``paths.evaluate_path`` re-estimating the
statistics at every point) the endpoint's BatchNorm statistics are first re-estimated on
``bn_data`` the same way, so that at t = 0 and t = 1 the correction is the identity up to
rounding and the repaired path ends at the same functions as the unrepaired one.

Exactness: the correction of a layer changes the inputs of every later layer, so the statistics
μ_t, σ_t of layer ℓ are measured with the corrections of layers 1 … ℓ−1 in place, one layer at
a time in call order (one pass over ``x`` per corrected layer, each stopped right after that
layer). The corrected network then has exactly (up to float rounding) the goal statistics at
every corrected unit on ``x``. This is what the authors' reference code approximates by
inserting a BatchNorm (momentum None, affine weight σ_goal and bias μ_goal) after each layer and
re-estimating all of them in one train-mode pass: there each batch is normalised with its own
batch statistics while the statistics of later layers are gathered, which is exact only when
``x`` is one batch; the sequential measurement here is exact for any batch size. A unit that is
constant on ``x`` (σ_t ≤ 10⁻⁶·|μ_t|: no variation float32 can carry) is only shifted to μ_goal.

With BatchNorm and ``bn_data``, a point's BatchNorm statistics are re-estimated first
(``evaluator.recompute_bn_statistics``, as on the unrepaired path); REPAIR then measures and
corrects the post-BatchNorm pre-activations.

``paths.evaluate_path(..., repair=Repair.from_states(...))`` evaluates the repaired network at
every t: the corrections are computed on ``x`` at each point and applied with forward hooks
during that point's evaluation only; the hooks are removed afterwards and the model's tensors
are never changed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ..evaluator import recompute_bn_statistics
from .activation import preactivation_points

Stats = dict[str, tuple[torch.Tensor, torch.Tensor]]  # module → (mean, std), float64 [units]
Corrections = dict[str, tuple[torch.Tensor, torch.Tensor]]  # module → (scale, shift)


def repair_points(model: nn.Module) -> list[str]:
    """Names, in call order, of the modules whose outputs REPAIR corrects: every Conv2d/Linear
    with a permutation (all but the last), or the BatchNorm right after it."""
    return list(preactivation_points(model).values())


class _Sums:
    """Float64 sums of one module's units, shifted by the first batch's mean (so that a constant
    unit has variance 0 exactly). The differences and squares are formed in the output's dtype
    (float32: relative rounding 6·10⁻⁸ per sample, far below the statistics' own precision) and
    summed in float64 batch by batch; only the sums are kept."""

    def __init__(self) -> None:
        self.n, self.ref, self.s1, self.s2 = 0, None, None, None

    def add(self, out: torch.Tensor) -> None:
        z = out.detach()
        dims = [d for d in range(z.dim()) if d != 1]
        shape = (1, -1) + (1,) * (z.dim() - 2)
        if self.ref is None:
            self.ref = z.mean(dims, dtype=torch.float64).to(z.dtype)
            self.s1 = torch.zeros(z.shape[1], dtype=torch.float64, device=z.device)
            self.s2 = torch.zeros_like(self.s1)
        d = z - self.ref.view(shape)
        self.n += z.numel() // z.shape[1]
        self.s1 += d.sum(dims, dtype=torch.float64)
        self.s2 += (d * d).sum(dims, dtype=torch.float64)

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.s1 / self.n
        return self.ref.double() + m, (self.s2 / self.n - m * m).clamp_min(0).sqrt()


def _batches(x: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    if batch_size < 1:
        raise ValueError(f"batch_size = {batch_size} is not allowed: expected ≥ 1")
    if x.shape[0] == 0:
        raise ValueError("REPAIR needs at least one input to measure statistics on")
    for i in range(0, x.shape[0], batch_size):
        yield x[i:i + batch_size]


@torch.no_grad()
def unit_statistics(model: nn.Module, x: torch.Tensor, batch_size: int = 256,
                    points: Sequence[str] | None = None) -> Stats:
    """Per-unit mean and standard deviation (population, float64) of the outputs of ``points``
    (default ``repair_points(model)``) on inputs ``x``, with the model's current weights and
    buffers in eval mode (one pass; the model's tensors are not changed)."""
    points = list(repair_points(model) if points is None else points)
    sums = {p: _Sums() for p in points}
    handles = [model.get_submodule(p).register_forward_hook(
        lambda _m, _i, out, s=sums[p]: s.add(out)) for p in points]
    was_training = model.training
    model.eval()
    try:
        for xb in _batches(x, batch_size):
            model(xb)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {p: s.stats() for p, s in sums.items()}


def endpoint_statistics(model: nn.Module, state: Mapping[str, torch.Tensor], x: torch.Tensor,
                        batch_size: int = 256, bn_data: torch.Tensor | None = None) -> Stats:
    """``unit_statistics`` of the network ``state`` (a copy of ``model`` is loaded with it;
    ``model`` is not touched); with ``bn_data`` its BatchNorm statistics are re-estimated there
    first (``recompute_bn_statistics`` with ``batch_size``, as ``paths.evaluate_path`` does)."""
    net = copy.deepcopy(model)
    net.load_state_dict(dict(state))
    if bn_data is not None:
        recompute_bn_statistics(net, bn_data, batch_size)
    return unit_statistics(net.eval(), x, batch_size)


def affine(mean: torch.Tensor, std: torch.Tensor, goal_mean: torch.Tensor,
           goal_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of z ↦ (z − mean)/std · goal_std + goal_mean = z·scale + shift; a unit
    with std ≤ 10⁻⁶·|mean| (constant in float32) keeps scale 1 and is only shifted."""
    constant = std <= 1e-6 * mean.abs()
    scale = torch.where(constant, torch.ones_like(std), goal_std / torch.where(constant, 1.0, std))
    return scale, goal_mean - mean * scale


def _hook(corrections: Corrections, name: str):
    def fn(_module, _inputs, out):
        if name not in corrections:
            return None
        scale, shift = corrections[name]
        shape = (1, -1) + (1,) * (out.dim() - 2)
        return torch.addcmul(shift.to(out.dtype).view(shape), out, scale.to(out.dtype).view(shape))
    return fn


@contextmanager
def corrected(model: nn.Module, corrections: Corrections,
              names: Sequence[str] | None = None) -> Iterator[None]:
    """Forward hooks applying ``corrections`` (module → (scale, shift) per unit) to the outputs
    of those modules inside the ``with`` block; removed on exit. The model's tensors are not
    changed. ``names``: the modules to hook (default: ``corrections``' keys); entries added to
    ``corrections`` for them inside the block apply from then on."""
    names = list(corrections if names is None else names)
    handles = [model.get_submodule(name).register_forward_hook(_hook(corrections, name))
               for name in names]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class _Stop(Exception):
    """Raised by a measuring hook: the rest of the forward pass is not needed."""


@torch.no_grad()
def repair_corrections(model: nn.Module, goal: Stats, x: torch.Tensor,
                       batch_size: int = 256) -> Corrections:
    """The per-unit affine corrections that give the network in ``model`` (its current weights
    and buffers, eval mode) the statistics ``goal`` on ``x``: layer by layer in call order, each
    measured with the corrections of the earlier layers in place (module docstring). ``goal``'s
    modules must be in call order (as ``unit_statistics`` returns them)."""
    corrections: Corrections = {}
    was_training = model.training
    model.eval()
    try:
        with corrected(model, corrections, names=list(goal)):
            for name in goal:
                sums = _Sums()

                def measure(_m, _i, out, s=sums):
                    s.add(out)
                    raise _Stop

                handle = model.get_submodule(name).register_forward_hook(measure)
                try:
                    for xb in _batches(x, batch_size):
                        try:
                            model(xb)
                        except _Stop:
                            pass
                finally:
                    handle.remove()
                corrections[name] = affine(*sums.stats(), *goal[name])
    finally:
        model.train(was_training)
    return corrections


class Repair:
    """REPAIR (Jordan et al., 2023) along a path between two endpoints with statistics
    ``stats_a`` (t = 0) and ``stats_b`` (t = 1), measured and corrected on inputs ``x`` in
    batches of ``batch_size`` (module docstring). Build it with ``from_states``; pass it to
    ``paths.evaluate_path(..., repair=...)``."""

    def __init__(self, stats_a: Stats, stats_b: Stats, x: torch.Tensor,
                 batch_size: int = 256) -> None:
        if list(stats_a) != list(stats_b):
            raise ValueError(f"the endpoints' statistics cover different layers: {list(stats_a)} "
                             f"and {list(stats_b)}")
        self.stats_a, self.stats_b, self.x, self.batch_size = stats_a, stats_b, x, batch_size

    @classmethod
    def from_states(cls, model: nn.Module, state_a: Mapping[str, torch.Tensor],
                    state_b: Mapping[str, torch.Tensor], x: torch.Tensor,
                    batch_size: int = 256, bn_data: torch.Tensor | None = None) -> Repair:
        """Endpoint statistics of ``state_a`` and ``state_b`` (``endpoint_statistics``) on
        ``x``. Give the same ``bn_data`` and ``batch_size`` as to ``evaluate_path``."""
        return cls(endpoint_statistics(model, state_a, x, batch_size, bn_data),
                   endpoint_statistics(model, state_b, x, batch_size, bn_data), x, batch_size)

    def goal(self, t: float) -> Stats:
        """μ_goal = (1 − t)·μ_A + t·μ_B and σ_goal = (1 − t)·σ_A + t·σ_B per module."""
        t = float(t)
        out = {}
        for p, (ma, sa) in self.stats_a.items():
            mb, sb = self.stats_b[p]
            out[p] = ((1.0 - t) * ma + t * mb, (1.0 - t) * sa + t * sb)
        return out

    def corrections(self, model: nn.Module, t: float) -> Corrections:
        """``repair_corrections`` of the network now in ``model`` (the path's point at t)."""
        return repair_corrections(model, self.goal(t), self.x, self.batch_size)
