"""PAC-Bayes flatness: the largest Gaussian weight noise the training accuracy tolerates.

Jiang, Neyshabur, Mobahi, Krishnan & Bengio (2020), "Fantastic generalization measures and where
to find them", Sec. 3 / App. C ("sharpness-based" PAC-Bayes measures), estimate for a trained
network θ the largest σ such that the mean training accuracy of θ + u drops by at most a
``deviation`` d (0.1 in the paper) from the clean accuracy a₀, by bisection on σ with Monte-Carlo
estimates of the accuracy, and report the flatness measure 1/σ². Two noise models:

* ``pacbayes.flatness`` (``magnitude_aware=False``): u_i ~ N(0, σ²) for every trainable entry;
  σ in weight units (changes under the function-preserving rescalings of Dinh et al. 2017).
* ``pacbayes.mag.flatness`` (``magnitude_aware=True``): u_i ~ N(0, σ²θ_i² + ε'²) with
  ε' = ``mag_eps`` = 1e-3 as in the paper; the variance form is the one the paper's KL term for
  this posterior uses (the std is √(σ²θ_i² + ε'²), which is ≈ σ|θ_i| + ε' up to ε' and equals
  σ|θ_i| for ε' = 0). σ is a fraction of each weight's magnitude, so with ε' = 0 the measure is
  invariant to those rescalings.

The search (``bisect_sigma``) is a plain bisection on a deterministic accuracy function: with
``acc(σ)`` the mean accuracy, σ is "acceptable" when a₀ − acc(σ) ≤ d (a signed drop; the
reference code of Jiang et al. uses |a₀ − acc(σ)|). Starting from [lo, hi] = [0, 2] (the paper's
range), it checks that hi is not acceptable, then halves the bracket, keeping lo acceptable and hi
not, until hi − lo ≤ rtol·hi (or a mid-point's drop is within ``deviation_tol`` of d, the
reference code's early stop with tolerance 1e-2; off by default). The Monte-Carlo draws are fixed
across σ (common random numbers: draw k is σ-scaled noise from one seeded z_k), so ``acc`` is a
deterministic, in practice monotone function of σ and the bisection is consistent.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..directions import derived_seed, gaussian_like
from ..evaluator import PointEvaluator
from ..params import detached

MAG_EPS = 1e-3  # ε' of Jiang et al. (2020) for the magnitude-aware perturbation


def bisect_sigma(acc_fn: Callable[[float], float], acc0: float | None = None,
                 deviation: float = 0.1, lo: float = 0.0, hi: float = 2.0, rtol: float = 0.01,
                 max_iter: int = 30, deviation_tol: float = 0.0) -> dict:
    """Largest σ in [lo, hi] with ``acc0 − acc_fn(σ) ≤ deviation``, by bisection.

    ``acc_fn(σ)``: mean accuracy (fraction) under noise level σ, assumed non-increasing in σ.
    ``acc0``: clean accuracy (default ``acc_fn(0.0)``). ``rtol``: stop when the bracket
    hi − lo ≤ rtol·hi. ``max_iter``: at most this many mid-point evaluations.
    ``deviation_tol`` > 0: also stop at a mid-point whose drop is within it of ``deviation``.

    Returns a dict: ``sigma`` (the estimate: the bracket's mid-point, or the early-stop point),
    ``flatness`` (1/σ²), ``lo`` (largest σ seen acceptable), ``hi`` (smallest seen not
    acceptable), ``acc0``, ``target`` (acc0 − deviation), ``acc_lo``/``acc_hi`` (acc_fn there;
    ``acc_lo`` = acc0 at σ = 0), ``iterations`` (mid-points), ``evaluations`` (calls of
    ``acc_fn``), ``bracketed`` (False when even hi is acceptable — then sigma = hi, a lower
    bound on the true σ — or lo is not — then sigma = lo), ``converged`` (bracket within
    tolerance or early stop), ``history`` (list of (σ, acc) in evaluation order).
    """
    if not 0.0 <= lo < hi or not math.isfinite(hi):
        raise ValueError(f"[lo, hi] = [{lo}, {hi}] is not allowed: expected 0 ≤ lo < hi < ∞")
    if not deviation > 0:
        raise ValueError(f"deviation = {deviation} is not allowed: expected > 0")
    if not rtol > 0:
        raise ValueError(f"rtol = {rtol} is not allowed: expected > 0")
    history: list[tuple[float, float]] = []

    def acc(s: float) -> float:
        a = float(acc_fn(float(s)))
        history.append((float(s), a))
        return a

    a0 = acc(0.0) if acc0 is None else float(acc0)
    target = a0 - deviation
    out = {"acc0": a0, "target": target, "deviation": float(deviation), "rtol": float(rtol)}

    def result(sigma: float, lo_: float, hi_: float, acc_lo: float, acc_hi: float,
               bracketed: bool, converged: bool, iterations: int) -> dict:
        return {**out, "sigma": sigma, "flatness": 1.0 / sigma**2 if sigma > 0 else math.inf,
                "lo": lo_, "hi": hi_, "acc_lo": acc_lo, "acc_hi": acc_hi,
                "iterations": iterations, "evaluations": len(history), "bracketed": bracketed,
                "converged": converged, "history": history}

    acc_hi = acc(hi)
    if acc_hi >= target:
        return result(hi, hi, math.inf, acc_hi, math.nan, False, False, 0)
    acc_lo = a0 if lo == 0.0 else acc(lo)
    if acc_lo < target:
        return result(lo, 0.0, lo, math.nan, acc_lo, False, False, 0)
    it = 0
    while hi - lo > rtol * hi and it < max_iter:
        mid = 0.5 * (lo + hi)
        a = acc(mid)
        it += 1
        if deviation_tol > 0 and abs((a0 - a) - deviation) <= deviation_tol:
            return result(mid, mid, mid, a, a, True, True, it)
        if a >= target:
            lo, acc_lo = mid, a
        else:
            hi, acc_hi = mid, a
    return result(0.5 * (lo + hi), lo, hi, acc_lo, acc_hi, True, hi - lo <= rtol * hi, it)


def pacbayes_seed(seed: int, draw: int) -> int:
    """Seed of Monte-Carlo draw ``draw`` of the PAC-Bayes search under the study seed."""
    return derived_seed(seed, f"pacbayes:{int(draw)}")


def pacbayes_flatness(evaluator: PointEvaluator, split: str = "train",
                      magnitude_aware: bool = False, deviation: float = 0.1, draws: int = 10,
                      seed: int = 0, lo: float = 0.0, hi: float = 2.0, rtol: float = 0.01,
                      max_iter: int = 30, deviation_tol: float = 0.0,
                      mag_eps: float = MAG_EPS) -> dict:
    """PAC-Bayes σ and flatness 1/σ² of the model held by an *open* ``PointEvaluator``.

    The accuracy under noise level σ is the mean over ``draws`` draws of the ``split`` accuracy at
    θ + u_k(σ), written in place (``evaluator.at``; BatchNorm re-estimated iff the evaluator has
    ``bn_data``); u_k(σ) = σ·z_k, or √(σ²θ² + ε'²) ⊙ z_k with ``magnitude_aware``, where z_k is
    standard normal from ``pacbayes_seed(seed, k)`` (Jiang et al. used 10 draws). Only ``split``
    is evaluated during the search (the evaluator's other splits are skipped, then put back).

    Returns ``bisect_sigma``'s dict plus ``measure`` ("pacbayes.flatness" or
    "pacbayes.mag.flatness"), ``magnitude_aware``, ``mag_eps`` (NaN when not magnitude-aware),
    ``draws``, ``split``, ``seed``.
    """
    if draws < 1:
        raise ValueError(f"draws = {draws} is not allowed: expected ≥ 1")
    if split not in evaluator.data:
        raise ValueError(f"split {split!r} is not in the evaluator; it has "
                         f"{sorted(evaluator.data)}")
    if magnitude_aware and not mag_eps >= 0:
        raise ValueError(f"mag_eps = {mag_eps} is not allowed: expected ≥ 0")
    all_data = evaluator.data
    evaluator.data = {split: all_data[split]}
    try:
        acc0 = evaluator.at()[split][1]
        theta = detached(evaluator.params)  # θ bitwise: ev.at() just wrote it
        z = [evaluator.adopt(gaussian_like(theta, pacbayes_seed(seed, k))) for k in range(draws)]
        sq = [t.square() for t in evaluator.adopt(theta)] if magnitude_aware else []
        buf = [torch.empty_like(t) for t in z[0]] if magnitude_aware else []

        def acc_fn(sigma: float) -> float:
            total = 0.0
            for zk in z:
                if magnitude_aware:
                    for b, s2, zi in zip(buf, sq, zk, strict=True):
                        torch.mul(s2, sigma * sigma, out=b)
                        b.add_(mag_eps * mag_eps).sqrt_().mul_(zi)
                    res = evaluator.at(terms=[(buf, 1.0)])
                else:
                    res = evaluator.at(terms=[(zk, sigma)])
                total += res[split][1]
            return total / draws

        out = bisect_sigma(acc_fn, acc0, deviation, lo, hi, rtol, max_iter, deviation_tol)
    finally:
        evaluator.data = all_data
    return {**out, "measure": "pacbayes.mag.flatness" if magnitude_aware else "pacbayes.flatness",
            "magnitude_aware": bool(magnitude_aware),
            "mag_eps": float(mag_eps) if magnitude_aware else math.nan, "draws": draws,
            "split": split, "seed": seed}
