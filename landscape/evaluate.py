"""Fast loss and accuracy of a model over in-memory tensors."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 2048) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (put in eval mode) on ``(x, y)``.

    Sums per-sample losses in float64, so the result does not depend on ``batch_size`` beyond
    float32 rounding inside each forward pass.
    """
    model.eval()
    n = x.shape[0]
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for i in range(0, n, batch_size):
        out = model(x[i:i + batch_size])
        yb = y[i:i + batch_size]
        total += F.cross_entropy(out, yb, reduction="sum").double()
        correct += (out.argmax(1) == yb).sum()
    return float(total) / n, float(correct) / n


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' → cuda when available, else cpu; 'cuda' without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested but torch.cuda.is_available() is False; "
                           "use device: auto or cpu.")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"Unknown device {device!r}. "
                         "Supported devices are ['auto', 'cpu', 'cuda'].")
    return torch.device(device)
