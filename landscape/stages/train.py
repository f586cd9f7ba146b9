"""Stage: train one run of the study."""

from __future__ import annotations

import json

from ..data import load_prepared
from ..train import TrainConfig

NAME = "train"
HELP = "train one run and write its checkpoint, snapshots and metrics"


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="prepared data (.pt)")
    p.add_argument("--params", required=True, help="JSON of the run's hyper-parameters (model, "
                   "optimizer, lr, batch_size, weight_decay, seed: its row of the run table), "
                   "the config's `train` section and `model_options`")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", required=True, help="output folder of the run")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> None:
    cfg = TrainConfig.from_config(json.loads(args.params))
    train, test, fp = load_prepared(args.data)
    from ..train import train_run

    s = train_run(cfg, train, test, args.out, fingerprint=fp, device=args.device,
                  progress=not args.no_progress)
    print(f"{s['run']}: status {s['status']}, {s['epochs']} epochs ({s['stop_reason']}), "
          f"train loss {s['train_loss']:.4f}, test acc {s['test_acc']:.4f}, "
          f"train {s['train_seconds']:.1f} s")
