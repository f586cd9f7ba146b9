"""Stage: mode connectivity of one pair of runs: loss along the linear, aligned-linear and
trained-Bézier paths between them, their barriers and the weight-matching summary."""

from __future__ import annotations

import time

import pandas as pd

from ..checkpoints import load_checkpoint
from ..connectivity.alignment import align
from ..connectivity.paths import (
    BezierPath,
    LinearPath,
    barrier_table,
    evaluate_path,
    train_bezier,
)
from ..data import load_prepared
from ..errors import UserError
from ..evaluate import resolve_device
from ..models import build_model
from ..schemas import connectivity as _tables  # noqa: F401  registers the tables written here
from ..tables import write_table
from ..train import set_deterministic
from ._common import section, skip_reason, write_skipped
from ._connectivity import eval_sets, t_grid, with_eval_columns

NAME = "connectivity"
HELP = ("evaluate the linear, aligned (weight matching) and Bézier paths between two runs and "
        "write their rows of connectivity, barriers and alignment")


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="prepared data (.pt)")
    p.add_argument("--checkpoint-a", required=True, help="checkpoint.pt of run A (t = 0)")
    p.add_argument("--checkpoint-b", required=True, help="checkpoint.pt of run B (t = 1)")
    p.add_argument("--pair", required=True, help="pair identifier (the tables' `pair` column)")
    p.add_argument("--params", required=True, help="JSON of the config's `connectivity` section")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out-paths", required=True, help="output connectivity rows (.parquet)")
    p.add_argument("--out-barriers", required=True, help="output barriers rows (.parquet)")
    p.add_argument("--out-alignment", required=True, help="output alignment row (.parquet)")
    p.add_argument("--no-progress", action="store_true")


def _architecture(meta: dict) -> tuple[str, dict]:
    cfg = meta["config"]
    return cfg["model"], dict(cfg.get("model_options", {}))


def run(args) -> None:
    cfg = section(args.params, "connectivity")
    outputs = {"connectivity": args.out_paths, "barriers": args.out_barriers,
               "alignment": args.out_alignment}
    start = time.perf_counter()
    progress = not args.no_progress
    dev = resolve_device(args.device)
    blob_a, blob_b = load_checkpoint(args.checkpoint_a), load_checkpoint(args.checkpoint_b)
    meta_a, meta_b = blob_a["meta"], blob_b["meta"]
    run_a, run_b = meta_a["run"], meta_b["run"]
    for meta in (meta_a, meta_b):
        reason = skip_reason(meta)
        if reason:
            write_skipped(outputs, NAME, meta["run"], f"pair {args.pair}: {reason}")
            return
    if _architecture(meta_a) != _architecture(meta_b):
        raise UserError(f"pair {args.pair}: runs {run_a} and {run_b} have different "
                        f"architectures {_architecture(meta_a)} and {_architecture(meta_b)}; "
                        "only runs of one architecture can be connected")
    if meta_a["data_fingerprint"] != meta_b["data_fingerprint"]:
        raise UserError(f"pair {args.pair}: runs {run_a} and {run_b} were trained on different "
                        "data (fingerprints differ); retrain them on the same prepared data")

    model_name, options = _architecture(meta_a)
    model = build_model(model_name, **options).to(dev).eval()
    state_a, state_b = blob_a["state_dict"], blob_b["state_dict"]
    model.load_state_dict(state_a)
    train, test, _ = load_prepared(args.data)
    sets = eval_sets(model, train, test, cfg, dev)
    ts = t_grid(cfg["points"])

    aligned_b, info = align(model, state_a, state_b, seed=cfg["alignment"]["seed"],
                            max_iter=cfg["alignment"]["max_iter"])
    moved = sum(int((p != p.new_tensor(range(len(p)))).sum()) for p in info["perms"].values())
    ident = {"pair": args.pair, "run_a": run_a, "run_b": run_b}
    alignment = pd.DataFrame([{
        **ident, "seed": cfg["alignment"]["seed"], "iterations": info["iterations"],
        "converged": info["converged"], "n_permuted": moved,
        "n_units": sum(len(p) for p in info["perms"].values()), "objective": info["objective"],
        "distance_before": info["distance_before"], "distance_after": info["distance_after"],
        "seconds": info["seconds"]}])
    print(f"{args.pair}: weight matching: {info['iterations']} sweeps "
          f"(converged: {info['converged']}), {moved} units moved, distance "
          f"{info['distance_before']:.3f} → {info['distance_after']:.3f} in "
          f"{info['seconds']:.2f} s")

    frames, barriers, seconds = [], [], {}
    bz = cfg["bezier"]
    for method in cfg["methods"]:
        t0 = time.perf_counter()
        if method == "linear":
            end, path = "raw", LinearPath.from_states(model, state_a, state_b)
        elif method == "aligned":
            end, path = "aligned", LinearPath.from_states(model, state_a, aligned_b)
        else:
            end = bz["init"]
            state_end = aligned_b if end == "aligned" else state_b
            if dev.type == "cuda":  # CPU kernels are deterministic; the switch costs seconds
                set_deterministic(dev)
            x, y = train.tensors(dev)
            bend = train_bezier(model, state_a, state_end, x, y, epochs=None if bz["steps"]
                                is not None else bz["epochs"], steps=bz["steps"], lr=bz["lr"],
                                momentum=bz["momentum"], weight_decay=bz["weight_decay"],
                                batch_size=bz["batch_size"], seed=bz["seed"],
                                channels_last=cfg["channels_last"], progress=progress)
            path = BezierPath.from_states(model, state_a, bend, state_end)
        frame = evaluate_path(model, path, ts, sets.data, cfg["batch_size"], bn_data=sets.bn_data,
                              progress=progress)
        consts = {**ident, "method": method, "endpoint_b": end}
        frames.append(with_eval_columns(frame.drop(columns="bn_recomputed"), sets, **consts))
        barriers.append(with_eval_columns(barrier_table(frame), sets, **consts))
        seconds[method] = time.perf_counter() - t0
        b = barriers[-1].set_index("split")
        print(f"{args.pair}: {method}: loss barrier train {b.loc['train', 'loss_barrier']:.4f} "
              f"test {b.loc['test', 'loss_barrier']:.4f}, error barrier test "
              f"{b.loc['test', 'error_barrier']:.4f} ({seconds[method]:.1f} s)")

    meta = {"seconds": seconds, "points": len(ts), "device": str(dev)}
    write_table(pd.concat(frames, ignore_index=True), "connectivity", args.out_paths,
                extra_meta=meta)
    write_table(pd.concat(barriers, ignore_index=True), "barriers", args.out_barriers,
                extra_meta=meta)
    write_table(alignment, "alignment", args.out_alignment)
    print(f"{args.pair}: {len(cfg['methods'])} paths × {len(ts)} points on "
          f"{sets.sizes['train']} + {sets.sizes['test']} images; stage total "
          f"{time.perf_counter() - start:.1f} s")
