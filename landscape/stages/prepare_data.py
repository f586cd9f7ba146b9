"""Stage: find, verify and subset Fashion-MNIST; write compact tensors."""

from __future__ import annotations

import json

from ..data import prepare
from ..io import atomic_path

NAME = "prepare-data"
HELP = "find, verify and subset Fashion-MNIST into results/data/fashion_mnist.pt"


def add_arguments(p) -> None:
    p.add_argument("--params", required=True, help="JSON of the config's `data` section")
    p.add_argument("--out", required=True, help="output .pt file")


def run(args) -> None:
    import torch

    cfg = json.loads(args.params)
    blob = prepare(root=cfg.get("root"), download=cfg.get("download", False),
                   train_size=cfg.get("train_size"), test_size=cfg.get("test_size"),
                   seed=cfg.get("seed", 0), cache_dir=cfg.get("cache_dir", "results/data/download"))
    with atomic_path(args.out) as tmp:
        torch.save(blob, tmp)
    print(f"wrote {args.out}: train {len(blob['train']['labels'])}, test "
          f"{len(blob['test']['labels'])}, fingerprint {blob['fingerprint']}, from "
          f"{sorted(set(str(p.rsplit('/', 1)[0]) for p in blob['source'].values()))}")
