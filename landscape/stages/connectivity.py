"""Stage: mode connectivity of one pair of runs: loss along the linear, aligned-linear (weight
matching, or activation matching), REPAIRed aligned-linear and trained-Bézier paths between them,
their barriers and the summaries of the permutation matchings."""

from __future__ import annotations

import time

import pandas as pd

from ..checkpoints import load_checkpoint
from ..connectivity.activation import align_activations
from ..connectivity.alignment import align
from ..connectivity.paths import (
    BezierPath,
    LinearPath,
    barrier_table,
    bezier_images,
    evaluate_path,
    train_bezier,
)
from ..connectivity.repair import Repair
from ..errors import UserError
from ..models import build_model
from ..schemas import connectivity as _tables  # noqa: F401  registers the tables written here
from ..train import set_deterministic
from ._common import skip_reason
from ._connectivity import eval_sets, t_grid, with_eval_columns
from ._runner import Skip

HELP = ("evaluate the linear, aligned (weight matching), activation-aligned, REPAIRed aligned and "
        "Bézier paths between two runs and write their rows of connectivity, barriers and "
        "alignment")
# One job per pair (landscape/connectivity/pairs.py); the pair and spawn lists only add or
# remove jobs, so they are not among the keys.
STAGE = {
    "order": 30,
    "rule": "connectivity_pair",
    "per": "pair",
    "section": "connectivity",
    "keys": ["points", "train_size", "test_size", "subset_seed", "batch_size", "channels_last",
             "recompute_bn", "methods", "alignment", "bezier"],
    "inputs": ["data", "checkpoint_a", "checkpoint_b"],
    "tables": ["connectivity", "barriers", "alignment"],
    "resources": {"mem_mb": 2000, "runtime": 8},
    "findings": ["report.findings:finding_connectivity"],
}


def _architecture(meta: dict) -> tuple[str, dict]:
    cfg = meta["config"]
    return cfg["model"], dict(cfg.get("model_options", {}))


def _alignment_row(ident: dict, method: str, seed: int, info: dict) -> dict:
    """One row of the alignment table from ``align``'s or ``align_activations``' info."""
    perms = info["perms"]
    moved = sum(int((p != p.new_tensor(range(len(p)))).sum()) for p in perms.values())
    return {**ident, "method": method, "seed": seed, "iterations": info["iterations"],
            "converged": info["converged"], "n_permuted": moved,
            "n_units": sum(len(p) for p in perms.values()), "objective": info["objective"],
            "distance_before": info["distance_before"],
            "distance_after": info["distance_after"], "seconds": info["seconds"]}


def measure(job) -> dict[str, pd.DataFrame]:
    cfg = job.params
    pair = job.key["pair"]
    start = time.perf_counter()
    progress = job.progress
    dev = job.device
    blob_a = load_checkpoint(job.inputs["checkpoint_a"])
    blob_b = load_checkpoint(job.inputs["checkpoint_b"])
    meta_a, meta_b = blob_a["meta"], blob_b["meta"]
    run_a, run_b = meta_a["run"], meta_b["run"]
    for meta in (meta_a, meta_b):
        reason = skip_reason(meta)
        if reason:
            raise Skip(f"pair {pair}: {reason}", meta["run"])
    if _architecture(meta_a) != _architecture(meta_b):
        raise UserError(f"pair {pair}: runs {run_a} and {run_b} have different "
                        f"architectures {_architecture(meta_a)} and {_architecture(meta_b)}; "
                        "only runs of one architecture can be connected")
    if meta_a["data_fingerprint"] != meta_b["data_fingerprint"]:
        raise UserError(f"pair {pair}: runs {run_a} and {run_b} were trained on different "
                        "data (fingerprints differ); retrain them on the same prepared data")

    model_name, options = _architecture(meta_a)
    model = build_model(model_name, **options).to(dev).eval()
    state_a, state_b = blob_a["state_dict"], blob_b["state_dict"]
    model.load_state_dict(state_a)
    train, test, _ = job.data
    sets = eval_sets(model, train, test, cfg, dev)
    ts = t_grid(cfg["points"])

    ident = {"pair": pair, "run_a": run_a, "run_b": run_b}
    methods, bz = cfg["methods"], cfg["bezier"]
    x_train = sets.data["train"][0]
    rows, aligned_b, activation_b = [], None, None
    # weight matching: for the aligned line, REPAIR on it and a Bézier curve ending at P(θ_B)
    if {"aligned", "repair"} & set(methods) or ("bezier" in methods and bz["init"] == "aligned"):
        aligned_b, info = align(model, state_a, state_b, seed=cfg["alignment"]["seed"],
                                max_iter=cfg["alignment"]["max_iter"])
        rows.append(_alignment_row(ident, "weight", cfg["alignment"]["seed"], info))
        print(f"{pair}: weight matching: {info['iterations']} sweeps "
              f"(converged: {info['converged']}), {rows[-1]['n_permuted']} units moved, "
              f"distance {info['distance_before']:.3f} → {info['distance_after']:.3f} in "
              f"{info['seconds']:.2f} s")
    if "activation" in methods:
        activation_b, info = align_activations(model, state_a, state_b, x_train,
                                               batch_size=cfg["batch_size"])
        rows.append(_alignment_row(ident, "activation", cfg["subset_seed"], info))
        print(f"{pair}: activation matching on {info['images']} images: "
              f"{rows[-1]['n_permuted']} units moved, summed correlation "
              f"{info['objective_identity']:.2f} → {info['objective']:.2f}, distance "
              f"{info['distance_before']:.3f} → {info['distance_after']:.3f} in "
              f"{info['seconds']:.2f} s")
    alignment = pd.DataFrame(rows, columns=[*ident, "method", "seed", "iterations", "converged",
                                            "n_permuted", "n_units", "objective",
                                            "distance_before", "distance_after", "seconds"])

    frames, barriers, seconds, bend_images = [], [], {}, None
    for method in methods:
        t0 = time.perf_counter()
        repair = None
        if method == "linear":
            end, path = "raw", LinearPath.from_states(model, state_a, state_b)
        elif method == "aligned":
            end, path = "aligned", LinearPath.from_states(model, state_a, aligned_b)
        elif method == "activation":
            end, path = "activation", LinearPath.from_states(model, state_a, activation_b)
        elif method == "repair":
            end, path = "aligned", LinearPath.from_states(model, state_a, aligned_b)
            repair = Repair.from_states(model, state_a, aligned_b, x_train,
                                        batch_size=cfg["batch_size"], bn_data=sets.bn_data)
        else:
            end = bz["init"]
            state_end = aligned_b if end == "aligned" else state_b
            if dev.type == "cuda":  # CPU kernels are deterministic; the switch costs seconds
                set_deterministic(dev)
            x, y = train.tensors(dev)
            epochs = None if bz["steps"] is not None else bz["epochs"]
            # the cost model counts the bend's training from this
            bend_images = bezier_images(int(x.shape[0]), bz["batch_size"], epochs, bz["steps"])
            bend = train_bezier(model, state_a, state_end, x, y, epochs=epochs,
                                steps=bz["steps"], lr=bz["lr"], momentum=bz["momentum"],
                                weight_decay=bz["weight_decay"],
                                batch_size=bz["batch_size"], seed=bz["seed"],
                                channels_last=cfg["channels_last"], progress=progress)
            path = BezierPath.from_states(model, state_a, bend, state_end)
        frame = evaluate_path(model, path, ts, sets.data, cfg["batch_size"], bn_data=sets.bn_data,
                              progress=progress, repair=repair)
        consts = {**ident, "method": method, "endpoint_b": end}
        frames.append(with_eval_columns(frame.drop(columns="bn_recomputed"), sets, **consts))
        barriers.append(with_eval_columns(barrier_table(frame), sets, **consts))
        seconds[method] = time.perf_counter() - t0
        b = barriers[-1].set_index("split")
        print(f"{pair}: {method}: loss barrier train {b.loc['train', 'loss_barrier']:.4f} "
              f"test {b.loc['test', 'loss_barrier']:.4f}, error barrier test "
              f"{b.loc['test', 'error_barrier']:.4f} ({seconds[method]:.1f} s)")

    meta = {"seconds": seconds, "points": len(ts), "device": str(dev)}
    if bend_images is not None:
        meta["bezier_images"] = bend_images
    job.table_meta = {"connectivity": meta, "barriers": meta}
    print(f"{pair}: {len(cfg['methods'])} paths × {len(ts)} points on "
          f"{sets.sizes['train']} + {sets.sizes['test']} images; stage total "
          f"{time.perf_counter() - start:.1f} s")
    return {"connectivity": pd.concat(frames, ignore_index=True),
            "barriers": pd.concat(barriers, ignore_index=True), "alignment": alignment}
