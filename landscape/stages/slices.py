"""Stage: evaluate one shard of one run's slice points (train and test loss and accuracy)."""

from __future__ import annotations

import time

from ..checkpoints import load_model
from ..data import load_prepared, named_eval_subset
from ..evaluate import resolve_device
from ..evaluator import PointEvaluator, use_channels_last
from ..io import IntegrityError, load_verified, tensor_digest
from ..models import has_batchnorm
from ..params import detached, parameters
from ..schemas import slices as _tables  # noqa: F401  registers the tables written here
from ..slices import SlicePlan, evaluate_points, rows_to_tables, shard_bounds
from ..tables import write_table
from ._common import section, skip_reason, write_skipped

NAME = "slices"
HELP = ("evaluate shard i of N of a run's slice points (written in place into the model) and "
        "write its rows of slice_1d, slice_2d and trajectory_projection")
REMEDY = "delete it and rerun its slice-directions job"


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="prepared data (.pt)")
    p.add_argument("--checkpoint", required=True, help="the run's checkpoint.pt")
    p.add_argument("--plan", required=True, help="the run's slice plan from slice-directions")
    p.add_argument("--params", required=True, help="JSON of the config's `slices` section")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--shard", type=int, default=0, help="0-based shard index")
    p.add_argument("--shards", type=int, default=1, help="number of shards")
    p.add_argument("--out-1d", required=True, help="output slice_1d rows (.parquet)")
    p.add_argument("--out-2d", required=True, help="output slice_2d rows (.parquet)")
    p.add_argument("--out-trajectory", required=True,
                   help="output trajectory_projection rows (.parquet)")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> None:
    cfg = section(args.params, "slices")
    outputs = {"slice_1d": args.out_1d, "slice_2d": args.out_2d,
               "trajectory_projection": args.out_trajectory}
    start_time = time.perf_counter()
    dev = resolve_device(args.device)
    model, meta = load_model(args.checkpoint, dev)
    blob = load_verified(args.plan, "slice plan", REMEDY)
    if blob.get("kind") != "slice_plan":
        raise IntegrityError(f"{args.plan}: not a slice plan (kind={blob.get('kind')!r}); "
                             f"{REMEDY}.")
    reason = skip_reason(meta) or blob.get("skipped")
    if reason:
        write_skipped(outputs, NAME, meta["run"], reason)
        return
    if blob["run"] != meta["run"] or blob["weights_digest"] != tensor_digest(
            detached([p.cpu() for p in parameters(model)])):
        raise IntegrityError(f"{args.plan}: made for another checkpoint (run {blob['run']!r}) than "
                             f"{args.checkpoint} (run {meta['run']!r}); {REMEDY}.")
    plan = SlicePlan.from_blob(blob["plan"])
    start, stop = shard_bounds(len(plan.points), args.shard, args.shards)

    train, test, _ = load_prepared(args.data)
    seed = cfg["subset_seed"]
    tr, tr_name = named_eval_subset(train, "train", cfg["train_size"], seed)
    te, te_name = named_eval_subset(test, "test", cfg["test_size"], seed)
    x_tr, y_tr = tr.tensors(dev)
    x_te, y_te = te.tensors(dev)
    if cfg["channels_last"]:
        x_tr, x_te = use_channels_last(model, x_tr, x_te)
    recompute = bool(cfg["recompute_bn"]) and has_batchnorm(model)
    batch_size = int(cfg["batch_size"])
    data = {"train": (x_tr, y_tr), "test": (x_te, y_te)}
    with PointEvaluator(model, data, batch_size, bn_data=x_tr if recompute else None) as ev:
        t0 = time.perf_counter()
        rows = evaluate_points(ev, plan, start, stop, progress=not args.no_progress)
        seconds = time.perf_counter() - t0
    extra = {"run": meta["run"], "eval_set": {"train": tr_name, "test": te_name},
             "eval_size": {"train": len(tr), "test": len(te)}, "bn_recomputed": recompute,
             "direction_seed": int(blob["spec"]["seed"])}
    shard_meta = {"shard": args.shard, "shards": args.shards, "points": [start, stop],
                  "seconds": seconds}
    for name, df in rows_to_tables(rows, extra).items():
        write_table(df, name, outputs[name], extra_meta=shard_meta)
    n = stop - start
    print(f"{meta['run']}: shard {args.shard}/{args.shards}: points {start}..{stop - 1} of "
          f"{len(plan.points)}: {n} points in {seconds:.1f} s ({n / max(seconds, 1e-9):.2f} "
          f"points/s, {len(tr)} + {len(te)} images each, batch {batch_size}); stage total "
          f"{time.perf_counter() - start_time:.1f} s")
