"""Parameter sets as lists of tensors: flatten, add/scale, per-filter norms, in-place writes.

A *parameter set* is a ``list[torch.Tensor]`` in the order of ``model.named_parameters()``
(trainable parameters only; BatchNorm running statistics are buffers and never part of it).
Directions, trajectory snapshots and the weights themselves all use this form, so they combine
with plain arithmetic and are written into a model in place without copying the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

ParamSet = list[torch.Tensor]


def parameters(model: nn.Module) -> list[nn.Parameter]:
    """The model's trainable parameters (the live tensors), in ``named_parameters()`` order."""
    return [p for p in model.parameters() if p.requires_grad]


def parameter_names(model: nn.Module) -> list[str]:
    """Names of the trainable parameters, in the order of ``parameters(model)``."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def buffers(model: nn.Module) -> list[torch.Tensor]:
    """The model's buffers (e.g. BatchNorm running mean/var/count), live tensors."""
    return list(model.buffers())


def detached(tensors: Sequence[torch.Tensor]) -> ParamSet:
    """Detached copies (same device, dtype and memory format)."""
    return [t.detach().clone() for t in tensors]


def from_state(state: dict[str, torch.Tensor], model: nn.Module) -> ParamSet:
    """The parameter entries of ``state`` (a state dict of ``model``'s architecture), in the
    model's parameter order; buffers are left out. Raises KeyError naming a missing entry."""
    missing = [n for n in parameter_names(model) if n not in state]
    if missing:
        raise KeyError(f"state dict lacks parameters {missing}; it is not a state of this model "
                       f"(has {sorted(state)[:6]}...)")
    return [state[n].detach() for n in parameter_names(model)]


def buffers_from_state(state: dict[str, torch.Tensor], model: nn.Module) -> list[torch.Tensor]:
    """The buffer entries of ``state`` in ``model.named_buffers()`` order."""
    names = [n for n, _ in model.named_buffers()]
    missing = [n for n in names if n not in state]
    if missing:
        raise KeyError(f"state dict lacks buffers {missing}")
    return [state[n].detach() for n in names]


def flatten(tensors: Iterable[torch.Tensor], dtype: torch.dtype | None = None) -> torch.Tensor:
    """Concatenate tensors into one vector [Σ numel] (logical order, any memory format), in
    ``dtype`` when given (each piece cast before concatenation), else in the tensors' dtype."""
    return torch.cat([t.reshape(-1) if dtype is None else t.reshape(-1).to(dtype)
                      for t in tensors])


def unflatten(vec: torch.Tensor, like: Sequence[torch.Tensor]) -> ParamSet:
    """Split vector ``vec`` into tensors shaped like ``like`` (contiguous, vec's dtype)."""
    n = sum(t.numel() for t in like)
    if vec.numel() != n:
        raise ValueError(f"vector has {vec.numel()} entries but the parameter set has {n}")
    out, i = [], 0
    for t in like:
        out.append(vec[i:i + t.numel()].reshape(t.shape).clone())
        i += t.numel()
    return out


def add(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], alpha: float = 1.0) -> ParamSet:
    """a + alpha·b, tensor by tensor."""
    _check_pair(a, b)
    return [x + alpha * y for x, y in zip(a, b, strict=True)]


def sub(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> ParamSet:
    """a − b, tensor by tensor."""
    _check_pair(a, b)
    return [x - y for x, y in zip(a, b, strict=True)]


def scale(a: Sequence[torch.Tensor], s: float) -> ParamSet:
    """s·a."""
    return [s * x for x in a]


def dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """Euclidean inner product ⟨a, b⟩ over all entries, accumulated in float64."""
    _check_pair(a, b)
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b, strict=True)))


def norm(a: Sequence[torch.Tensor]) -> float:
    """Euclidean norm over all entries (float64 accumulation)."""
    return dot(a, a) ** 0.5


def filter_norms(t: torch.Tensor) -> torch.Tensor:
    """Norm of each slice along dim 0 (shape [t.shape[0]]).

    For a conv weight [out, in, k, k] this is the norm of each output filter; for a linear weight
    [out, in] the norm of each neuron's incoming weights (a row); for a 1-D tensor the absolute
    value of each entry. These are the "filters" of Li et al. (2018), Sec. 4.
    """
    if t.dim() == 0:
        return t.abs().reshape(1)
    return t.reshape(t.shape[0], -1).norm(dim=1)


@torch.no_grad()
def write_(targets: Sequence[torch.Tensor], base: Sequence[torch.Tensor],
           terms: Sequence[tuple[Sequence[torch.Tensor], float]] = ()) -> None:
    """In place: ``targets ← base + Σ c_k·d_k`` for ``terms = [(d_k, c_k), ...]``.

    Each value is computed from ``base`` afresh (never from the previous content of
    ``targets``), in a fixed order of operations, so the result depends only on the arguments.
    With every c_k = 0 the result equals ``base`` bitwise.
    """
    for i, t in enumerate(targets):
        t.copy_(base[i])
        for d, c in terms:
            if c != 0.0:
                t.add_(d[i], alpha=c)


def bitwise_equal(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> bool:
    """True when every pair of tensors has identical shape, dtype and bytes (so −0.0 ≠ 0.0 and
    NaN payloads count)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        xc, yc = x.detach().reshape(-1), y.detach().reshape(-1)
        if xc.numel() and not torch.equal(xc.view(torch.uint8), yc.view(torch.uint8)):
            return False
    return True


def _check_pair(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> None:
    if len(a) != len(b):
        raise ValueError(f"parameter sets differ in length: {len(a)} vs {len(b)} tensors")
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x.shape != y.shape:
            raise ValueError(f"parameter {i}: shapes differ, {tuple(x.shape)} vs {tuple(y.shape)}")
