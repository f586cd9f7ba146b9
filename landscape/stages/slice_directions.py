"""Stage: directions and the ordered point list of one run's loss-landscape slices."""

from __future__ import annotations

import dataclasses

from ..checkpoints import load_snapshots
from ..io import IntegrityError, load_verified, save_verified, tensor_digest
from ..models import has_batchnorm
from ..params import buffers_from_state, detached, from_state, parameters
from ..schemas import slices as _tables  # noqa: F401  registers the tables written here
from ..slices import SliceSpec, hessian_directions, pca_variance_frame, plan_slices
from ._common import skip_reason
from ._runner import Skip

HELP = ("build one run's slice directions (filter-normalised random, init→final, trajectory PCA) "
        "and the fixed list of grid points that the `slices` shards evaluate")
# The part of `slices` that shapes directions and grids: a change reruns every slice job.
STAGE = {
    "order": 20,
    "section": "slices",
    "drop": ["train_size", "test_size", "subset_seed", "batch_size", "channels_last",
             "recompute_bn", "seeds", "shards"],
    "runs": "slices.seeds",
    "inputs": ["checkpoint", "snapshots", "hessian.eigvecs if hessian in slices.planes"],
    "tables": ["pca_variance"],
    "files": {"plan": "plan.pt"},
    "group": "geometry",
    "resources": {"mem_mb": 1600, "runtime": 5},
    "checks": ["slicespec:check_config"],
}


def _vectors(path: str, run: str, weights) -> dict:
    """The curvature stage's eigenvectors of this run's trained weights (checked)."""
    remedy = "delete it and rerun the run's hessian job"
    blob = load_verified(path, "Hessian eigenvectors", remedy)
    if blob.get("kind") != "hessian_vectors":
        raise IntegrityError(f"{path}: not Hessian eigenvectors (kind={blob.get('kind')!r}); "
                             f"{remedy}.")
    if blob["run"] != run or blob["weights_digest"] != tensor_digest(weights):
        raise IntegrityError(f"{path}: eigenvectors of another checkpoint (run {blob['run']!r}) "
                             f"than run {run!r}'s; {remedy}.")
    return blob


def measure(job) -> dict:
    params = job.params
    model, meta = job.model(skip=False, device="cpu")
    run_id = meta["run"]
    reason = skip_reason(meta)
    if reason:  # the runner writes the plan as a skip record, which the shards pass on
        raise Skip(reason, run_id)
    spec = SliceSpec.from_config(params)
    weights = detached(parameters(model))
    snaps = load_snapshots(job.inputs["snapshots"])
    bn = has_batchnorm(model)
    snapshots = [{"step": int(step), "epoch": float(epoch), "params": from_state(state, model),
                  "buffers": buffers_from_state(state, model) if bn else None}
                 for step, epoch, state in zip(snaps["step"], snaps["epoch"], snaps["states"],
                                               strict=True)]
    initial = next((s["params"] for s in snapshots if s["step"] == 0), None)
    hessian = None
    if "hessian" in spec.planes:
        hessian = hessian_directions(_vectors(job.inputs["hessian.eigvecs"], run_id, weights),
                                     weights, spec.hessian_rise)
    plan = plan_slices(weights, spec, initial, snapshots, hessian)
    save_verified(job.files["plan"], {"kind": "slice_plan", "run": run_id,
                             "weights_digest": tensor_digest(weights),
                             "spec": dataclasses.asdict(spec), "plan": plan.to_blob()})
    pca = pca_variance_frame(run_id, plan.pca_ratio, plan.info.get("pca_rows", 0))
    counts = {}
    for pt in plan.points:
        key = f"{pt['table']}:{pt['direction']}"
        counts[key] = counts.get(key, 0) + 1
    info = ", ".join(f"{k}={v:.4g}" for k, v in plan.info.items())
    print(f"{run_id}: {len(plan.points)} points ({counts}); {info}")
    if plan.pca_ratio is not None:
        print(f"{run_id}: PCA explained variance ratios "
              f"{[round(float(r), 4) for r in plan.pca_ratio[:4]]}")
    return {"pca_variance": pca}
