"""Registry of small image classifiers for 1×28×28 inputs and 10 classes.

``build_model(name, **options)`` returns a fresh ``nn.Module``; ``MODELS`` lists the names.
``simple_cnn`` is the original assignment's network (809,034 parameters), kept so results
compare with it; ``cnn`` is a lighter two-block CNN with a ``width``; ``cnn_bn`` adds BatchNorm;
``mlp`` is a fully connected baseline.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class SimpleCNN(nn.Module):
    """Conv 1→16, conv 16→32 (3×3, pad 1), one 2×2 max-pool, FC 6272→128→10."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 14 * 14, 128), nn.ReLU(), nn.Linear(128, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class CNN(nn.Module):
    """Two conv+ReLU+max-pool blocks (width, 2·width channels), FC → hidden → 10.

    With ``batchnorm=True`` a BatchNorm2d follows each convolution.
    """

    def __init__(self, width: int = 16, hidden: int = 64, batchnorm: bool = False) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batchnorm)]
            if batchnorm:
                layers.append(nn.BatchNorm2d(cout))
            return layers + [nn.ReLU(), nn.MaxPool2d(2)]

        self.features = nn.Sequential(*block(1, width), *block(width, 2 * width))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, hidden), nn.ReLU(), nn.Linear(hidden, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """784 → hidden … → 10 with ReLU."""

    def __init__(self, hidden: tuple[int, ...] | list[int] = (256, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        cin = 28 * 28
        for h in hidden:
            layers += [nn.Linear(cin, h), nn.ReLU()]
            cin = h
        layers.append(nn.Linear(cin, 10))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "simple_cnn": lambda: SimpleCNN(),
    "cnn": lambda width=16, hidden=64: CNN(width, hidden, batchnorm=False),
    "cnn_bn": lambda width=16, hidden=64: CNN(width, hidden, batchnorm=True),
    "mlp": lambda hidden=(256, 128): MLP(hidden),
}


def build_model(name: str, **options) -> nn.Module:
    """Build model ``name`` with ``options``; unknown names list the allowed ones."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}. Supported models are {sorted(MODELS)}.")
    return MODELS[name](**options)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
