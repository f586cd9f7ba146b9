"""Exact Hessian-vector products of the mean loss over an evaluation set, as a linear operator.

``HessianOperator(model, x, y)`` represents H = ∇²_θ L(θ) with L(θ) = (1/N) Σ_i ℓ(f(x_i; θ), y_i),
the mean cross-entropy over all N samples, with the model in eval mode (BatchNorm uses its running
statistics, so every sample's loss depends on θ only and the mini-batch split changes nothing but
float rounding). Each mini-batch b contributes ∇²(Σ_{i∈b} ℓ_i)/N, so the sum over batches is exactly
H whatever the batch sizes. Vectors are flat float64 tensors over the trainable parameters in
``model.named_parameters()`` order (``names``/``shapes`` give the layout); products run in the
model's dtype (float32 for trained models) and are summed in float64.

Three ways to compute a product (``method``):

- ``"cached"``: reverse-over-reverse with the gradient graph of every mini-batch built once and
  kept (Pearlmutter 1994 via double backward, as PyHessian does for one batch). Each product is then
  one backward pass through the stored graph (~1.5–1.7× a gradient); memory is constant across
  products and grows with N, so it is chosen only when the estimated graph fits ``max_cache_mb``.
- ``"rev-rev"``: forward, ``create_graph`` backward and a second backward per batch and product
  (~2.6× a gradient).
- ``"fwd-rev"``: ``torch.func.jvp`` of ``torch.func.grad`` per batch and product (~2.8×, and
  about twice the memory of rev-rev).

Mini-batches of ~128 samples are faster than one large batch on CPU even when cached (large
temporary buffers are returned to the OS and page-faulted in again on every product).

``"auto"`` picks ``cached`` when it fits, else ``rev-rev`` (the faster recomputing method on CPU in
``bench/bench_hessian.py``). Memory of the recomputing methods is flat in N (one batch at a time).

Example (checked in tests against ``torch.autograd.functional.hessian``)::

    op = HessianOperator(model, x, y, batch_size=256)
    hv = op.matvec(torch.randn(op.dim, dtype=torch.float64))
    lin = op.to_linear_operator()          # scipy LinearOperator, float64
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jvp
from torch.nn import functional as F

from ..params import flatten
from .lanczos import NonFiniteError

METHODS = ("auto", "cached", "rev-rev", "fwd-rev")


def _flat64(tensors) -> torch.Tensor:
    """Tensors as one flat float64 vector (the operator's working precision)."""
    return flatten(tensors, torch.float64)


def _grad(loss: torch.Tensor, leaves: list[torch.Tensor], create_graph: bool):
    return torch.autograd.grad(loss, leaves, create_graph=create_graph, allow_unused=True,
                               materialize_grads=True)


def _grad_dot(g: tuple[torch.Tensor, ...], leaves: list[torch.Tensor], vs: list[torch.Tensor],
              retain_graph: bool) -> tuple[torch.Tensor, ...]:
    """∂(g·v)/∂θ by a second backward pass; gradient entries constant in θ contribute zeros."""
    pairs = [(a, b) for a, b in zip(g, vs, strict=True) if a.requires_grad]
    if not pairs:
        return tuple(torch.zeros_like(p) for p in leaves)
    return torch.autograd.grad([a for a, _ in pairs], leaves, grad_outputs=[b for _, b in pairs],
                               retain_graph=retain_graph, allow_unused=True,
                               materialize_grads=True)


def evaluation_layout(op, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      batch_size: int | None) -> None:
    """What every curvature operator of the mean loss over ``(x, y)`` holds (this module's and
    ``gauss_newton``'s): the model in eval mode, the data and its mini-batches, the trainable
    parameters' names, shapes and flat layout, frozen parameters and buffers (constants of the
    function), the device and dtype, and the product counter ``n_hvp``."""
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x has {x.shape[0]} samples and y {y.shape[0]}; need the same, > 0.")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size}")
    op.model = model.eval()
    op.x, op.y = x, y
    op.n = int(x.shape[0])
    bs = op.n if batch_size is None else min(int(batch_size), op.n)
    op.batches = [(i, min(i + bs, op.n)) for i in range(0, op.n, bs)]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    op.names = [n for n, _ in named]
    op.shapes = [tuple(p.shape) for _, p in named]
    op.numels = [p.numel() for _, p in named]
    op.dtype = named[0][1].dtype
    op.device = named[0][1].device
    op.params = {n: p.detach() for n, p in named}
    op.buffers = dict(model.named_buffers())
    # parameters that are frozen stay constants of the function
    op.frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    op.dim = sum(op.numels)
    op.n_hvp = 0


def saved_mb(build: Callable[[], object], samples: int, n: int) -> float:
    """MiB of the tensors autograd saves while ``build()`` runs on ``samples`` samples,
    extrapolated to ``n`` samples: the memory a cached graph of all ``n`` would keep.

    A tensor saved by several nodes (a layer's input, kept by the convolution and again by the
    double-backward graph) is one allocation: each (address, size) is counted once. Counting
    every saved reference doubled the estimate (3.2 GB against 1.5 GB for the seed study's
    SimpleCNN on 2,048 images, whose cached job measured 0.5 GB more peak memory than the
    recomputing one)."""
    saved: set[tuple[int, int]] = set()

    def pack(t: torch.Tensor):
        saved.add((t.data_ptr(), t.numel() * t.element_size()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        build()
    return sum(size for _, size in saved) / samples * n / 2**20


class HessianOperator:
    """Hessian of the mean cross-entropy of ``model`` over ``(x, y)`` at its current parameters.

    Args:
        model: the network; put in eval mode; its trainable parameters are the coordinates.
        x: inputs [N, ...] on the model's device (kept resident there).
        y: int64 labels [N].
        batch_size: samples per mini-batch (None: all N at once); does not change the operator.
        method: one of ``METHODS`` (see the module docstring).
        max_cache_mb: largest estimated graph memory (MiB) for which ``auto`` uses ``cached``.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 batch_size: int | None = None, method: str = "auto",
                 max_cache_mb: float = 1024.0) -> None:
        if method not in METHODS:
            raise ValueError(f"Unknown HVP method {method!r}. "
                             f"Supported methods are {list(METHODS)}.")
        evaluation_layout(self, model, x, y, batch_size)
        self.n_grad = 0
        self.graph_mb_estimate = self._estimate_graph_mb()
        if method == "auto":
            method = "cached" if self.graph_mb_estimate <= max_cache_mb else "rev-rev"
        self.method = method
        self._graph = None
        self._leaves: list[torch.Tensor] = []

    # ----------------------------------------------------------------------------- internals
    def _batch_loss(self, params: dict, i: int, j: int) -> torch.Tensor:
        """(Σ_{i≤s<j} ℓ_s) / N: the batch's share of the mean loss."""
        out = functional_call(self.model, ({**params, **self.frozen}, self.buffers),
                              (self.x[i:j],))
        return F.cross_entropy(out, self.y[i:j], reduction="sum") / self.n

    def _estimate_graph_mb(self) -> float:
        """MiB of tensors a cached double-backward graph saves, extrapolated from 8 samples."""
        m = min(8, self.n)
        leaves = {n: p.clone().requires_grad_() for n, p in self.params.items()}

        def build():
            loss = self._batch_loss(leaves, 0, m)
            torch.autograd.grad(loss, list(leaves.values()), create_graph=True)

        return saved_mb(build, m, self.n)

    def _unflatten(self, v: torch.Tensor) -> list[torch.Tensor]:
        v = v.to(device=self.device, dtype=self.dtype)
        return [t.view(s) for t, s in zip(torch.split(v, self.numels), self.shapes, strict=True)]

    def _build_graph(self) -> None:
        leaves = {n: p.clone().requires_grad_() for n, p in self.params.items()}
        self._leaves = list(leaves.values())
        self._graph = [_grad(self._batch_loss(leaves, i, j), self._leaves, create_graph=True)
                       for i, j in self.batches]

    # ----------------------------------------------------------------------------- public API
    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v for a flat vector v [dim] (any float dtype); returns float64 [dim] on the device."""
        if v.shape != (self.dim,):
            raise ValueError(f"vector has shape {tuple(v.shape)}; expected ({self.dim},)")
        if self.model.training:
            raise RuntimeError("the model was put back in train mode; the Hessian is defined in "
                               "eval mode (BatchNorm running statistics, no dropout)")
        out = self._matvec(v)
        if not bool(torch.isfinite(out).all()):
            raise NonFiniteError(f"non-finite Hessian-vector product (product {self.n_hvp}); "
                                     "the weights or the evaluation set give inf/NaN curvature")
        return out

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        vs = self._unflatten(v)
        self.n_hvp += 1
        out = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
        if self.method == "cached":
            if self._graph is None:
                self._build_graph()
            for g in self._graph:
                out += _flat64(_grad_dot(g, self._leaves, vs, retain_graph=True))
            return out
        tangent = dict(zip(self.names, vs, strict=True))
        for i, j in self.batches:
            if self.method == "fwd-rev":
                def g(p, i=i, j=j):
                    return grad(lambda q: self._batch_loss(q, i, j))(p)
                _, hv = jvp(g, (self.params,), (tangent,))
                out += _flat64(hv[n] for n in self.names)
            else:
                leaves = {n: p.clone().requires_grad_() for n, p in self.params.items()}
                gr = _grad(self._batch_loss(leaves, i, j), list(leaves.values()), create_graph=True)
                out += _flat64(_grad_dot(gr, list(leaves.values()), vs, retain_graph=False))
        return out

    def loss_and_gradient(self) -> tuple[float, torch.Tensor]:
        """Mean loss and its gradient (flat float64 [dim]) over the evaluation set."""
        self.n_grad += 1
        loss = 0.0
        out = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
        for i, j in self.batches:
            leaves = {n: p.clone().requires_grad_() for n, p in self.params.items()}
            lb = self._batch_loss(leaves, i, j)
            out += _flat64(_grad(lb, list(leaves.values()), create_graph=False))
            loss += float(lb.detach())
        return loss, out

    def loss(self) -> float:
        """Mean loss over the evaluation set (eval mode)."""
        with torch.no_grad():
            return math.fsum(float(self._batch_loss(self.params, i, j)) for i, j in self.batches)

    def release(self) -> None:
        """Free a cached graph (it is rebuilt on the next product)."""
        self._graph, self._leaves = None, []

    def to_linear_operator(self):
        """A ``scipy.sparse.linalg.LinearOperator`` (float64 numpy vectors) for any scipy solver."""
        from scipy.sparse.linalg import LinearOperator

        def mv(v: np.ndarray) -> np.ndarray:
            t = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).reshape(-1))
            return self.matvec(t).cpu().numpy()

        return LinearOperator((self.dim, self.dim), matvec=mv, rmatvec=mv, dtype=np.float64)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return self.matvec(v)


MatVec = Callable[[torch.Tensor], torch.Tensor]


def dense_matvec(matrix: torch.Tensor) -> MatVec:
    """A matvec for a dense symmetric matrix (for tests and examples), float64."""
    a = matrix.to(torch.float64)
    return lambda v: a @ v.to(a)
