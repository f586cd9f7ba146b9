"""Weight matching: permute network B's hidden units to line up with network A.

Ainsworth, Hayase & Srinivasa (2023), "Git Re-Basin: Merging Models modulo Permutation
Symmetries", ICLR, Algorithm 1 ("weight matching"). Permuting the output units of a hidden layer
(conv output channels, linear neurons), together with its bias, the BatchNorm that follows and the
input columns of the next layer, leaves the network's function unchanged. Weight matching picks,
for every hidden layer ℓ, the permutation P_ℓ that maximises Σ_ℓ ⟨W_ℓ^A, P_ℓ W_ℓ^B P_{ℓ−1}ᵀ⟩ by
coordinate ascent: each layer's sub-problem, with the other permutations fixed, is a linear
assignment problem (``scipy.optimize.linear_sum_assignment``, maximising); layers are visited in
a seeded random order until a full sweep changes no permutation.

The *permutation spec* is derived from the model itself (``permutation_spec``): the model is
traced with ``torch.fx`` and must be a plain chain of supported layers (Conv2d, Linear,
BatchNorm1d/2d, element-wise activations, dropout, pooling, Flatten). Every Conv2d/Linear except
the last one gets a permutation named after the layer (e.g. ``"features.0"``). At a
conv → Flatten → Linear boundary the Linear's input columns are grouped per channel: channel c
covers columns ``c·H·W … (c+1)·H·W − 1`` (NCHW flatten order), so the columns move in blocks of
H·W. Conventions: ``perms[name]`` is a LongTensor ``P`` of length n (units of that layer); the
permuted network's unit i is the original network's unit ``P[i]``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

Perms = dict[str, torch.Tensor]

# layers that act on each unit (channel/neuron) separately and hold no parameters
ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
               nn.Mish, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Hardswish,
               nn.Hardsigmoid, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
SUPPORTED = ("Conv2d", "Linear", "BatchNorm1d", "BatchNorm2d", "Flatten",
             *sorted({c.__name__ for c in ELEMENTWISE + POOLING}))


@dataclass(frozen=True)
class Axis:
    """One permuted dimension of a tensor: moved by permutation ``perm`` in blocks of ``block``
    consecutive entries (``block`` = H·W for the input columns of a Linear after a Flatten)."""

    perm: str
    block: int = 1


@dataclass(frozen=True)
class PermutationSpec:
    """Which dimension of which state-dict entry each permutation moves.

    ``sizes``: permutation name → number of units. ``axes``: every state-dict key of the model →
    one ``Axis`` or None per dimension of that tensor (None: not permuted; ``num_batches_tracked``
    has no dimensions). ``parameters``: the keys that are trainable parameters; only these enter
    the weight-matching objective (buffers are permuted but not matched, as in Ainsworth et al.).
    """

    sizes: dict[str, int]
    axes: dict[str, tuple[Axis | None, ...]]
    parameters: frozenset[str]

    def perm_to_axes(self) -> dict[str, list[tuple[str, int, int]]]:
        """Permutation name → [(key, dim, block), ...] of the tensors it moves."""
        out: dict[str, list[tuple[str, int, int]]] = {p: [] for p in self.sizes}
        for key, axes in self.axes.items():
            for dim, ax in enumerate(axes):
                if ax is not None:
                    out[ax.perm].append((key, dim, ax.block))
        return out


def _chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's leaf modules in call order; ValueError unless forward is a plain chain."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # noqa: BLE001 - any tracing failure means "not a plain chain"
        raise ValueError(f"cannot derive a permutation spec for {type(model).__name__}: tracing "
                         f"its forward with torch.fx failed ({exc})") from exc
    chain: list[tuple[str, nn.Module]] = []
    prev = None
    for node in graph.nodes:
        if node.op == "placeholder":
            if prev is not None:
                raise ValueError(f"{type(model).__name__}.forward takes several inputs; weight "
                                 "matching supports a single input")
            prev = node
        elif node.op == "output":
            if node.args[0] is not prev:
                raise ValueError(f"{type(model).__name__}.forward is not a plain chain of layers")
        elif node.op == "call_module":
            if node.args != (prev,) or node.kwargs:
                raise ValueError(f"{type(model).__name__}.forward is not a plain chain of layers "
                                 f"(layer {node.target!r} does not take the previous output)")
            chain.append((str(node.target), model.get_submodule(str(node.target))))
            prev = node
        else:
            raise ValueError(f"Unsupported operation {node.op} {node.target!r} in "
                             f"{type(model).__name__}.forward; weight matching supports chains "
                             f"of layers {list(SUPPORTED)}")
    names = [n for n, _ in chain]
    if len(set(names)) != len(names):
        raise ValueError("a layer is called twice in forward (shared weights are not supported)")
    return chain


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """Derive the permutation spec of ``model`` by walking its layers in call order.

    Raises ValueError for unsupported layer types (naming them and listing the supported ones),
    for grouped convolutions, for a Conv2d after a Flatten, and for models whose forward is not a
    chain of modules.
    """
    chain = _chain(model)
    weighted = [i for i, (_, m) in enumerate(chain) if isinstance(m, nn.Conv2d | nn.Linear)]
    if not weighted:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer to align")
    last = weighted[-1]
    sizes: dict[str, int] = {}
    axes: dict[str, tuple[Axis | None, ...]] = {}
    cur: str | None = None  # permutation of the current feature axis (None: not permuted)
    flattened = False       # a Flatten turned a spatial map into columns not yet consumed
    spatial = True          # the current features have spatial dimensions (image input)

    def add(prefix: str, module: nn.Module, **entries: tuple[Axis | None, ...]) -> None:
        for key, ax in entries.items():
            full = f"{prefix}.{key}"
            value = getattr(module, key, None)
            if value is not None:
                axes[full] = ax

    for i, (name, m) in enumerate(chain):
        inp = Axis(cur) if cur is not None else None
        if isinstance(m, nn.Conv2d):
            if flattened or not spatial:
                raise ValueError(f"layer {name!r}: Conv2d after Flatten is not supported")
            if m.groups != 1:
                raise ValueError(f"layer {name!r}: grouped convolutions (groups={m.groups}) are "
                                 "not supported")
            out = None
            if i != last:
                sizes[name] = m.out_channels
                out = Axis(name)
            add(name, m, weight=(out, inp, None, None), bias=(out,))
            cur = name if out is not None else None
        elif isinstance(m, nn.Linear):
            if inp is not None and flattened:
                n = sizes[cur]
                if m.in_features % n:
                    raise ValueError(f"layer {name!r}: {m.in_features} input features are not a "
                                     f"multiple of the {n} channels before Flatten")
                inp = Axis(cur, m.in_features // n)
            elif inp is not None and m.in_features != sizes[cur]:
                raise ValueError(f"layer {name!r}: {m.in_features} input features but the "
                                 f"previous layer has {sizes[cur]} units")
            out = None
            if i != last:
                sizes[name] = m.out_features
                out = Axis(name)
            add(name, m, weight=(out, inp), bias=(out,))
            cur = name if out is not None else None
            flattened, spatial = False, False
        elif isinstance(m, NORMS):
            if flattened:
                raise ValueError(f"layer {name!r}: BatchNorm right after Flatten is not "
                                 "supported")
            add(name, m, weight=(inp,), bias=(inp,), running_mean=(inp,), running_var=(inp,),
                num_batches_tracked=())
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ValueError(f"layer {name!r}: only Flatten(start_dim=1, end_dim=-1) is "
                                 "supported")
            flattened = spatial and cur is not None
            spatial = False
        elif isinstance(m, ELEMENTWISE + POOLING):
            if flattened and isinstance(m, POOLING):
                raise ValueError(f"layer {name!r}: pooling after Flatten is not supported")
        else:
            raise ValueError(f"Unsupported layer {name!r} of type {type(m).__name__}. "
                             f"Supported layers are {list(SUPPORTED)}.")
        own = [k for k, _ in m.named_parameters(recurse=False)]
        own += [k for k, _ in m.named_buffers(recurse=False)]
        missing = [k for k in own if f"{name}.{k}" not in axes]
        if missing:
            raise ValueError(f"layer {name!r} ({type(m).__name__}) holds tensors {missing} that "
                             "weight matching does not know how to permute")

    keys = set(model.state_dict())
    stray = sorted(keys - set(axes))
    if stray:
        raise ValueError(f"state entries {stray} belong to no layer called in forward")
    param_keys = frozenset(n for n, p in model.named_parameters() if p.requires_grad)
    return PermutationSpec(sizes, {k: axes[k] for k in model.state_dict()}, param_keys)


def unit_layers(model: nn.Module) -> dict[str, list[str]]:
    """Permutation name → the layers right after that weighted layer that act on its units one
    by one (BatchNorm, element-wise activations, dropout), in call order, up to the first
    pooling, Flatten or weighted layer; [] when none follows. Where activation matching
    (``landscape.connectivity.activation``) and REPAIR (``landscape.connectivity.repair``) read
    a hidden unit: the last of these layers (after the nonlinearity), or the BatchNorm right
    after the weighted layer (before it). Same checks as ``permutation_spec``."""
    spec = permutation_spec(model)
    chain = _chain(model)
    out: dict[str, list[str]] = {}
    for i, (name, _) in enumerate(chain):
        if name not in spec.sizes:
            continue
        out[name] = []
        for follower, m in chain[i + 1:]:
            if not isinstance(m, NORMS + ELEMENTWISE):
                break
            out[name].append(follower)
    return out


def _spec(model_or_spec: nn.Module | PermutationSpec) -> PermutationSpec:
    if isinstance(model_or_spec, PermutationSpec):
        return model_or_spec
    return permutation_spec(model_or_spec)


def _take(t: torch.Tensor, dim: int, block: int, index: torch.Tensor) -> torch.Tensor:
    """``t`` with dimension ``dim`` reordered by ``index`` in blocks of ``block`` entries."""
    if block == 1:
        return t.index_select(dim, index)
    shape = t.shape
    v = t.reshape(*shape[:dim], shape[dim] // block, block, *shape[dim + 1:])
    return v.index_select(dim, index).reshape(shape)


def _permute(t: torch.Tensor, axes: tuple[Axis | None, ...], perms: Perms,
             skip: int | None = None) -> torch.Tensor:
    for dim, ax in enumerate(axes):
        if ax is not None and dim != skip:
            t = _take(t, dim, ax.block, perms[ax.perm].to(t.device))
    return t


def _units(t: torch.Tensor, dim: int, block: int) -> torch.Tensor:
    """View with the units of dimension ``dim`` (blocks of ``block``) as rows: [n, rest]."""
    shape = t.shape
    v = t.reshape(*shape[:dim], shape[dim] // block, block, *shape[dim + 1:])
    return v.movedim(dim, 0).reshape(shape[dim] // block, -1)


def identity_permutation(model_or_spec: nn.Module | PermutationSpec) -> Perms:
    """Every permutation the identity (``arange(n)``)."""
    spec = _spec(model_or_spec)
    return {p: torch.arange(n) for p, n in spec.sizes.items()}


def random_permutation(model_or_spec: nn.Module | PermutationSpec, seed: int) -> Perms:
    """Independent uniformly random permutations from a generator seeded with ``seed``."""
    spec = _spec(model_or_spec)
    g = torch.Generator().manual_seed(int(seed))
    return {p: torch.randperm(n, generator=g) for p, n in spec.sizes.items()}


def invert_permutation(perms: Mapping[str, torch.Tensor]) -> Perms:
    """The inverse permutations: ``apply(apply(s, P), invert(P)) == s``."""
    return {p: torch.argsort(v) for p, v in perms.items()}


def apply_permutation(model_or_spec: nn.Module | PermutationSpec,
                      state: Mapping[str, torch.Tensor], perms: Mapping[str, torch.Tensor]
                      ) -> dict[str, torch.Tensor]:
    """A new state dict: ``state`` with every permutation in ``perms`` applied to parameters and
    buffers (weights, biases, BatchNorm weight/bias/running_mean/running_var; the
    ``num_batches_tracked`` counters are copied unchanged). The network it describes computes the
    same function as ``state``. Values are only moved, never recomputed (bitwise the same
    numbers). Raises KeyError if ``state``'s keys differ from the model's."""
    spec = _spec(model_or_spec)
    if set(state) != set(spec.axes):
        raise KeyError(f"state dict keys differ from the model's: missing "
                       f"{sorted(set(spec.axes) - set(state))}, unexpected "
                       f"{sorted(set(state) - set(spec.axes))}")
    missing = sorted(set(spec.sizes) - set(perms))
    if missing:
        raise KeyError(f"no permutation given for layers {missing}")
    return {k: _permute(state[k].detach(), spec.axes[k], dict(perms)).clone() for k in spec.axes}


def weight_matching(model_or_spec: nn.Module | PermutationSpec,
                    state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
                    seed: int = 0, max_iter: int = 100, init: Mapping[str, torch.Tensor] | None
                    = None) -> tuple[Perms, dict]:
    """Permutations of B's hidden units that maximise Σ_ℓ ⟨W_ℓ^A, P_ℓ W_ℓ^B P_{ℓ−1}ᵀ⟩.

    Ainsworth et al. (2023), Algorithm 1: coordinate ascent over layers, each step an exact
    linear assignment problem (costs in float64), layers visited in an order drawn from
    ``numpy.random.default_rng(seed)`` in every sweep; a layer's permutation is replaced only when
    the assignment strictly improves its objective, and the loop stops after a sweep that changed
    nothing (``converged``) or after ``max_iter`` sweeps. Only trainable parameters enter the
    objective. Returns ``(perms, info)``: ``perms[name]`` a LongTensor (apply with
    ``apply_permutation(model, state_b, perms)``); ``info`` with ``iterations`` (sweeps run),
    ``converged`` (bool), ``objective`` (final Σ⟨A, P(B)⟩ over the parameters) and ``seconds``.
    """
    from scipy.optimize import linear_sum_assignment  # here: the config check imports this package

    t0 = time.perf_counter()
    spec = _spec(model_or_spec)
    if max_iter < 1:
        raise ValueError(f"max_iter = {max_iter} is not allowed: expected ≥ 1")
    by_perm = {p: [(k, d, b) for k, d, b in lst if k in spec.parameters]
               for p, lst in spec.perm_to_axes().items()}
    used = sorted({k for lst in by_perm.values() for k, _, _ in lst})
    a = {k: state_a[k].detach().to("cpu", torch.float64) for k in used}
    b = {k: state_b[k].detach().to("cpu", torch.float64) for k in used}
    a_units = {(k, d): _units(a[k], d, blk) for lst in by_perm.values() for k, d, blk in lst}
    perms = identity_permutation(spec) if init is None else {p: init[p].cpu().long().clone()
                                                             for p in spec.sizes}
    rng = np.random.default_rng(seed)
    names = list(spec.sizes)
    converged, iterations = not names, 0
    while names and iterations < max_iter:
        iterations += 1
        changed = False
        for i in rng.permutation(len(names)):
            p = names[i]
            n = spec.sizes[p]
            cost = torch.zeros(n, n, dtype=torch.float64)
            for k, d, blk in by_perm[p]:
                wb = _permute(b[k], spec.axes[k], perms, skip=d)
                cost += a_units[(k, d)] @ _units(wb, d, blk).T
            c = cost.numpy()
            rows, cols = linear_sum_assignment(c, maximize=True)
            old = float(c[np.arange(n), perms[p].numpy()].sum())
            new = float(c[rows, cols].sum())
            if new - old > 1e-12 * max(1.0, abs(old)):
                perms[p] = torch.from_numpy(cols.astype(np.int64))
                changed = True
        if not changed:
            converged = True
            break
    objective = 0.0
    for k in used:
        objective += float((a[k] * _permute(b[k], spec.axes[k], perms)).sum())
    return perms, {"iterations": iterations, "converged": converged, "objective": objective,
                   "seconds": time.perf_counter() - t0}


def _param_distance(spec: PermutationSpec, a: Mapping[str, torch.Tensor],
                    b: Mapping[str, torch.Tensor]) -> float:
    total = 0.0
    for k in sorted(spec.parameters):  # a set's order changes with each process's string hashing
        total += float((a[k].detach().double() - b[k].detach().double()).pow(2).sum())
    return total ** 0.5


def align(model_or_spec: nn.Module | PermutationSpec, state_a: Mapping[str, torch.Tensor],
          state_b: Mapping[str, torch.Tensor], seed: int = 0, max_iter: int = 100
          ) -> tuple[dict[str, torch.Tensor], dict]:
    """Permute ``state_b`` to line up with ``state_a`` (weight matching); B's function is kept.

    Returns ``(aligned_b, info)``: ``aligned_b`` a new state dict (parameters and buffers
    permuted); ``info`` as ``weight_matching``'s plus ``perms`` and the Euclidean parameter
    distances ``distance_before`` = ‖θ_A − θ_B‖ and ``distance_after`` = ‖θ_A − P(θ_B)‖.
    """
    spec = _spec(model_or_spec)
    perms, info = weight_matching(spec, state_a, state_b, seed=seed, max_iter=max_iter)
    aligned = apply_permutation(spec, state_b, perms)
    info = {**info, "perms": perms, "distance_before": _param_distance(spec, state_a, state_b),
            "distance_after": _param_distance(spec, state_a, aligned)}
    return aligned, info
