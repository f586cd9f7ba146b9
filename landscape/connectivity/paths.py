"""Paths between two trained networks θ_A, θ_B, their loss along the path, and barriers.

* Linear path θ(t) = (1 − t)·θ_A + t·θ_B (Frankle et al., 2020; Goodfellow et al., 2015).
* Quadratic Bézier curve θ(t) = (1 − t)²·θ_A + 2t(1 − t)·θ_bend + t²·θ_B (Garipov et al., 2018,
  "Loss Surfaces, Mode Connectivity, and Fast Ensembling of DNNs"), whose bend is trained by
  ``train_bezier`` to minimise E_{t∼U(0,1)} L(θ(t)) with the endpoints fixed.
* ``barrier``: the largest rise of a value v (loss, or error = 1 − accuracy) above the straight
  line between its values at the endpoints, max_t [v(t) − ((1 − t)·v(0) + t·v(1))]: Entezari,
  Sedghi, Saukh & Neyshabur (2022), "The Role of Permutation Invariance in Linear Mode
  Connectivity of Neural Networks". ≥ 0, and 0 for a path that never rises above that line.
* ``barrier_mean``: the largest value above the *mean* of the endpoint values,
  max_t v(t) − ½(v(0) + v(1)): Frankle, Dziugaite, Roy & Carbin (2020), "Linear Mode
  Connectivity and the Lottery Ticket Hypothesis" (their instability, on the error), and the Git
  Re-Basin code (Ainsworth, Hayase & Srinivasa, 2023). The two agree when v(0) = v(1) and differ
  otherwise, in either direction. As the maximum includes the endpoints, ``barrier_mean`` ≥
  ½|v(1) − v(0)| ≥ 0: a path between unequal endpoints has a positive mean-form barrier even when
  it falls monotonically from one to the other.

Exact endpoints. A point is written as ``base + Σ c_k·d_k`` (``landscape.params.write_``) with
the *nearer* endpoint as base: for t ≤ ½ the base is θ_A, for t > ½ it is θ_B, and every
coefficient vanishes at the endpoint, so t = 0 gives θ_A and t = 1 gives θ_B bitwise and the
path's endpoint losses equal the checkpoints' own losses exactly (in the same memory layout;
BatchNorm models evaluated without re-estimation, see below). The differences d are stored in
both signs (a − b = −(b − a) exactly in IEEE arithmetic), so both halves use the same numbers.

BatchNorm. The running statistics stored with θ_A and θ_B belong to those weights, not to the
points between them. ``evaluate_path`` with ``bn_data`` re-estimates them at every point
(``landscape.evaluator.recompute_bn_statistics``; Garipov et al., 2018) and is what to use for
BatchNorm models; then the endpoints are evaluated with re-estimated statistics too. Without
``bn_data`` the buffers at t are the same combination of the endpoints' (and bend's) buffers as
the parameters (integer counters: the nearer endpoint's), so t = 0 and t = 1 use the
checkpoints' own statistics bitwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from ..directions import derived_seed
from ..evaluate import evaluate
from ..evaluator import PointEvaluator, use_channels_last
from ..models import has_batchnorm
from ..params import (
    ParamSet,
    buffers,
    buffers_from_state,
    detached,
    from_state,
    parameter_names,
    parameters,
    sub,
    write_,
)
from ..train import epoch_order, images_in_steps, steps_per_epoch

if TYPE_CHECKING:
    from .repair import Repair

Terms = list[tuple[ParamSet, float]]


def _combine(base: Sequence[torch.Tensor], terms: Sequence[tuple[Sequence[torch.Tensor], float]]
             ) -> list[torch.Tensor]:
    """Fresh tensors ``base + Σ c·d`` (``write_``'s order of operations); integer tensors (e.g.
    BatchNorm's num_batches_tracked) are copied from ``base``."""
    out = []
    for i, b in enumerate(base):
        t = b.detach().clone()
        if t.is_floating_point():
            for d, c in terms:
                if c != 0.0:
                    t.add_(d[i], alpha=c)
        out.append(t)
    return out


def _fdiff(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """a − b for floating tensors, zeros of the same dtype for integer ones (never used)."""
    return [x - y if x.is_floating_point() else torch.zeros_like(x) for x, y in
            zip(a, b, strict=True)]


def _linear_terms(t: float, a, b, b_minus_a, a_minus_b):
    """(base, terms) of (1 − t)·a + t·b with the nearer endpoint as base."""
    if t <= 0.5:
        return a, [(b_minus_a, float(t))]
    return b, [(a_minus_b, float(1.0 - t))]


def _bezier_terms(t: float, a, c, b, c_minus_a, b_minus_a, c_minus_b, a_minus_b):
    """(base, terms) of (1 − t)²·a + 2t(1 − t)·c + t²·b with the nearer endpoint as base:
    a + 2t(1 − t)(c − a) + t²(b − a) for t ≤ ½, b + 2t(1 − t)(c − b) + (1 − t)²(a − b) else."""
    w = 2.0 * t * (1.0 - t)
    if t <= 0.5:
        return a, [(c_minus_a, w), (b_minus_a, t * t)]
    return b, [(c_minus_b, w), (a_minus_b, (1.0 - t) ** 2)]


def _as_list(x, keys):
    return [x[k] for k in keys] if isinstance(x, Mapping) else list(x)


def linear_point(a: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
                 b: Mapping[str, torch.Tensor] | Sequence[torch.Tensor], t: float
                 ) -> dict[str, torch.Tensor] | ParamSet:
    """θ(t) = (1 − t)·a + t·b as fresh tensors; t = 0 is ``a`` and t = 1 is ``b`` bitwise.

    ``a``, ``b``: two parameter sets (lists) or two state dicts of the same architecture (then a
    state dict is returned; integer entries come from the nearer endpoint). t outside [0, 1]
    extrapolates.
    """
    keys = list(a) if isinstance(a, Mapping) else None
    la, lb = _as_list(a, keys), _as_list(b, keys)
    base, terms = _linear_terms(float(t), la, lb, _fdiff(lb, la), _fdiff(la, lb))
    out = _combine(base, terms)
    return dict(zip(keys, out, strict=True)) if keys is not None else out


def bezier_point(a: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
                 bend: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
                 b: Mapping[str, torch.Tensor] | Sequence[torch.Tensor], t: float
                 ) -> dict[str, torch.Tensor] | ParamSet:
    """θ(t) = (1 − t)²·a + 2t(1 − t)·bend + t²·b (Garipov et al., 2018) as fresh tensors;
    t = 0 is ``a`` and t = 1 is ``b`` bitwise. Lists or state dicts, as ``linear_point``."""
    keys = list(a) if isinstance(a, Mapping) else None
    la, lc, lb = _as_list(a, keys), _as_list(bend, keys), _as_list(b, keys)
    base, terms = _bezier_terms(float(t), la, lc, lb, _fdiff(lc, la), _fdiff(lb, la),
                                _fdiff(lc, lb), _fdiff(la, lb))
    out = _combine(base, terms)
    return dict(zip(keys, out, strict=True)) if keys is not None else out


class LinearPath:
    """θ(t) = (1 − t)·θ_A + t·θ_B over parameter sets (model parameter order).

    ``point(t)`` returns ``(base, terms)`` for ``PointEvaluator.at`` / ``params.write_``;
    ``buffers(t)`` the interpolated buffers (None when the path has none).
    """

    def __init__(self, a: Sequence[torch.Tensor], b: Sequence[torch.Tensor],
                 a_buffers: Sequence[torch.Tensor] | None = None,
                 b_buffers: Sequence[torch.Tensor] | None = None) -> None:
        self.a, self.b = list(a), list(b)
        self.b_minus_a, self.a_minus_b = sub(self.b, self.a), sub(self.a, self.b)
        self.bufs = None
        if a_buffers is not None and b_buffers is not None:
            ba, bb = list(a_buffers), list(b_buffers)
            self.bufs = (ba, bb, _fdiff(bb, ba), _fdiff(ba, bb))

    @classmethod
    def from_states(cls, model: nn.Module, state_a: Mapping[str, torch.Tensor],
                    state_b: Mapping[str, torch.Tensor]) -> LinearPath:
        """The path between two state dicts of ``model``'s architecture (buffers included)."""
        return cls(from_state(dict(state_a), model), from_state(dict(state_b), model),
                   buffers_from_state(dict(state_a), model),
                   buffers_from_state(dict(state_b), model))

    def adopt(self, convert: Callable[[Sequence[torch.Tensor]], ParamSet]) -> LinearPath:
        """The same path with its parameter sets passed through ``convert`` (e.g.
        ``PointEvaluator.adopt``: the model's device, dtype and memory format)."""
        new = object.__new__(LinearPath)
        new.a, new.b = convert(self.a), convert(self.b)
        new.b_minus_a, new.a_minus_b = convert(self.b_minus_a), convert(self.a_minus_b)
        new.bufs = self.bufs
        return new

    def point(self, t: float) -> tuple[ParamSet, Terms]:
        return _linear_terms(float(t), self.a, self.b, self.b_minus_a, self.a_minus_b)

    def buffers(self, t: float) -> list[torch.Tensor] | None:
        if self.bufs is None:
            return None
        return _combine(*_linear_terms(float(t), *self.bufs[:2], *self.bufs[2:]))

    def params(self, t: float) -> ParamSet:
        """θ(t) as fresh tensors."""
        return _combine(*self.point(t))


class BezierPath:
    """θ(t) = (1 − t)²·θ_A + 2t(1 − t)·θ_bend + t²·θ_B over parameter sets (Garipov et al.,
    2018). With the bend at the midpoint (θ_A + θ_B)/2 it is the linear path (up to rounding).
    Same interface as ``LinearPath``."""

    def __init__(self, a: Sequence[torch.Tensor], bend: Sequence[torch.Tensor],
                 b: Sequence[torch.Tensor], a_buffers: Sequence[torch.Tensor] | None = None,
                 bend_buffers: Sequence[torch.Tensor] | None = None,
                 b_buffers: Sequence[torch.Tensor] | None = None) -> None:
        self.ps = self._prepare(list(a), list(bend), list(b))
        self.bufs = None
        if a_buffers is not None and b_buffers is not None:
            mid = bend_buffers if bend_buffers is not None else linear_point(
                list(a_buffers), list(b_buffers), 0.5)
            self.bufs = self._prepare(list(a_buffers), list(mid), list(b_buffers))

    @staticmethod
    def _prepare(a, c, b):
        return (a, c, b, _fdiff(c, a), _fdiff(b, a), _fdiff(c, b), _fdiff(a, b))

    @classmethod
    def from_states(cls, model: nn.Module, state_a: Mapping[str, torch.Tensor],
                    bend: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor]
                    ) -> BezierPath:
        """The curve through three state dicts of ``model``'s architecture (``bend`` as returned
        by ``train_bezier``; its buffers are used only when BN statistics are not
        re-estimated)."""
        names = [n for n, _ in model.named_buffers()]
        bend_bufs = buffers_from_state(dict(bend), model) if all(n in bend for n in names) \
            else None
        return cls(from_state(dict(state_a), model), from_state(dict(bend), model),
                   from_state(dict(state_b), model), buffers_from_state(dict(state_a), model),
                   bend_bufs, buffers_from_state(dict(state_b), model))

    def adopt(self, convert: Callable[[Sequence[torch.Tensor]], ParamSet]) -> BezierPath:
        """The same curve with its parameter sets passed through ``convert``."""
        new = object.__new__(BezierPath)
        new.ps = tuple(convert(x) for x in self.ps)
        new.bufs = self.bufs
        return new

    def point(self, t: float) -> tuple[ParamSet, Terms]:
        return _bezier_terms(float(t), *self.ps)

    def buffers(self, t: float) -> list[torch.Tensor] | None:
        if self.bufs is None:
            return None
        return _combine(*_bezier_terms(float(t), *self.bufs))

    def params(self, t: float) -> ParamSet:
        """θ(t) as fresh tensors."""
        return _combine(*self.point(t))


PathLike = LinearPath | BezierPath | Callable[[float], Mapping[str, torch.Tensor]] | \
    Sequence[Mapping[str, torch.Tensor]]


class _Repaired:
    """``PointEvaluator``'s evaluate function with REPAIR: at the first evaluation of a point
    (after ``PointEvaluator.at`` wrote its weights and re-estimated BatchNorm statistics) the
    corrections at ``t`` are computed and installed as forward hooks; ``done`` removes them."""

    def __init__(self, repair: Repair) -> None:
        self.repair = repair
        self.t = 0.0
        self.hooks: ExitStack | None = None

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 batch_size: int) -> tuple[float, float]:
        if self.hooks is None:
            from .repair import corrected

            self.hooks = ExitStack()
            self.hooks.enter_context(corrected(model, self.repair.corrections(model, self.t)))
        return evaluate(model, x, y, batch_size)

    def done(self) -> None:
        if self.hooks is not None:
            hooks, self.hooks = self.hooks, None
            hooks.close()


def evaluate_path(model: nn.Module, path: PathLike, ts: Sequence[float],
                  data: Mapping[str, tuple[torch.Tensor, torch.Tensor]], batch_size: int = 256,
                  bn_data: torch.Tensor | None = None, progress: bool = False,
                  repair: Repair | None = None) -> pd.DataFrame:
    """Loss and accuracy of ``model`` at every t of ``ts`` along ``path``, evaluated in place.

    ``path``: a ``LinearPath``/``BezierPath`` (fast: each point is written into the model's own
    parameters as base + terms, no copies), or a callable ``t → state dict``, or a sequence of
    state dicts (one per t). ``data``: split name → ``(x [N, 1, 28, 28], y [N])`` in the model's
    memory format (see ``landscape.evaluator.use_channels_last``). ``bn_data``: inputs on which
    BatchNorm statistics are re-estimated at every point (use for BatchNorm models); without it
    the path's interpolated buffers are used (module docstring). ``repair``: evaluate the
    REPAIRed network at every point (``landscape.connectivity.repair.Repair``, Jordan et al.
    2023; build it with the same ``bn_data`` and ``batch_size``): after the point is written and
    its BatchNorm statistics re-estimated, the corrections at t are measured on the repair's
    inputs and applied with forward hooks for that point's evaluation only. The model is
    restored bitwise on return (``PointEvaluator``) and left without hooks.

    Returns a DataFrame with one row per (t, split): ``t`` (float), ``split``, ``loss`` (mean
    cross-entropy, nats), ``accuracy`` (fraction), ``bn_recomputed`` (bool: the model has
    BatchNorm and ``bn_data`` was given; ``bn_data`` is ignored for models without BatchNorm).
    Non-finite losses are kept as they are.
    """
    ts = [float(t) for t in ts]
    bn = has_batchnorm(model)
    recompute = bn and bn_data is not None
    structured = isinstance(path, LinearPath | BezierPath)
    if structured and bn and not recompute and path.bufs is None:
        raise ValueError("the model has BatchNorm but neither bn_data (re-estimate statistics "
                         "at every point) nor buffers on the path (build it with from_states) "
                         "were given")
    if not structured and not callable(path) and len(path) != len(ts):
        raise ValueError(f"got {len(path)} states for {len(ts)} values of t")
    from tqdm.auto import tqdm

    rows = []
    repaired = _Repaired(repair) if repair is not None else None
    with PointEvaluator(model, data, batch_size, bn_data=bn_data if recompute else None,
                        evaluate_fn=repaired if repaired is not None else evaluate) as ev:
        live = path.adopt(ev.adopt) if structured else None
        for i, t in enumerate(tqdm(ts, desc="path points", disable=not progress,
                                   mininterval=2.0)):
            if live is not None:
                base, terms = live.point(t)
                bufs = None if recompute else live.buffers(t)
            else:
                state = dict(path(t) if callable(path) else path[i])
                base, terms = from_state(state, model), []
                bufs = buffers_from_state(state, model) if ev.buffers and not recompute \
                    else None
            if repaired is not None:
                repaired.t = t
            try:
                results = ev.at(base, terms, bufs)
            finally:
                if repaired is not None:
                    repaired.done()
            for split, (loss, acc) in results.items():
                rows.append({"t": t, "split": split, "loss": loss, "accuracy": acc,
                             "bn_recomputed": recompute})
    return pd.DataFrame(rows, columns=["t", "split", "loss", "accuracy", "bn_recomputed"])


def _curve(ts: Sequence[float], values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(ts, dtype=np.float64).reshape(-1)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if t.shape != v.shape:
        raise ValueError(f"ts has {t.size} entries but values has {v.size}")
    for end in (0.0, 1.0):
        if np.count_nonzero(t == end) != 1:
            raise ValueError(f"the barrier needs exactly one value at t = {end:g} (the "
                             f"endpoint); got ts = {t.tolist()}")
    inside = (t >= 0.0) & (t <= 1.0)
    return t[inside], v[inside]


def _excess(ts, values) -> tuple[np.ndarray, np.ndarray]:
    t, v = _curve(ts, values)
    v0, v1 = v[t == 0.0][0], v[t == 1.0][0]
    # v0 + t·(v1 − v0), not (1 − t)·v0 + t·v1: equal endpoint values give the line exactly (no
    # 1e-17 "barrier" between identical models); the endpoints' own excess is 0 by definition
    excess = v - (v0 + t * (v1 - v0))
    excess[((t == 0.0) | (t == 1.0)) & np.isfinite(excess)] = 0.0
    return t, excess


def barrier(ts: Sequence[float], values: Sequence[float]) -> float:
    """max_t [value(t) − ((1 − t)·value(0) + t·value(1))] over the t in [0, 1] (Entezari et al.,
    2022, the loss barrier B(θ_A, θ_B); for the mean form of Frankle et al. 2020 see
    ``barrier_mean``).

    ``ts`` must contain 0 and 1 once each (any order); points outside [0, 1] are ignored. The
    result is ≥ 0 (the endpoints contribute 0) and in the units of ``values``: use losses for the
    loss barrier, errors 1 − accuracy for the error barrier. NaN values give NaN.
    """
    _, excess = _excess(ts, values)
    return float(np.max(excess))


def barrier_mean(ts: Sequence[float], values: Sequence[float]) -> float:
    """max_t value(t) − ½(value(0) + value(1)) over the t in [0, 1] (Frankle et al., 2020, error
    barrier height / instability; the Git Re-Basin code, Ainsworth et al., 2023).

    Same inputs as ``barrier``. The endpoints are among the t, so the result is
    ≥ ½|value(1) − value(0)| ≥ 0 (0 only when the endpoints are equal and nothing rises above
    them); it is attained where the value itself is largest (for losses: ``loss_max``), so no
    separate location is kept. NaN values give NaN.
    """
    t, v = _curve(ts, values)
    v0, v1 = v[t == 0.0][0], v[t == 1.0][0]
    # ½v0 + ½v1 is v0 exactly when v0 = v1 (identical endpoints: no rounding "barrier")
    return float(np.max(v) - (0.5 * v0 + 0.5 * v1))


def barrier_location(ts: Sequence[float], values: Sequence[float]) -> float:
    """The t at which ``barrier(ts, values)`` is attained (the first such t in sorted order)."""
    t, excess = _excess(ts, values)
    order = np.argsort(t, kind="stable")
    return float(t[order][int(np.argmax(excess[order]))])


def barrier_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Barriers of an ``evaluate_path`` frame, one row per split: ``split``, ``loss_barrier``
    (nats), ``loss_barrier_t``, ``error_barrier`` (fraction), ``error_barrier_t`` (``barrier``,
    Entezari et al. 2022), ``loss_barrier_mean``, ``error_barrier_mean`` (``barrier_mean``,
    Frankle et al. 2020), ``loss_max`` (largest loss on [0, 1]), ``loss_a``/``loss_b`` and
    ``error_a``/``error_b`` (values at t = 0 and t = 1)."""
    rows = []
    for split, g in frame.groupby("split", sort=False):
        t, loss, err = g["t"].to_numpy(), g["loss"].to_numpy(), 1.0 - g["accuracy"].to_numpy()
        rows.append({"split": split, "loss_barrier": barrier(t, loss),
                     "loss_barrier_t": barrier_location(t, loss),
                     "error_barrier": barrier(t, err), "error_barrier_t": barrier_location(t, err),
                     "loss_barrier_mean": barrier_mean(t, loss),
                     "error_barrier_mean": barrier_mean(t, err),
                     "loss_max": float(loss[(t >= 0) & (t <= 1)].max()),
                     "loss_a": float(loss[t == 0.0][0]), "loss_b": float(loss[t == 1.0][0]),
                     "error_a": float(err[t == 0.0][0]), "error_b": float(err[t == 1.0][0])})
    return pd.DataFrame(rows)


def _t_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(int(seed), "bezier_t"))


def bezier_t_sequence(seed: int, steps: int) -> list[float]:
    """The values t ∼ U(0, 1) that ``train_bezier(seed=seed)`` draws for its first ``steps``
    steps, one per batch (a CPU generator seeded by ``derived_seed(seed, 'bezier_t')``)."""
    g = _t_generator(seed)
    return [float(torch.rand((), generator=g)) for _ in range(steps)]


def bezier_steps(n: int, batch_size: int, epochs: int | None = None,
                 steps: int | None = None) -> int:
    """Optimiser steps of ``train_bezier`` on ``n`` samples: ``steps``, or ``epochs`` passes."""
    return int(steps) if steps is not None else int(epochs) * steps_per_epoch(n, batch_size)


def bezier_images(n: int, batch_size: int, epochs: int | None = None,
                  steps: int | None = None) -> int:
    """Images ``train_bezier`` passes forward and backward on ``n`` samples (what the cost model
    counts for the bend's training)."""
    return images_in_steps(0, bezier_steps(n, batch_size, epochs, steps), n, batch_size)


def train_bezier(model: nn.Module, state_a: Mapping[str, torch.Tensor],
                 state_b: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                 init_bend: Mapping[str, torch.Tensor] | None = None, epochs: int | None = None,
                 steps: int | None = None, lr: float = 0.05, momentum: float = 0.9,
                 weight_decay: float = 0.0, batch_size: int = 128, seed: int = 0,
                 channels_last: bool = True, progress: bool = False) -> dict[str, torch.Tensor]:
    """Train the bend θ_bend of the quadratic Bézier curve between fixed endpoints.

    Garipov et al. (2018), Sec. 3: minimise E_{t∼U(0,1)} L(θ(t)) over θ_bend. Each step draws
    one t (``bezier_t_sequence(seed, …)``), writes θ(t) = (1 − t)²θ_A + 2t(1 − t)θ_bend + t²θ_B
    into the model's own parameters, runs one forward/backward pass of the mean cross-entropy on
    the batch and gives the bend the gradient ∂L/∂θ_bend = 2t(1 − t)·∇_θ L(θ(t)), then one step of
    ``torch.optim.SGD(lr, momentum, weight_decay)`` on the bend. Regularisation differs from
    Garipov et al.'s code (dnn-mode-connectivity), which adds an L2 term ½·wd·‖θ(t)‖² on the
    curve's point (gradient 2t(1 − t)·wd·θ(t) on the bend, zero weight decay in the optimiser):
    here ``weight_decay`` decays the bend itself (gradient wd·θ_bend, whatever t). With the
    default ``weight_decay = 0`` the two agree. Batches follow
    ``landscape.train.epoch_order(n, seed, epoch)`` (the last batch of an epoch may be smaller).
    BatchNorm layers run in train mode (batch statistics); their statistics along the curve must
    be re-estimated for evaluation (``evaluate_path`` with ``bn_data``).

    ``init_bend``: a state dict to start from (default: the midpoint (θ_A + θ_B)/2, where the
    curve is the straight line). Give exactly one of ``epochs`` (passes over ``x``) or ``steps``.
    ``channels_last``: train in channels-last layout like the training stage (the model is
    converted in place; its values are not changed). The model's parameters and buffers are
    restored bitwise on return and it is left in eval mode. A non-finite loss raises
    FloatingPointError.

    Returns the bend as a state dict of the model's architecture: trained parameters plus
    buffers, which are ``init_bend``'s or the endpoints' average (num_batches_tracked: θ_A's) and
    serve only as the curve's buffers when statistics are not re-estimated.
    """
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs or steps")
    n = int(x.shape[0])
    if n == 0 or batch_size < 1:
        raise ValueError(f"need samples and batch_size ≥ 1; got {n} samples, batch_size "
                         f"{batch_size}")
    per_epoch = steps_per_epoch(n, batch_size)
    total = bezier_steps(n, batch_size, epochs, steps)
    if total < 0:
        raise ValueError(f"steps = {total} is not allowed: expected ≥ 0")

    if channels_last:
        (x,) = use_channels_last(model, x)
    params = parameters(model)
    live_bufs = buffers(model)
    saved_p, saved_b = detached(params), detached(live_bufs)

    def adopt(ts: Sequence[torch.Tensor]) -> ParamSet:
        return [torch.empty_like(p).copy_(t) for p, t in zip(params, ts, strict=True)]

    sa, sb = dict(state_a), dict(state_b)
    a, b = adopt(from_state(sa, model)), adopt(from_state(sb, model))
    init = from_state(dict(init_bend), model) if init_bend is not None else \
        linear_point(list(a), list(b), 0.5)
    bend = [t.requires_grad_(True) for t in adopt(init)]
    opt = torch.optim.SGD(bend, lr=lr, momentum=momentum, weight_decay=weight_decay)
    gen = _t_generator(seed)
    device = x.device

    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="bezier bend", unit="step", disable=not progress,
               mininterval=2.0)
    try:
        model.train()
        order = None
        for s in range(total):
            epoch, j = divmod(s, per_epoch)
            if j == 0 or order is None:
                order = epoch_order(n, seed, epoch, device)
            idx = order[j * batch_size:(j + 1) * batch_size]
            t = float(torch.rand((), generator=gen))
            wa, wc, wb = (1.0 - t) ** 2, 2.0 * t * (1.0 - t), t * t
            with torch.no_grad():
                torch._foreach_copy_(params, a)
                torch._foreach_mul_(params, wa)
                torch._foreach_add_(params, [c.detach() for c in bend], alpha=wc)
                torch._foreach_add_(params, b, alpha=wb)
            for p in params:
                p.grad = None
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {float(loss)} at Bézier step {s} "
                                         f"(t = {t:.4f}); lower the learning rate")
            loss.backward()
            grads = [p.grad for p in params]
            torch._foreach_mul_(grads, wc)
            for c, g in zip(bend, grads, strict=True):
                c.grad = g
            opt.step()
            bar.update()
    finally:
        bar.close()
        write_(params, saved_p)
        write_(live_bufs, saved_b)
        for p in params:
            p.grad = None
        model.eval()

    names = parameter_names(model)
    out = dict(zip(names, [c.detach().clone() for c in bend], strict=True))
    buf_names = [k for k, _ in model.named_buffers()]
    if buf_names:
        if init_bend is not None and all(k in init_bend for k in buf_names):
            bufs = [init_bend[k].detach().clone() for k in buf_names]
        else:
            bufs = linear_point(buffers_from_state(sa, model), buffers_from_state(sb, model), 0.5)
        out.update(zip(buf_names, bufs, strict=True))
    return {k: out[k] for k in model.state_dict() if k in out}
