"""Stage: train one run of the study."""

from __future__ import annotations

import json

from ..data import load_prepared
from ..train import TrainConfig, parse_run_id

NAME = "train"
HELP = "train one run (identified by its run id) and write checkpoint, snapshots and metrics"


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="prepared data (.pt)")
    p.add_argument("--run", required=True, help="run id, e.g. cnn_sgd_lr0.05_bs128_wd0_s1")
    p.add_argument("--params", required=True, help="JSON of the config's `train` section "
                   "plus `model_options`")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", required=True, help="output folder of the run")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> None:
    params = json.loads(args.params)
    hp = parse_run_id(args.run)
    cfg = TrainConfig(**hp, **params)
    train, test, fp = load_prepared(args.data)
    from ..train import train_run

    s = train_run(cfg, train, test, args.out, fingerprint=fp, device=args.device,
                  progress=not args.no_progress)
    print(f"{args.run}: status {s['status']}, test acc {s['test_acc']:.4f}, "
          f"train {s['train_seconds']:.1f} s")
