"""Generalised Gauss–Newton and empirical Fisher of the mean cross-entropy, as matvec operators.

For L(θ) = (1/N) Σ_i ℓ(f(x_i; θ), y_i), f the logits and ℓ the cross-entropy, the Hessian splits as

    H = G + R,   G = (1/N) Σ_i J_iᵀ H_ℓ,i J_i,   R = (1/N) Σ_i Σ_c (∂ℓ_i/∂f_c) ∇²_θ f_c(x_i)

with J_i = ∂f(x_i)/∂θ and H_ℓ,i = diag(p_i) − p_i p_iᵀ (p_i the softmax), the Hessian of ℓ in the
logits (Schraudolph 2002; Martens 2020, "New insights and perspectives on the natural gradient
method"). The generalised Gauss–Newton G is positive semi-definite and, for cross-entropy, equals
the Fisher information of the model's own predictive distribution (the "true" Fisher, whose
Monte-Carlo estimate samples labels from p). The *empirical* Fisher uses the observed labels:

    F = (1/N) Σ_i g_i g_iᵀ,   g_i = ∇_θ ℓ(f(x_i; θ), y_i) = J_iᵀ (p_i − e_{y_i}),

also positive semi-definite, and not a curvature matrix in general (Kunstner, Balles & Hennig 2019,
"Limitations of the empirical Fisher approximation").

Products, per mini-batch (the model in eval mode, as for ``HessianOperator``): G v = Jᵀ(H_ℓ (J v))
and F v = Σ_i g_i (g_iᵀ v) = Jᵀ((p − e_y) ⊙ ((p − e_y)·(J v))), with no per-sample gradient
stored. Cached (the estimated graphs fit ``max_cache_mb``, as for ``HessianOperator``): each
mini-batch's logits, its pull-back u ↦ Jᵀu (``torch.func.vjp``) and the push-forward v ↦ J v
(the vjp of that linear pull-back) are built once and reused by every product, which then costs
a double-backward and a backward pass (about half the recomputing products' time,
bench/bench_matrices.py); otherwise every product recomputes a forward-mode product
(``torch.func.jvp``) and a reverse-mode one. Both agree to float rounding. Vectors are flat
float64 over the trainable parameters in ``named_parameters()`` order, as ``HessianOperator``'s,
so Lanczos, the trace estimators and SLQ apply unchanged; the tests check both against dense
matrices.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torch.func import functional_call, jvp, vjp
from torch.nn import functional as F

from ..params import flatten
from .lanczos import NonFiniteError
from .operator import evaluation_layout, saved_mb

KINDS = {"ggn": "generalised Gauss–Newton", "ef": "empirical Fisher"}


class GaussNewtonOperator:
    """G (``kind="ggn"``) or F (``kind="ef"``) of the mean cross-entropy of ``model`` over
    ``(x, y)`` at its current parameters, with ``HessianOperator``'s interface (``matvec``,
    ``dim``, ``device``, ``n_hvp`` counting products, ``loss``, ``release``)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str = "ggn",
                 batch_size: int | None = None, max_cache_mb: float = 1024.0) -> None:
        if kind not in KINDS:
            raise ValueError(f"Unknown curvature matrix {kind!r}. Supported are {list(KINDS)}.")
        self.kind = kind
        evaluation_layout(self, model, x, y, batch_size)
        self._maps: dict[tuple[int, int], tuple] = {}
        self.graph_mb_estimate = self._estimate_graph_mb()
        self.cached = self.graph_mb_estimate <= max_cache_mb

    def _estimate_graph_mb(self) -> float:
        """MiB of tensors the cached maps of all mini-batches save, extrapolated from 8 samples.
        torch.func refuses saved-tensor hooks: the same graphs are built with plain autograd
        (the forward, and the backward differentiable in its cotangent)."""
        m = min(8, self.n)
        leaves = {n: p.clone().requires_grad_() for n, p in self.params.items()}

        def build():
            with torch.enable_grad():
                logits = self._logits(leaves, 0, m)
                u = torch.zeros_like(logits, requires_grad=True)
                torch.autograd.grad(logits, list(leaves.values()), u, create_graph=True)

        return saved_mb(build, m, self.n)

    def _linear_maps(self, i: int, j: int) -> tuple:
        """(logits, u ↦ Jᵀu, v ↦ J v) of the mini-batch [i, j), built once and kept."""
        if (i, j) in self._maps:
            return self._maps[(i, j)]

        def f(p):
            return self._logits(p, i, j)

        with torch.enable_grad():
            logits, pull = vjp(f, self.params)
            _, push = vjp(pull, torch.zeros_like(logits))  # pull is linear: its vjp is J
        self._maps[(i, j)] = (logits.detach(), pull, push)
        return self._maps[(i, j)]

    def _logits(self, params: dict, i: int, j: int) -> torch.Tensor:
        return functional_call(self.model, ({**params, **self.frozen}, self.buffers),
                               (self.x[i:j],))

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """G v or F v for a flat vector v [dim]; float64 [dim] on the device."""
        if v.shape != (self.dim,):
            raise ValueError(f"vector has shape {tuple(v.shape)}; expected ({self.dim},)")
        if self.model.training:
            raise RuntimeError("the model was put back in train mode; the matrix is defined in "
                               "eval mode (BatchNorm running statistics, no dropout)")
        vv = v.to(device=self.device, dtype=self.dtype)
        tangent = {n: t.view(s) for n, t, s in zip(self.names, torch.split(vv, self.numels),
                                                   self.shapes, strict=True)}
        self.n_hvp += 1
        out = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
        with torch.no_grad():  # torch.func builds its own graphs: no autograd record around them
            for i, j in self.batches:
                out += self._batch_product(tangent, i, j)
        if not bool(torch.isfinite(out).all()):
            raise NonFiniteError(f"non-finite {KINDS[self.kind]}-vector product (product "
                                 f"{self.n_hvp}); the weights or the evaluation set give inf/NaN")
        return out

    def _batch_product(self, tangent: dict, i: int, j: int) -> torch.Tensor:
        """This mini-batch's share of the product (already divided by N), flat float64."""
        def f(p):
            return self._logits(p, i, j)

        if self.cached:
            logits, pull, push = self._linear_maps(i, j)
            (jv,) = push((tangent,))
        else:
            with warnings.catch_warnings():  # torch's forward-mode AD loads its decompositions
                warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated")  # once
                logits, jv = jvp(f, (self.params,), (tangent,))
            _, pull = vjp(f, self.params)
        p = torch.softmax(logits, dim=-1)
        if self.kind == "ggn":
            u = p * jv - p * (p * jv).sum(-1, keepdim=True)  # H_ℓ (J v), per sample
        else:
            r = p - F.one_hot(self.y[i:j], p.shape[-1]).to(p.dtype)  # ∂ℓ_i/∂f_i
            u = r * (r * jv).sum(-1, keepdim=True)  # r_i (g_iᵀ v)
        (back,) = pull(u / self.n)
        return flatten([back[n] for n in self.names], torch.float64)

    def loss(self) -> float:
        """Mean loss over the evaluation set (eval mode)."""
        with torch.no_grad():
            return math.fsum(float(F.cross_entropy(self._logits(self.params, i, j),
                                                   self.y[i:j], reduction="sum")) / self.n
                             for i, j in self.batches)

    def release(self) -> None:
        """Free the cached maps (they are rebuilt on the next product)."""
        self._maps.clear()

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return self.matvec(v)
