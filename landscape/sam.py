"""Sharpness-aware minimisation: SAM (Foret et al. 2021) and adaptive SAM (Kwon et al. 2021) as an
optimiser wrapped around SGD with momentum, the way the reference implementation (davda54/sam)
and its users train.

One step on a mini-batch B with base optimiser step `base`:

1. g = ∇L_B(w) (the first forward/backward; its loss is the step's reported loss);
2. ε = ρ · T² g / ‖T g‖ with T = I (SAM) or T = diag(|w|) (ASAM): the ascent to the worst point
   of the ρ-ball (SAM) or of the ball scaled by |w| (ASAM, invariant to a layer's rescaling);
3. g' = ∇L_B(w + ε) (the second forward/backward);
4. w ← w, then ``base`` steps with g' (momentum and weight decay as for SGD).

BatchNorm running statistics are updated on the first pass only: the second pass runs with the
BN layers' momentum set to 0, as davda54/sam's users found necessary (the statistics of the
perturbed weights must not leak into the model). Weights that get no gradient are not moved.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

KINDS = ("sam", "asam")


class SAM:
    """The two-pass optimiser: ``first_step`` moves to w + ε from the gradients in ``.grad``,
    ``second_step`` returns to w and lets the base optimiser step with the new gradients.
    ``param_groups``, ``state_dict``, ``load_state_dict`` and ``zero_grad`` are the base
    optimiser's (the learning-rate schedule and checkpoints see an SGD optimiser)."""

    def __init__(self, params, base: torch.optim.Optimizer, rho: float, adaptive: bool):
        if not rho > 0:
            raise ValueError(f"rho = {rho} is not allowed: expected > 0")
        self.base = base
        self.rho, self.adaptive = float(rho), bool(adaptive)
        self.param_groups = base.param_groups
        self._eps: dict[torch.Tensor, torch.Tensor] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return self.base.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.base.load_state_dict(state)

    @torch.no_grad()
    def first_step(self) -> None:
        """w ← w + ε (ε kept to undo it)."""
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        scaled = [(p.abs() * p.grad if self.adaptive else p.grad) for p in params]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s)
                                                     for s in scaled])) if scaled else 0.0
        scale = self.rho / (float(norm) + 1e-12)
        self._eps = {}
        for p, s in zip(params, scaled, strict=True):
            e = (p.abs() * s if self.adaptive else s) * scale  # T² g · ρ / ‖T g‖
            p.add_(e)
            self._eps[p] = e

    @torch.no_grad()
    def second_step(self) -> None:
        """w ← w − ε, then the base optimiser's step with the gradients at w + ε."""
        for p, e in self._eps.items():
            p.sub_(e)
        self._eps = {}
        self.base.step()


@contextmanager
def frozen_batchnorm_statistics(model: nn.Module):
    """BatchNorm layers keep their running statistics during the block (momentum 0)."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(layers, saved, strict=True):
            m.momentum = mom
