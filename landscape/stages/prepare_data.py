"""Stage: find, verify and subset Fashion-MNIST; write compact tensors."""

from __future__ import annotations

from ..data import prepare
from ..io import atomic_path
from ._common import section

NAME = "prepare-data"
HELP = "find, verify and subset Fashion-MNIST into results/data/fashion_mnist.pt"


def add_arguments(p) -> None:
    p.add_argument("--params", required=True, help="JSON of the config's `data` section")
    p.add_argument("--out", required=True, help="output .pt file")


def run(args) -> None:
    import torch

    cfg = section(args.params, "data")
    blob = prepare(root=cfg["root"], download=cfg["download"], train_size=cfg["train_size"],
                   test_size=cfg["test_size"], seed=cfg["seed"],
                   cache_dir=cfg.get("cache_dir", "results/data/download"))
    with atomic_path(args.out) as tmp:
        torch.save(blob, tmp)
    print(f"wrote {args.out}: train {len(blob['train']['labels'])}, test "
          f"{len(blob['test']['labels'])}, fingerprint {blob['fingerprint']}, from "
          f"{sorted(set(str(p.rsplit('/', 1)[0]) for p in blob['source'].values()))}")
