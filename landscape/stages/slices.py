"""Stage: evaluate one shard of one run's slice points (train and test loss and accuracy)."""

from __future__ import annotations

import time

from ..evaluator import PointEvaluator, use_channels_last
from ..io import IntegrityError, load_verified, tensor_digest
from ..models import has_batchnorm
from ..params import detached, parameters
from ..schemas import slices as _tables  # noqa: F401  registers the tables written here
from ..slices import SlicePlan, evaluate_points, rows_to_tables, shard_bounds
from ._common import skip_reason
from ._runner import Skip

HELP = ("evaluate shard i of N of a run's slice points (written in place into the model) and "
        "write its rows of slice_1d, slice_2d and trajectory_projection")
REMEDY = "delete it and rerun its slice-directions job"
# One job per run and shard; the keys that shape evaluation only (a change reruns the shards).
STAGE = {
    "order": 21,
    "rule": "slice_shard",
    "per": "run_shard",
    "shards": "slices.shards",
    "runs": "slices.seeds",
    "section": "slices",
    "keys": ["train_size", "test_size", "subset_seed", "batch_size", "channels_last",
             "recompute_bn"],
    "inputs": ["data", "checkpoint", "slice_directions.plan"],
    "tables": ["slice_1d", "slice_2d", "trajectory_projection"],
    "group": "geometry",
    "resources": {"mem_mb": 1600, "runtime": 8},
    "findings": ["report.findings:finding_slices_all"],
}


def measure(job) -> dict:
    cfg = job.params
    start_time = time.perf_counter()
    dev = job.device
    shard, shards = int(job.key["shard"]), int(job.key["shards"])
    plan_path = job.inputs["slice_directions.plan"]
    model, meta = job.model(skip=False)
    blob = load_verified(plan_path, "slice plan", REMEDY)
    if blob.get("kind") not in ("slice_plan", "skipped"):
        raise IntegrityError(f"{plan_path}: not a slice plan (kind={blob.get('kind')!r}); "
                             f"{REMEDY}.")
    reason = skip_reason(meta) or blob.get("skipped")
    if reason:
        raise Skip(reason, meta["run"])
    if blob["run"] != meta["run"] or blob["weights_digest"] != tensor_digest(
            detached([p.cpu() for p in parameters(model)])):
        raise IntegrityError(f"{plan_path}: made for another checkpoint (run {blob['run']!r}) "
                             f"than {job.inputs['checkpoint']} (run {meta['run']!r}); {REMEDY}.")
    plan = SlicePlan.from_blob(blob["plan"])
    start, stop = shard_bounds(len(plan.points), shard, shards)

    seed = cfg["subset_seed"]
    tr, tr_name = job.subset("train", cfg["train_size"], seed)
    te, te_name = job.subset("test", cfg["test_size"], seed)
    x_tr, y_tr = tr.tensors(dev)
    x_te, y_te = te.tensors(dev)
    if cfg["channels_last"]:
        x_tr, x_te = use_channels_last(model, x_tr, x_te)
    recompute = bool(cfg["recompute_bn"]) and has_batchnorm(model)
    batch_size = int(cfg["batch_size"])
    data = {"train": (x_tr, y_tr), "test": (x_te, y_te)}
    with PointEvaluator(model, data, batch_size, bn_data=x_tr if recompute else None) as ev:
        t0 = time.perf_counter()
        rows = evaluate_points(ev, plan, start, stop, progress=job.progress)
        seconds = time.perf_counter() - t0
    extra = {"run": meta["run"], "eval_set": {"train": tr_name, "test": te_name},
             "eval_size": {"train": len(tr), "test": len(te)}, "bn_recomputed": recompute,
             "direction_seed": int(blob["spec"]["seed"])}
    job.meta = {"shard": shard, "shards": shards, "points": [start, stop], "seconds": seconds}
    n = stop - start
    print(f"{meta['run']}: shard {shard}/{shards}: points {start}..{stop - 1} of "
          f"{len(plan.points)}: {n} points in {seconds:.1f} s ({n / max(seconds, 1e-9):.2f} "
          f"points/s, {len(tr)} + {len(te)} images each, batch {batch_size}); stage total "
          f"{time.perf_counter() - start_time:.1f} s")
    return rows_to_tables(rows, extra)
