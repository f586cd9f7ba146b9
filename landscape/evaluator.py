"""Evaluating a model at parameter points written into its own tensors.

``PointEvaluator`` is the evaluator of perturbed weights shared by every stage that moves the
weights: slices, weight noise, ε-/adaptive sharpness, PAC-Bayes and connectivity paths. It writes
a point's parameters *into the model's own tensors* (no model copy), evaluates every split with
``landscape.evaluate.evaluate`` (the same code path that measured the checkpoint, under
``torch.inference_mode``), and on exit restores θ and the buffers, checking they are bitwise the
originals. ``recompute_bn_statistics`` re-estimates BatchNorm statistics at a point and
``use_channels_last`` puts a model and its inputs in the faster CPU layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from .evaluate import evaluate
from .params import ParamSet, bitwise_equal, buffers, detached, parameters, write_

EvaluateFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], tuple[float, float]]


def is_batchnorm(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Reset and re-estimate every BatchNorm layer's running mean/variance from ``x`` (a forward
    pass in train mode, cumulative average over batches, as ``torch.optim.swa_utils.update_bn``);
    leaves the model in eval mode. Needed along slices because the statistics stored with the
    checkpoint belong to θ*, not to the perturbed weights (Garipov et al., 2018)."""
    bns = [m for m in model.modules() if is_batchnorm(m)]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for i in range(0, x.shape[0], batch_size):
            model(x[i:i + batch_size])
    finally:
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        model.eval()


def use_channels_last(model: nn.Module, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Convert ``model`` (in place) and 4-D inputs ``xs`` to the channels-last memory format.

    On CPU this makes the conv/ReLU/max-pool stack of the registry CNNs 2-3× faster at small
    batch sizes (bench/bench_slices.py). Values can differ from the NCHW layout in the last bits
    of float32, so compare points only with evaluations in the same layout.
    """
    if any(p.dim() == 4 for p in model.parameters()):
        model.to(memory_format=torch.channels_last)
        return tuple(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
                     for x in xs)
    return xs


class PointEvaluator:
    """Evaluate a model at many parameter points written in place; restores θ bitwise on exit.

    ``data`` maps split names to in-memory ``(x, y)``; ``bn_data`` (inputs) enables BatchNorm
    re-estimation at every point. Use as a context manager::

        with PointEvaluator(model, {"train": (x, y)}, batch_size=64) as ev:
            ev.at(terms=[(d, 0.5)])   # {'train': (loss, accuracy)}
    """

    def __init__(self, model: nn.Module, data: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                 batch_size: int = 64, bn_data: torch.Tensor | None = None,
                 evaluate_fn: EvaluateFn = evaluate) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size = {batch_size} is not allowed: expected ≥ 1")
        self.model, self.data, self.batch_size = model, dict(data), batch_size
        self.bn_data, self.evaluate_fn = bn_data, evaluate_fn
        self.params = parameters(model)
        self.buffers = buffers(model)
        self._saved_params: ParamSet | None = None
        self._saved_buffers: list[torch.Tensor] = []

    def __enter__(self) -> PointEvaluator:
        self._saved_params = detached(self.params)
        self._saved_buffers = detached(self.buffers)
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def restore(self) -> None:
        """Write θ and the buffers back; raise RuntimeError unless bitwise the originals."""
        if self._saved_params is None:
            return
        write_(self.params, self._saved_params)
        write_(self.buffers, self._saved_buffers)
        if not (bitwise_equal(self.params, self._saved_params)
                and bitwise_equal(self.buffers, self._saved_buffers)):
            raise RuntimeError("restoring the trained weights did not reproduce them bitwise")
        self.model.eval()

    def adopt(self, tensors: Sequence[torch.Tensor]) -> ParamSet:
        """Copies of ``tensors`` with the device, dtype and memory format of the parameters (so
        in-place writes run at full speed)."""
        return [torch.empty_like(p).copy_(t)
                for p, t in zip(self.params, tensors, strict=True)]

    def at(self, base: Sequence[torch.Tensor] | None = None,
           terms: Iterable[tuple[Sequence[torch.Tensor], float]] = (),
           point_buffers: Sequence[torch.Tensor] | None = None) -> dict[str, tuple[float, float]]:
        """Loss and accuracy per split at ``base + Σ c·d`` (base None: the trained weights).

        Buffers are the trained model's unless ``point_buffers`` is given; with ``bn_data`` they
        are re-estimated at the point instead (BatchNorm models).
        """
        if self._saved_params is None:
            raise RuntimeError("PointEvaluator.at() outside its `with` block")
        write_(self.params, self._saved_params if base is None else base, list(terms))
        if self.buffers:
            write_(self.buffers, self._saved_buffers if point_buffers is None else point_buffers)
            if self.bn_data is not None:
                recompute_bn_statistics(self.model, self.bn_data, self.batch_size)
        return {split: self.evaluate_fn(self.model, x, y, self.batch_size)
                for split, (x, y) in self.data.items()}
