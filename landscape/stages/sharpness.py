"""Stage: sharpness (λ_max of the Hessian) at every saved snapshot of one run."""

from __future__ import annotations

import math

from ..checkpoints import load_snapshots
from ..data import eval_tensors
from ..evaluate import resolve_device
from ..hessian.analysis import CurvatureOptions, sharpness
from ..hessian.trajectory import stability_threshold, two_over_lr
from ..models import build_model
from ..schemas import hessian as _tables  # noqa: F401  registers the tables written here
from ..tables import write_table
from ..train import TrainConfig, finite_state, lr_at
from ._common import section, write_skipped

NAME = "sharpness"
HELP = ("λ_max of the loss Hessian at every snapshot of one run, beside the edge-of-stability "
        "thresholds 2/η and (2 + 2β)/η")


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="prepared data (.pt)")
    p.add_argument("--snapshots", required=True, help="the run's snapshots.pt")
    p.add_argument("--params", required=True, help="JSON of the config's `hessian` section")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", required=True, help="output sharpness_trajectory rows (.parquet)")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> None:
    params = section(args.params, "hessian")
    opts = CurvatureOptions.from_params(params)
    dev = resolve_device(args.device)
    snaps = load_snapshots(args.snapshots)
    meta = snaps["meta"]
    cfg = TrainConfig.from_config(meta["config"])
    # A diverged run is measured too: its snapshots all precede the divergence (training stops
    # at the first non-finite loss before saving), and whether λ_max crossed the threshold
    # before it diverged is what the edge-of-stability figure is for.
    keep = [i for i, s in enumerate(snaps["states"]) if finite_state(s)]
    if not keep:
        write_skipped({"sharpness_trajectory": args.out}, NAME, meta["run"],
                      f"run {meta['run']} has no snapshot with finite parameters")
        return
    model = build_model(cfg.model, **cfg.model_options).to(dev).eval()
    x, y, eval_set, eval_size = eval_tensors(args.data, params["eval_split"],
                                             params["eval_size"], params["eval_seed"], dev)
    states = [{k: v.to(dev) for k, v in snaps["states"][i].items()} for i in keep]
    df = sharpness(model, states, x, y, opts, progress=not args.no_progress)
    epochs = [float(snaps["epoch"][i]) for i in keep]
    lrs = [lr_at(cfg, max(math.ceil(e) - 1, 0)) for e in epochs]
    beta = cfg.momentum if cfg.optimizer == "sgd" else math.nan
    df.insert(0, "run", meta["run"])
    df.insert(1, "eval_set", eval_set)
    df.insert(2, "eval_size", eval_size)
    df.insert(3, "optimizer", cfg.optimizer)
    df.insert(4, "momentum", beta)
    df.insert(5, "step", [int(snaps["step"][i]) for i in keep])
    df.insert(6, "epoch", epochs)
    df.insert(7, "lr", lrs)
    df["two_over_lr"] = [two_over_lr(lr) for lr in lrs]
    df["eos_threshold"] = [stability_threshold(cfg.optimizer, lr, cfg.momentum) for lr in lrs]
    write_table(df, "sharpness_trajectory", args.out, extra_meta={"options": params})
    last = df.iloc[-1]
    print(f"{meta['run']} on {eval_set}: λ_max {df['lambda_max'].iloc[0]:.4g} → "
          f"{last['lambda_max']:.4g} over {len(df)} snapshots (2/η = {last['two_over_lr']:.4g}, "
          f"(2+2β)/η = {last['eos_threshold']:.4g}); {df['seconds'].sum():.1f} s")
