"""Activation matching: permute network B's hidden units so that their activations correlate
with network A's.

Ainsworth, Hayase & Srinivasa (2023), "Git Re-Basin: Merging Models modulo Permutation
Symmetries", ICLR, Sec. 3.1 ("matching activations"); the same matching as Tatro et al. (2020),
"Optimizing Mode Connectivity via Neuron Alignment", and Entezari, Sedghi, Saukh & Neyshabur
(2022), "The Role of Permutation Invariance in Linear Mode Connectivity of Neural Networks".
For every hidden layer ℓ with a permutation (the spec of ``alignment.permutation_spec``), both
networks are run on the same inputs and the permutation P_ℓ maximises Σ_i corr(a_i, b_{P_ℓ[i]}),
the sum over A's units i of the Pearson correlation between A's unit i and B's unit P_ℓ[i] (the
inner product of standardised activations, divided by the number of samples): one linear
assignment problem per layer (``scipy.optimize.linear_sum_assignment``, maximising, in float64).
Layers are independent given the inputs: B's activations are those of the unpermuted B, and
each layer's permutation is solved from that layer's activations alone (no coordinate ascent, as
in weight matching).

Where a unit is read: after the layers that follow the weighted layer unit by unit
(``alignment.unit_layers``: its BatchNorm and nonlinearity), i.e. post-ReLU as in the Git
Re-Basin code; for the registry CNNs that is before the max-pool, which acts on each channel
separately and so would not change which channels correspond, while every spatial position
before it is one more sample. Conv channels: every spatial position of every image is a sample.
Networks run in eval mode (BatchNorm with its running statistics: the endpoint's function).

Memory: activations are never kept; per layer the float64 sums Σa_i, Σa_i², Σb_j, Σb_j² and
the cross-product matrix Σ a_i b_j (n × n) are accumulated over batches.

Ties. A unit that is constant on the inputs (a dead ReLU) has correlation 0 with every unit, so
the activations alone leave dead units' partners arbitrary (and a network matched to a permuted
copy of itself would not come back exactly). Ties are broken by the pre-activations (the
weighted layer's output, after its BatchNorm if one follows; they still vary for a dead ReLU):
the assignment maximises Σ_i corr(a_i, b_{P[i]}) + 10⁻⁶·Σ_i corr(a_i^pre, b_{P[i]}^pre), which
moves the matched correlations by at most 2·10⁻⁶ per unit. Units whose pre-activations are
constant too stay arbitrary (they carry no signal on these inputs).

Conventions as ``alignment.weight_matching``: ``perms[name]`` is a LongTensor P; the permuted
network's unit i is the original network's unit P[i] (apply with
``alignment.apply_permutation(model, state_b, perms)``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .alignment import (
    NORMS,
    Perms,
    PermutationSpec,
    _param_distance,
    apply_permutation,
    permutation_spec,
    unit_layers,
)

TIE_BREAK = 1e-6  # weight of the pre-activation correlations (module docstring: ties)


def activation_points(model: nn.Module) -> dict[str, str]:
    """Permutation name → the module whose output is that layer's activation (after its
    BatchNorm and nonlinearity; the weighted layer itself when nothing follows it unit by
    unit)."""
    return {p: (after[-1] if after else p) for p, after in unit_layers(model).items()}


def preactivation_points(model: nn.Module) -> dict[str, str]:
    """Permutation name → the module whose output is that layer's pre-activation: the weighted
    layer, or the BatchNorm right after it (the points REPAIR corrects)."""
    out = {}
    for p, after in unit_layers(model).items():
        bn = bool(after) and isinstance(model.get_submodule(after[0]), NORMS)
        out[p] = after[0] if bn else p
    return out


def units(out: torch.Tensor) -> torch.Tensor:
    """A layer's output [N, C, …] as float64 samples × units [N·…, C] (conv: every spatial
    position is a sample)."""
    if out.dim() == 2:
        return out.double()
    return out.movedim(1, -1).reshape(-1, out.shape[1]).double()


class _Moments:
    """Running float64 sums of two layers' units: Σa, Σa², Σb, Σb², Σ a bᵀ and the count."""

    def __init__(self) -> None:
        self.n = 0
        self.sa = self.sb = self.qa = self.qb = self.cross = None

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        a, b = units(a), units(b)
        if self.sa is None:
            k = a.shape[1]
            z = a.new_zeros
            self.sa, self.sb, self.qa, self.qb = z(k), z(k), z(k), z(k)
            self.cross = z(k, k)
        self.n += a.shape[0]
        self.sa += a.sum(0)
        self.sb += b.sum(0)
        self.qa += (a * a).sum(0)
        self.qb += (b * b).sum(0)
        self.cross += a.T @ b

    def correlation(self) -> torch.Tensor:
        """[n_A, n_B] Pearson correlations (0 where a unit is constant), float64 on the CPU."""
        n = float(self.n)
        ma, mb = self.sa / n, self.sb / n
        cov = self.cross / n - torch.outer(ma, mb)
        sd_a = (self.qa / n - ma * ma).clamp_min(0).sqrt()
        sd_b = (self.qb / n - mb * mb).clamp_min(0).sqrt()
        den = torch.outer(sd_a, sd_b)
        corr = torch.where(den > 0, cov / torch.where(den > 0, den, 1.0), 0.0)
        return corr.cpu()


@torch.no_grad()
def activation_correlations(model: nn.Module, state_a: Mapping[str, torch.Tensor],
                            state_b: Mapping[str, torch.Tensor], x: torch.Tensor,
                            batch_size: int = 256, points: Mapping[str, str] | None = None
                            ) -> tuple[dict[str, torch.Tensor], int]:
    """Per entry of ``points`` (key → module name; default ``activation_points(model)``) the
    [n, n] float64 matrix of correlations between A's unit i and B's unit j of that module's
    output on inputs ``x`` (in the model's memory format), and the number of samples per unit
    (of the first entry).

    Both state dicts are run through ``model``'s architecture with
    ``torch.func.functional_call`` in eval mode; ``model``'s own tensors are not touched.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size = {batch_size} is not allowed: expected ≥ 1")
    if x.shape[0] == 0:
        raise ValueError("activation matching needs at least one input")
    points = dict(activation_points(model) if points is None else points)
    modules = sorted(set(points.values()))
    device = x.device
    sa = {k: v.detach().to(device) for k, v in state_a.items()}
    sb = {k: v.detach().to(device) for k, v in state_b.items()}
    captured: dict[str, torch.Tensor] = {}

    def hook(name):
        def fn(_module, _inputs, out):
            captured[name] = out.detach()
        return fn

    handles = [model.get_submodule(m).register_forward_hook(hook(m)) for m in modules]
    moments = {p: _Moments() for p in points}
    was_training = model.training
    model.eval()
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size]
            functional_call(model, sa, (xb,))
            acts_a = dict(captured)
            captured.clear()
            functional_call(model, sb, (xb,))
            for p, m in points.items():
                moments[p].add(acts_a[m], captured[m])
            captured.clear()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    n = next(iter(moments.values())).n if moments else 0
    return {p: m.correlation() for p, m in moments.items()}, n


def activation_matching(model: nn.Module, state_a: Mapping[str, torch.Tensor],
                        state_b: Mapping[str, torch.Tensor], x: torch.Tensor,
                        batch_size: int = 256, spec: PermutationSpec | None = None
                        ) -> tuple[Perms, dict]:
    """Permutations of B's hidden units maximising, layer by layer, Σ_i corr(a_i, b_{P[i]}).

    Ainsworth et al. (2023), Sec. 3.1 (module docstring): activations of A and of the
    unpermuted B on the inputs ``x`` (e.g. a training subset, in the model's memory format),
    one exact linear assignment per layer on the float64 correlation matrix, ties broken by the
    pre-activations' correlations (module docstring). Returns ``(perms, info)`` in the
    conventions of ``alignment.weight_matching``: ``perms[name]`` a LongTensor; ``info`` with
    ``iterations`` (1: the layers are solved once, independently), ``converged`` (True),
    ``objective`` (Σ over layers and units of the matched activations' correlations),
    ``objective_identity`` (the same without permuting), ``samples`` (activations per unit:
    images × spatial positions of the first layer), ``images`` and ``seconds``.
    """
    from scipy.optimize import linear_sum_assignment  # here: the config check imports the package

    t0 = time.perf_counter()
    spec = spec if spec is not None else permutation_spec(model)
    post, pre = activation_points(model), preactivation_points(model)
    points = {**{(p, "post"): m for p, m in post.items()},
              **{(p, "pre"): m for p, m in pre.items() if m != post[p]}}
    corr, samples = activation_correlations(model, state_a, state_b, x, batch_size, points)
    perms: Perms = {}
    objective = identity = 0.0
    for p in spec.sizes:
        c = corr[(p, "post")].numpy()
        cost = c + TIE_BREAK * corr[(p, "pre")].numpy() if (p, "pre") in corr else c
        rows, cols = linear_sum_assignment(cost, maximize=True)
        perms[p] = torch.from_numpy(cols[np.argsort(rows)].astype(np.int64))
        objective += float(c[rows, cols].sum())
        identity += float(np.trace(c))
    return perms, {"iterations": 1, "converged": True, "objective": objective,
                   "objective_identity": identity, "samples": samples,
                   "images": int(x.shape[0]), "seconds": time.perf_counter() - t0}


def align_activations(model: nn.Module, state_a: Mapping[str, torch.Tensor],
                      state_b: Mapping[str, torch.Tensor], x: torch.Tensor,
                      batch_size: int = 256) -> tuple[dict[str, torch.Tensor], dict]:
    """Permute ``state_b`` to line up with ``state_a`` by activation matching on inputs ``x``;
    B's function is kept.

    Returns ``(aligned_b, info)`` as ``alignment.align``: ``aligned_b`` a new state dict
    (parameters and buffers permuted); ``info`` as ``activation_matching``'s plus ``perms`` and
    the Euclidean parameter distances ``distance_before`` = ‖θ_A − θ_B‖ and ``distance_after`` =
    ‖θ_A − P(θ_B)‖.
    """
    spec = permutation_spec(model)
    perms, info = activation_matching(model, state_a, state_b, x, batch_size, spec=spec)
    aligned = apply_permutation(spec, state_b, perms)
    info = {**info, "perms": perms, "distance_before": _param_distance(spec, state_a, state_b),
            "distance_after": _param_distance(spec, state_a, aligned)}
    return aligned, info
