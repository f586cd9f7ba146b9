"""Worst-case and average-case sharpness in a box around the weights.

Both measures look at the loss L(θ + δ) (mean cross-entropy over given ``(x, y)``, model in eval
mode, so BatchNorm uses the checkpoint's running statistics and is *not* re-estimated) for δ in a
box |δ_i| ≤ b_i around the trained weights θ (every trainable entry, biases included):

* **ε-sharpness** (Keskar et al. 2017, "On large-batch training for deep learning: generalization
  gap and sharp minima", Sec. 2.2.1, Metric 2.1, full space, A = I): the box
  b_i = ε(|θ_i| + 1) and the value ``(max_δ L(θ+δ) − L(θ)) / (1 + L(θ)) × 100`` (percent).
  The ``+ 1`` makes it depend on the scale of the weights, so it is *not* invariant to the
  function-preserving ReLU rescalings of Dinh et al. (2017).
* **adaptive sharpness** (Kwon et al. 2021, "ASAM", with the normalisation T_θ = |θ|; in the
  ℓ∞ form of Andriushchenko et al. 2023, "A modern look at the relationship between sharpness and
  generalization", Sec. 3): the box b_i = ρ|θ_i|, worst case
  ``max_δ L(θ+δ) − L(θ)`` and average case ``E_δ L(θ+δ) − L(θ)`` with δ = ρ|θ| ⊙ z,
  z ~ N(0, I) (Andriushchenko et al.'s Gaussian average case, not confined to the box) or
  z ~ U[−1, 1]ⁿ (uniform in the box). Both are in nats. Rescaling any entry of θ by a > 0 rescales
  its box side by a, so these are invariant to the rescalings of Dinh et al.

  One difference from Andriushchenko et al., kept on purpose: their worst case is
  *m-sharpness*, the maximum searched separately on each batch of m training samples and the
  per-batch maxima averaged; ours searches one δ for the whole evaluation set,
  max_δ mean_b L_b(θ+δ). Since a maximum of a mean is at most the mean of the maxima, our value
  is at most theirs for the same box and search (with one batch of all samples, m = n, the two
  are equal); numbers are comparable with theirs only at m = n.

The maximum is searched by projected sign-gradient ascent (the ℓ∞ PGD of Madry et al. 2018, with
steps scaled by each entry's box side; Keskar et al. used L-BFGS-B, Andriushchenko et al.
Auto-PGD)::

    δ_0 = 0 (or uniform in the box),  δ_{k+1} = clip(δ_k + η·b ⊙ sign ∇L(θ + δ_k), −b, b)

for ``steps`` gradient evaluations, followed by one evaluation of the last iterate; the largest
loss over all iterates and δ = 0 (so the value is ≥ 0) is the reported maximum. It is a *lower*
bound on the true maximum. The loss of the best iterate is taken from
``landscape.evaluate.evaluate`` (inference mode, the code path that measured the checkpoint;
re-evaluated unless it is the last iterate or δ = 0), so ``max_loss`` and ``base_loss`` are
numbers of the same function. Cost: ``steps`` gradient passes and 2-3 evaluations.

Perturbations are written into the model's own parameters (``landscape.evaluator.PointEvaluator``,
no model copy); the weights and buffers are restored and checked bitwise on return.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..directions import derived_seed, gaussian_like
from ..evaluator import PointEvaluator
from ..params import ParamSet, parameters, write_

DISTRIBUTIONS = ("normal", "uniform")


def loss_and_grad(model: nn.Module, params: Sequence[torch.Tensor], x: torch.Tensor,
                  y: torch.Tensor, batch_size: int = 256) -> tuple[float, ParamSet]:
    """Mean cross-entropy over ``(x, y)`` (eval mode; float64 sum of per-sample losses over
    mini-batches) and its gradient with respect to ``params`` (the model's live parameters, at
    whatever values they hold), as a parameter set in their dtype and memory format."""
    model.eval()
    if x.is_inference() or y.is_inference():  # made under inference_mode: autograd refuses them
        x, y = x.clone(), y.clone()
    n = x.shape[0]
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    grads = [torch.zeros_like(p) for p in params]
    for i in range(0, n, batch_size):
        loss = F.cross_entropy(model(x[i:i + batch_size]), y[i:i + batch_size], reduction="sum")
        gs = torch.autograd.grad(loss, list(params), allow_unused=True, materialize_grads=True)
        total += loss.detach().double()
        for g, gi in zip(grads, gs, strict=True):
            g.add_(gi)
    return float(total) / n, [g.div_(n) for g in grads]


def box_ascent(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               half_width: Sequence[torch.Tensor], steps: int = 10, step_size: float = 0.25,
               random_start: bool = False, seed: int = 0, batch_size: int = 256,
               return_delta: bool = False) -> dict:
    """Largest loss found in the box |δ_i| ≤ b_i (``half_width`` b, shaped like the trainable
    parameters) by projected sign-gradient ascent (module docstring).

    ``steps``: gradient evaluations (≥ 0). ``step_size`` η: step per iteration as a fraction of
    each entry's box side (η = 0.25 crosses the box in 8 steps). ``random_start``: δ_0 uniform in
    the box from a CPU generator seeded with ``seed`` (else δ_0 = 0).

    Returns a dict: ``base_loss`` L(θ) and ``max_loss`` (nats, via ``evaluate``), ``increase``
    (max_loss − base_loss ≥ 0), ``best_step`` (index of the best iterate, 0 = δ_0,
    ``steps`` = the last), ``history`` (loss of every iterate, length steps + 1; from the
    gradient passes, the last from ``evaluate``), ``steps``, ``step_size``, ``grad_evals``,
    ``evaluations`` (passes of ``evaluate`` over the set: the base, the last iterate and,
    unless the best iterate is the last one or δ = 0, that iterate again; 2 or 3),
    ``inside_box`` (every entry of every iterate satisfied |δ_i| ≤ b_i), ``max_violation``
    (max over iterates and entries of |δ_i| − b_i; ≤ 0 inside), ``delta_fill`` (max |δ_i|/b_i
    of the best iterate over entries with b_i > 0) and, with ``return_delta``, ``delta`` (the
    best δ, detached parameter set). The model is restored bitwise.
    """
    if steps < 0:
        raise ValueError(f"steps = {steps} is not allowed: expected ≥ 0")
    if not step_size > 0:
        raise ValueError(f"step_size = {step_size} is not allowed: expected > 0")
    if x.is_inference() or y.is_inference():
        x, y = x.clone(), y.clone()
    x_eval = {"loss": (x, y)}
    with PointEvaluator(model, x_eval, batch_size) as ev:
        b = ev.adopt(half_width)
        if any(bool((t < 0).any()) or not bool(torch.isfinite(t).all()) for t in b):
            raise ValueError("box half-widths must be finite and ≥ 0")
        base_loss = ev.at()["loss"][0]
        theta = [p.detach().clone() for p in ev.params]  # θ, written by ev.at() above
        if random_start:
            g = torch.Generator().manual_seed(int(seed))
            u = [torch.rand(t.shape, generator=g, dtype=torch.float32) * 2 - 1 for t in b]
            delta = [bi * ui.to(bi.device, bi.dtype) for bi, ui in zip(b, u, strict=True)]
        else:
            delta = [torch.zeros_like(bi) for bi in b]
        best, best_loss, best_step = [d.clone() for d in delta], math.nan, 0
        history: list[float] = []
        violation = -math.inf

        def check(ds: Sequence[torch.Tensor]) -> float:
            return max(float((d.abs() - bi).max()) if d.numel() else -math.inf
                       for d, bi in zip(ds, b, strict=True))

        for k in range(steps + 1):
            violation = max(violation, check(delta))
            write_(ev.params, theta, [(delta, 1.0)])
            if k < steps:
                loss, grad = loss_and_grad(model, ev.params, x, y, batch_size)
            else:
                loss, grad = ev.at(terms=[(delta, 1.0)])["loss"][0], None
            history.append(loss)
            if k == 0 or loss > best_loss:  # a NaN loss never becomes the best
                best_loss, best_step = loss, k
                for bd, d in zip(best, delta, strict=True):
                    bd.copy_(d)
            if grad is not None:
                with torch.no_grad():
                    for d, gi, bi in zip(delta, grad, b, strict=True):
                        d.add_(step_size * bi * torch.sign(gi))
                        torch.minimum(d, bi, out=d)
                        torch.maximum(d, -bi, out=d)
        evaluations = 2  # the base and the last iterate
        if best_step == steps:  # the last iterate: its loss already came from ev.at
            max_loss = history[-1]
        elif best_step == 0 and not random_start:  # δ = 0
            max_loss = base_loss
        else:
            max_loss = ev.at(terms=[(best, 1.0)])["loss"][0]
            evaluations += 1
        fill = max((float((d.abs() / bi)[bi > 0].max()) for d, bi in zip(best, b, strict=True)
                    if bool((bi > 0).any())), default=0.0)
        out = {"base_loss": base_loss, "max_loss": max(max_loss, base_loss),
               "increase": max(max_loss, base_loss) - base_loss, "best_step": best_step,
               "history": history, "steps": steps, "step_size": float(step_size),
               "grad_evals": steps, "evaluations": evaluations, "inside_box": violation <= 0.0,
               "max_violation": violation, "delta_fill": fill}
        if return_delta:
            out["delta"] = [d.detach().clone() for d in best]
    return out


def epsilon_box(weights: Sequence[torch.Tensor], epsilon: float) -> ParamSet:
    """Keskar et al.'s box half-widths ε(|θ_i| + 1)."""
    if not epsilon >= 0:
        raise ValueError(f"epsilon = {epsilon} is not allowed: expected ε ≥ 0")
    return [epsilon * (w.detach().abs() + 1.0) for w in weights]


def adaptive_box(weights: Sequence[torch.Tensor], rho: float) -> ParamSet:
    """The adaptive box half-widths ρ|θ_i|."""
    if not rho >= 0:
        raise ValueError(f"rho = {rho} is not allowed: expected ρ ≥ 0")
    return [rho * w.detach().abs() for w in weights]


def epsilon_sharpness(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      epsilon: float = 1e-3, steps: int = 10, step_size: float = 0.25,
                      random_start: bool = False, seed: int = 0, batch_size: int = 256,
                      return_delta: bool = False) -> dict:
    """ε-sharpness of Keskar et al. (2017): ``(max_{|δ_i| ≤ ε(|θ_i|+1)} L(θ+δ) − L(θ)) /
    (1 + L(θ)) × 100`` on ``(x, y)`` (x: [N, 1, 28, 28] or any model input, y: [N] int64).

    Returns ``box_ascent``'s dict plus ``value`` (percent, ≥ 0; exactly 0 at ε = 0) and
    ``epsilon``. Keskar et al. report ε = 1e-3 and 5e-4.
    """
    res = box_ascent(model, x, y, epsilon_box(parameters(model), epsilon), steps, step_size,
                     random_start, seed, batch_size, return_delta)
    res["value"] = 100.0 * res["increase"] / (1.0 + res["base_loss"])
    res["epsilon"] = float(epsilon)
    return res


def adaptive_sharpness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rho: float = 0.01,
                       steps: int = 10, step_size: float = 0.25, random_start: bool = False,
                       seed: int = 0, batch_size: int = 256, return_delta: bool = False) -> dict:
    """Worst-case adaptive sharpness ``max_{|δ_i| ≤ ρ|θ_i|} L(θ+δ) − L(θ)`` (nats) on
    ``(x, y)`` (Kwon et al. 2021; Andriushchenko et al. 2023, ℓ∞ adaptive, worst case).

    Returns ``box_ascent``'s dict plus ``value`` (= ``increase``, nats, ≥ 0) and ``rho``.
    """
    res = box_ascent(model, x, y, adaptive_box(parameters(model), rho), steps, step_size,
                     random_start, seed, batch_size, return_delta)
    res["value"] = res["increase"]
    res["rho"] = float(rho)
    return res


def adaptive_sharpness_average(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                               rho: float = 0.01, draws: int = 10, seed: int = 0,
                               distribution: str = "normal", batch_size: int = 256) -> dict:
    """Average-case adaptive sharpness ``E_δ L(θ+δ) − L(θ)`` (nats) on ``(x, y)``.

    δ = ρ|θ| ⊙ z with z ~ N(0, I) (``normal``: Andriushchenko et al. 2023's average case, std
    ρ|θ_i| per entry) or z ~ U[−1, 1]ⁿ (``uniform``: uniform in the adaptive box). Draw k uses
    the CPU generator seeded with ``derived_seed(seed, "adaptive-average:k")``. The expectation
    is the mean over ``draws`` draws.

    Returns a dict: ``value`` (mean loss − base loss, nats), ``se`` (standard error of the mean
    over draws; NaN for one draw), ``base_loss``, ``losses`` (per draw), ``rho``, ``draws``,
    ``distribution``. The model is restored bitwise.
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"Unsupported distribution {distribution!r}. Supported distributions "
                         f"are {list(DISTRIBUTIONS)}.")
    if draws < 1:
        raise ValueError(f"draws = {draws} is not allowed: expected ≥ 1")
    box = adaptive_box(parameters(model), rho)
    losses = []
    with PointEvaluator(model, {"loss": (x, y)}, batch_size) as ev:
        base_loss = ev.at()["loss"][0]
        scale = ev.adopt(box)
        for k in range(draws):
            s = derived_seed(seed, f"adaptive-average:{k}")
            if distribution == "normal":
                z = gaussian_like(scale, s)
            else:
                g = torch.Generator().manual_seed(s)
                z = [(torch.rand(t.shape, generator=g) * 2 - 1).to(t.device, t.dtype)
                     for t in scale]
            delta = ev.adopt([si * zi for si, zi in zip(scale, z, strict=True)])
            losses.append(ev.at(terms=[(delta, 1.0)])["loss"][0])
    mean = sum(losses) / draws
    se = (math.sqrt(sum((v - mean) ** 2 for v in losses) / (draws - 1) / draws)
          if draws > 1 else math.nan)
    return {"value": mean - base_loss, "se": se, "base_loss": base_loss, "losses": losses,
            "rho": float(rho), "draws": draws, "distribution": distribution}
