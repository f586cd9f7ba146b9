"""Stage: sharpness (λ_max of the Hessian) at every saved snapshot of one run."""

from __future__ import annotations

import math

from ..checkpoints import all_snapshots, load_snapshots
from ..data import eval_tensors
from ..hessian.analysis import CurvatureOptions, sharpness
from ..hessian.trajectory import stability_threshold, two_over_lr
from ..models import build_model
from ..schemas import hessian as _tables  # noqa: F401  registers the tables written here
from ..train import TrainConfig, finite_state, lr_at
from ._runner import Skip

HELP = ("λ_max of the loss Hessian at every snapshot of one run, beside the edge-of-stability "
        "thresholds 2/η and (2 + 2β)/η")
STAGE = {
    "order": 11,
    "section": "hessian",
    "keys": ["eval_split", "eval_size", "eval_seed", "batch_size", "hvp_method", "max_cache_mb",
             "seed", "sharpness"],
    "inputs": ["data", "snapshots"],
    "tables": ["sharpness_trajectory"],
    "group": "geometry",
    "resources": {"mem_mb": 1900, "runtime": 5},
}


def measure(job) -> dict:
    params = job.params
    opts = CurvatureOptions.from_params(params)
    dev = job.device
    snaps = load_snapshots(job.inputs["snapshots"])
    meta = snaps["meta"]
    cfg = TrainConfig.from_config(meta["config"])
    # A diverged run is measured too: its snapshots all precede the divergence (training stops
    # at the first non-finite loss before saving), and whether λ_max crossed the threshold
    # before it diverged is what the edge-of-stability figure is for.
    keep = [s for s in all_snapshots(snaps) if finite_state(s["state"])]
    if not keep:
        raise Skip(f"run {meta['run']} has no snapshot with finite parameters", meta["run"])
    model = build_model(cfg.model, **cfg.model_options).to(dev).eval()
    x, y, eval_set, eval_size = eval_tensors(job.inputs["data"], params["eval_split"],
                                             params["eval_size"], params["eval_seed"], dev)
    states = [{k: v.to(dev) for k, v in s["state"].items()} for s in keep]
    df = sharpness(model, states, x, y, opts, progress=job.progress)
    epochs = [s["epoch"] for s in keep]
    lrs = [lr_at(cfg, max(math.ceil(e) - 1, 0)) for e in epochs]
    beta = cfg.momentum if cfg.optimizer in ("sgd", "sam", "asam") else math.nan
    df.insert(0, "run", meta["run"])
    df.insert(1, "eval_set", eval_set)
    df.insert(2, "eval_size", eval_size)
    df.insert(3, "optimizer", cfg.optimizer)
    df.insert(4, "momentum", beta)
    df.insert(5, "step", [s["step"] for s in keep])
    df.insert(6, "epoch", epochs)
    df.insert(7, "trajectory", [s["trajectory"] for s in keep])
    df.insert(8, "lr", lrs)
    df["two_over_lr"] = [two_over_lr(lr) for lr in lrs]
    df["eos_threshold"] = [stability_threshold(cfg.optimizer, lr, cfg.momentum) for lr in lrs]
    job.meta = {"options": params}
    last = df.iloc[-1]
    print(f"{meta['run']} on {eval_set}: λ_max {df['lambda_max'].iloc[0]:.4g} → "
          f"{last['lambda_max']:.4g} over {len(df)} snapshots (2/η = {last['two_over_lr']:.4g}, "
          f"(2+2β)/η = {last['eos_threshold']:.4g}); {df['seconds'].sum():.1f} s")
    return {"sharpness_trajectory": df}
