"""Stage: spawning (Frankle et al. 2020) from one run's snapshot at step k: train two children to
the step where the run ended (its budget, or earlier when train.stop_at_loss stopped it) with
different data orders and measure the linear barrier between them. A spawn step after the end of
a run stopped by train.stop_at_loss is skipped (skipped.parquet says so)."""

from __future__ import annotations

import time

from ..checkpoints import load_snapshots
from ..connectivity.paths import LinearPath, barrier_table, evaluate_path
from ..connectivity.spawn import pick_snapshot, spawn_children
from ..errors import UserError
from ..io import IntegrityError
from ..models import build_model
from ..params import from_state, norm, sub
from ..schemas import connectivity as _tables  # noqa: F401  registers the tables written here
from ..train import TrainConfig, steps_per_epoch
from ._common import skip_reason
from ._connectivity import eval_sets, t_grid, with_eval_columns
from ._runner import Skip

HELP = ("train two children of a run from its snapshot at a step (different data orders) and "
        "write the linear barrier between them (spawn_barriers rows)")
# One job per (run, spawn step) of landscape/connectivity/pairs.py's spawn table.
STAGE = {
    "order": 31,
    "per": "spawn",
    "section": "connectivity",
    "keys": ["points", "train_size", "test_size", "subset_seed", "batch_size", "channels_last",
             "recompute_bn", "spawn.seed"],
    "inputs": ["data", "snapshots"],
    "tables": ["spawn_barriers"],
    "resources": {"mem_mb": 1900, "runtime": 6},
    "checks": ["connectivity.pairs:check_config"],  # pairs and spawn steps (both stages')
}


def measure(job) -> dict:
    cfg = job.params
    step = int(job.key["spawn_step"])
    start = time.perf_counter()
    progress = job.progress
    dev = job.device
    blob = load_snapshots(job.inputs["snapshots"])
    meta = blob["meta"]
    run_id = meta["run"]
    reason = skip_reason(meta)
    if reason:
        raise Skip(reason, run_id)
    # where the run ended: its budget, or earlier when train.stop_at_loss stopped it (the last
    # snapshot is always the final weights); children train to there
    end_step = int(meta.get("steps", blob["step"][-1]))
    if step > end_step and meta.get("stop_reason") == "target":
        raise Skip(f"run {run_id} reached train.stop_at_loss and stopped at step {end_step} "
                   f"(epoch {meta.get('epochs')}), before spawn step {step}", run_id)
    try:
        state = pick_snapshot(blob, step)
    except ValueError as exc:
        raise UserError(f"{job.inputs['snapshots']}: {exc}; choose connectivity.spawn.steps among "
                        "them") from None
    train, test, fingerprint = job.data
    if fingerprint != meta["data_fingerprint"]:
        raise IntegrityError(f"{job.inputs['snapshots']}: run {run_id} was trained on other data "
                             f"than {job.inputs['data']}; rerun its training job")
    tcfg = TrainConfig.from_config(meta["config"])
    x, y = train.tensors(dev)
    spawn_seed = cfg["spawn"]["seed"]
    t0 = time.perf_counter()
    children = spawn_children(tcfg, state, step, x, y, spawn_seed=spawn_seed, device=str(dev),
                              progress=progress, end_step=end_step)
    train_seconds = time.perf_counter() - t0
    bad = [c for c in children if c["status"] != "ok"]
    if bad:
        raise Skip(f"child with data-order seed {bad[0]['order_seed']} spawned at step "
                   f"{step} diverged", run_id)
    a, b = children
    model = build_model(tcfg.model, **tcfg.model_options).to(dev).eval()
    model.load_state_dict(a["state"])
    sets = eval_sets(model, train, test, cfg, dev)
    frame = evaluate_path(model, LinearPath.from_states(model, a["state"], b["state"]),
                          t_grid(cfg["points"]), sets.data, cfg["batch_size"],
                          bn_data=sets.bn_data, progress=progress)
    per_epoch = steps_per_epoch(len(train), tcfg.batch_size)
    distance = norm(sub(from_state(a["state"], model), from_state(b["state"], model)))
    rows = with_eval_columns(barrier_table(frame), sets, run=run_id, spawn_step=step,
                             spawn_epoch=step / per_epoch, spawn_seed=spawn_seed,
                             seed_a=a["order_seed"], seed_b=b["order_seed"], steps_a=a["steps"],
                             steps_b=b["steps"], distance=distance)
    job.meta = {"train_seconds": train_seconds, "device": str(dev)}
    r = rows.set_index("split")
    print(f"{run_id}: spawned at step {step} (epoch {step / per_epoch:.3g}): children "
          f"trained {a['steps']} and {b['steps']} steps in {train_seconds:.1f} s, distance "
          f"{distance:.3f}, loss barrier train {r.loc['train', 'loss_barrier']:.4f} test "
          f"{r.loc['test', 'loss_barrier']:.4f}, error barrier test "
          f"{r.loc['test', 'error_barrier']:.4f}; stage total {time.perf_counter() - start:.1f} s")
    return {"spawn_barriers": rows}
