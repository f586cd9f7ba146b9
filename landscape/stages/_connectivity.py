"""What the connectivity and spawn stages share: evaluation subsets and the t grid (I/O edge)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data import Split, named_eval_subset
from ..evaluator import use_channels_last
from ..models import has_batchnorm


@dataclass
class EvalSets:
    """The seeded evaluation subsets on the model's device and memory format."""

    data: dict[str, tuple[torch.Tensor, torch.Tensor]]  # split → (x, y)
    names: dict[str, str]  # split → eval_set label, e.g. train[1024,seed=0]
    sizes: dict[str, int]
    bn_data: torch.Tensor | None  # inputs for BatchNorm re-estimation (None: not re-estimated)


def eval_sets(model: torch.nn.Module, train: Split, test: Split, cfg: dict,
              device: torch.device) -> EvalSets:
    """Train and test subsets of sizes ``cfg['train_size']``/``cfg['test_size']`` (seed
    ``subset_seed``), converted with the model to channels-last when ``cfg['channels_last']``;
    BatchNorm statistics are re-estimated on the train subset when ``cfg['recompute_bn']`` and
    the model has BatchNorm."""
    data, names, sizes = {}, {}, {}
    seed = cfg["subset_seed"]
    for split, base in (("train", train), ("test", test)):
        sub, names[split] = named_eval_subset(base, split, cfg[f"{split}_size"], seed)
        data[split] = sub.tensors(device)
        sizes[split] = len(sub)
    if cfg["channels_last"]:
        xs = use_channels_last(model, data["train"][0], data["test"][0])
        data = {s: (x, data[s][1]) for s, x in zip(("train", "test"), xs, strict=True)}
    recompute = bool(cfg["recompute_bn"]) and has_batchnorm(model)
    return EvalSets(data, names, sizes, data["train"][0] if recompute else None)


def t_grid(points: int) -> list[float]:
    """``points`` evenly spaced t in [0, 1]; 0 and 1 exactly."""
    return [float(t) for t in np.linspace(0.0, 1.0, int(points))]


def with_eval_columns(frame, sets: EvalSets, **const):
    """``frame`` (rows with a ``split`` column) plus the eval-set columns and constants."""
    out = frame.copy()
    for key, value in const.items():
        out[key] = value
    out["eval_set"] = out["split"].map(sets.names)
    out["eval_size"] = out["split"].map(sets.sizes)
    out["bn_recomputed"] = sets.bn_data is not None
    return out
