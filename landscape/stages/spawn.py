"""Stage: spawning (Frankle et al. 2020) from one run's snapshot at step k: train two children to
the step where the run ended (its budget, or earlier when train.stop_at_loss stopped it) with
different data orders and measure the linear barrier between them. A spawn step after the end of
a run stopped by train.stop_at_loss is skipped (skipped.parquet says so)."""

from __future__ import annotations

import math
import time

from ..checkpoints import load_snapshots
from ..connectivity.paths import LinearPath, barrier_table, evaluate_path
from ..connectivity.spawn import pick_snapshot, spawn_children
from ..data import load_prepared
from ..errors import UserError
from ..evaluate import resolve_device
from ..io import IntegrityError
from ..models import build_model
from ..params import from_state, norm, sub
from ..schemas import connectivity as _tables  # noqa: F401  registers the tables written here
from ..tables import write_table
from ..train import TrainConfig
from ._common import section, skip_reason, write_skipped
from ._connectivity import eval_sets, t_grid, with_eval_columns

NAME = "spawn"
HELP = ("train two children of a run from its snapshot at a step (different data orders) and "
        "write the linear barrier between them (spawn_barriers rows)")


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="prepared data (.pt) the run was trained on")
    p.add_argument("--snapshots", required=True, help="the run's snapshots.pt")
    p.add_argument("--step", required=True, type=int, help="spawn step k (a snapshot's step)")
    p.add_argument("--params", required=True,
                   help="JSON of the config's `connectivity` section (evaluation keys, points, "
                        "spawn.seed)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", required=True, help="output spawn_barriers rows (.parquet)")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> None:
    cfg = section(args.params, "connectivity")
    start = time.perf_counter()
    progress = not args.no_progress
    dev = resolve_device(args.device)
    blob = load_snapshots(args.snapshots)
    meta = blob["meta"]
    run_id = meta["run"]
    reason = skip_reason(meta)
    if reason:
        write_skipped({"spawn_barriers": args.out}, NAME, run_id, reason)
        return
    # where the run ended: its budget, or earlier when train.stop_at_loss stopped it (the last
    # snapshot is always the final weights); children train to there
    end_step = int(meta.get("steps", blob["step"][-1]))
    if args.step > end_step and meta.get("stop_reason") == "target":
        write_skipped({"spawn_barriers": args.out}, NAME, run_id,
                      f"run {run_id} reached train.stop_at_loss and stopped at step {end_step} "
                      f"(epoch {meta.get('epochs')}), before spawn step {args.step}")
        return
    try:
        state = pick_snapshot(blob, args.step)
    except ValueError as exc:
        raise UserError(f"{args.snapshots}: {exc}; choose connectivity.spawn.steps among "
                        "them") from None
    train, test, fingerprint = load_prepared(args.data)
    if fingerprint != meta["data_fingerprint"]:
        raise IntegrityError(f"{args.snapshots}: run {run_id} was trained on other data than "
                             f"{args.data}; rerun its training job")
    tcfg = TrainConfig.from_config(meta["config"])
    x, y = train.tensors(dev)
    spawn_seed = cfg["spawn"]["seed"]
    t0 = time.perf_counter()
    children = spawn_children(tcfg, state, args.step, x, y, spawn_seed=spawn_seed, device=str(dev),
                              progress=progress, end_step=end_step)
    train_seconds = time.perf_counter() - t0
    bad = [c for c in children if c["status"] != "ok"]
    if bad:
        write_skipped({"spawn_barriers": args.out}, NAME, run_id,
                      f"child with data-order seed {bad[0]['order_seed']} spawned at step "
                      f"{args.step} diverged")
        return
    a, b = children
    model = build_model(tcfg.model, **tcfg.model_options).to(dev).eval()
    model.load_state_dict(a["state"])
    sets = eval_sets(model, train, test, cfg, dev)
    frame = evaluate_path(model, LinearPath.from_states(model, a["state"], b["state"]),
                          t_grid(cfg["points"]), sets.data, cfg["batch_size"],
                          bn_data=sets.bn_data, progress=progress)
    per_epoch = math.ceil(len(train) / tcfg.batch_size)
    distance = norm(sub(from_state(a["state"], model), from_state(b["state"], model)))
    rows = with_eval_columns(barrier_table(frame), sets, run=run_id, spawn_step=args.step,
                             spawn_epoch=args.step / per_epoch, spawn_seed=spawn_seed,
                             seed_a=a["order_seed"], seed_b=b["order_seed"], steps_a=a["steps"],
                             steps_b=b["steps"], distance=distance)
    write_table(rows, "spawn_barriers", args.out,
                extra_meta={"train_seconds": train_seconds, "device": str(dev)})
    r = rows.set_index("split")
    print(f"{run_id}: spawned at step {args.step} (epoch {args.step / per_epoch:.3g}): children "
          f"trained {a['steps']} and {b['steps']} steps in {train_seconds:.1f} s, distance "
          f"{distance:.3f}, loss barrier train {r.loc['train', 'loss_barrier']:.4f} test "
          f"{r.loc['test', 'loss_barrier']:.4f}, error barrier test "
          f"{r.loc['test', 'error_barrier']:.4f}; stage total {time.perf_counter() - start:.1f} s")
