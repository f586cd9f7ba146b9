"""Stage: directions and the ordered point list of one run's loss-landscape slices."""

from __future__ import annotations

import dataclasses

from ..checkpoints import load_model, load_snapshots
from ..io import save_verified, tensor_digest
from ..models import has_batchnorm
from ..params import buffers_from_state, detached, from_state, parameters
from ..schemas import slices as _tables  # noqa: F401  registers the tables written here
from ..slices import SliceSpec, pca_variance_frame, plan_slices
from ..tables import write_table
from ._common import section, skip_reason, write_skipped

NAME = "slice-directions"
HELP = ("build one run's slice directions (filter-normalised random, init→final, trajectory PCA) "
        "and the fixed list of grid points that the `slices` shards evaluate")


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True, help="the run's checkpoint.pt")
    p.add_argument("--snapshots", required=True, help="the run's snapshots.pt")
    p.add_argument("--params", required=True, help="JSON of the config's `slices` section")
    p.add_argument("--out", required=True, help="output plan (.pt)")
    p.add_argument("--pca", required=True, help="output pca_variance table (.parquet)")


def run(args) -> None:
    params = section(args.params, "slices")
    model, meta = load_model(args.checkpoint, "cpu")
    run_id = meta["run"]
    reason = skip_reason(meta)
    if reason:
        save_verified(args.out, {"kind": "slice_plan", "run": run_id, "skipped": reason})
        write_skipped({"pca_variance": args.pca}, NAME, run_id, reason)
        return
    spec = SliceSpec.from_config(params)
    weights = detached(parameters(model))
    snaps = load_snapshots(args.snapshots)
    bn = has_batchnorm(model)
    snapshots = [{"step": int(step), "epoch": float(epoch), "params": from_state(state, model),
                  "buffers": buffers_from_state(state, model) if bn else None}
                 for step, epoch, state in zip(snaps["step"], snaps["epoch"], snaps["states"],
                                               strict=True)]
    initial = next((s["params"] for s in snapshots if s["step"] == 0), None)
    plan = plan_slices(weights, spec, initial, snapshots)
    save_verified(args.out, {"kind": "slice_plan", "run": run_id,
                             "weights_digest": tensor_digest(weights),
                             "spec": dataclasses.asdict(spec), "plan": plan.to_blob()})
    pca = pca_variance_frame(run_id, plan.pca_ratio, plan.info.get("pca_rows", 0))
    write_table(pca, "pca_variance", args.pca)
    counts = {}
    for pt in plan.points:
        key = f"{pt['table']}:{pt['direction']}"
        counts[key] = counts.get(key, 0) + 1
    info = ", ".join(f"{k}={v:.4g}" for k, v in plan.info.items())
    print(f"{run_id}: {len(plan.points)} points ({counts}); {info}")
    if plan.pca_ratio is not None:
        print(f"{run_id}: PCA explained variance ratios "
              f"{[round(float(r), 4) for r in plan.pca_ratio[:4]]}")
