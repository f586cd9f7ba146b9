"""Loss-landscape slices: loss and accuracy on 1-D lines and 2-D planes through the weights.

Li et al. (2018), "Visualizing the Loss Landscape of Neural Nets": a 1-D slice evaluates
``L(θ* + α·d)``, a 2-D slice ``L(θ* + α·d₁ + β·d₂)`` on a grid, with filter-normalised random
directions (``landscape.directions``) or the first two PCA directions of the optimisation path
(with the path projected onto that plane). We add the straight line from the initialisation to the
final weights, ``θ(t) = θ₀ + t·(θ_T − θ₀)`` (Goodfellow et al., 2015).

Two pieces:

* ``plan_slices`` turns the weights, the trajectory snapshots and a ``SliceSpec`` into a
  ``SlicePlan``: a bank of named parameter sets (directions, snapshots) and an ordered list of
  points, each ``base + Σ c_k·bank[name_k]``. The order is fixed, so shard ``i`` of ``N``
  (``shard_bounds``) is a deterministic contiguous chunk of it.
* ``evaluate_points`` evaluates a plan's points with a ``landscape.evaluator.PointEvaluator``,
  which writes each point's parameters *into the model's own tensors* (no model copy) and
  restores θ bitwise on exit. Every point is computed from the bank afresh, so its value does
  not depend on which other points share a shard: a sharded grid equals the unsharded one bitwise.

Evaluating several points in one pass with ``torch.func.functional_call`` + ``vmap`` was measured
(bench/bench_slices.py) and is 2-3× slower per point on CPU than one forward pass per point in
channels-last layout, so it is not used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from .directions import (
    cosine,
    derived_seed,
    pca_directions,
    project,
    random_direction,
)
from .evaluate import evaluate
from .evaluator import EvaluateFn, PointEvaluator
from .params import ParamSet, bitwise_equal, norm, sub
from .schemas import slices as _tables  # noqa: F401  registers the tables written here
from .slicespec import PLANES, SliceSpec
from .tables import SCHEMAS

TABLES = ("slice_1d", "slice_2d", "trajectory_projection")


def grid(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` evenly spaced values from ``lo`` to ``hi`` (float64, rounded to 12 decimals so that
    nodes such as 0 and 1 are exact)."""
    if n < 2:
        raise ValueError(f"a grid needs at least 2 points, got {n}")
    if not hi > lo:
        raise ValueError(f"grid range [{lo}, {hi}] is empty; expected lo < hi")
    i = np.arange(n, dtype=np.float64)
    return np.round(lo + (hi - lo) * i / (n - 1), 12) + 0.0  # + 0.0 turns −0.0 into 0.0


def line_grid(lo: float, hi: float, n: int) -> np.ndarray:
    """``grid(lo, hi, n)`` plus the nodes t = 0 (initialisation) and t = 1 (trained weights) when
    they lie in [lo, hi] and are not already nodes."""
    g = grid(lo, hi, n)
    extra = [t for t in (0.0, 1.0) if lo <= t <= hi]
    return np.unique(np.concatenate([g, np.array(extra, dtype=np.float64)]))


def grid_through_zero(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` evenly spaced nodes ``k·h`` (k integer) covering [lo, hi] ∋ 0, with 0 itself a node."""
    if n < 3:
        raise ValueError(f"a grid through zero needs at least 3 points, got {n}")
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0:
        lo, hi = -1.0, 1.0
    h = (hi - lo) / (n - 2)
    k0 = math.floor(lo / h)
    return (k0 + np.arange(n, dtype=np.float64)) * h + 0.0


def shard_bounds(n_points: int, shard: int, shards: int) -> tuple[int, int]:
    """[start, stop) of shard ``shard`` (0-based) of ``shards`` over ``n_points`` points:
    contiguous chunks whose sizes differ by at most one (as ``numpy.array_split``).

    Balancing by count is balancing by cost here: every point, on any plane or line, is one
    write of the parameters plus one evaluation of the same train and test subsets, the points
    of the projected trajectory included (directions and coordinates are computed once, by
    ``slice_directions``)."""
    if shards < 1:
        raise ValueError(f"shards = {shards} is not allowed: expected at least 1")
    if not 0 <= shard < shards:
        raise ValueError(f"shard = {shard} is not allowed: expected 0 ≤ shard < {shards}")
    base, extra = divmod(n_points, shards)
    start = shard * base + min(shard, extra)
    return start, start + base + (1 if shard < extra else 0)


@dataclass
class SlicePlan:
    """Named parameter sets and the ordered points to evaluate.

    ``bank[name]`` is a parameter set; ``bank_buffers[name]`` the BatchNorm buffers of a snapshot.
    Each point is a dict: ``table`` (one of TABLES), ``direction`` (random / init_to_final / pca),
    ``index``, ``alpha``, ``beta``, ``base`` (bank name or None = the trained weights), ``terms``
    ([name, coefficient] pairs), ``buffers`` (bank name or None), and table-specific fields.
    """

    bank: dict[str, ParamSet]
    bank_buffers: dict[str, list[torch.Tensor]]
    points: list[dict]
    pca_ratio: torch.Tensor | None = None
    info: dict = field(default_factory=dict)

    def to_blob(self) -> dict:
        return {"bank": self.bank, "bank_buffers": self.bank_buffers, "points": self.points,
                "pca_ratio": self.pca_ratio, "info": self.info}

    @classmethod
    def from_blob(cls, blob: dict) -> SlicePlan:
        return cls(blob["bank"], blob["bank_buffers"], blob["points"], blob["pca_ratio"],
                   blob["info"])


def hessian_directions(vectors: dict, like: ParamSet, rise: float) -> dict:
    """The hessian plane's directions from the curvature stage's vectors (``hessian_vectors``
    blob: unit Ritz vectors [k, dim], their values, the gradient): v₁, v₂ and the gradient
    direction as parameter sets shaped like ``like``, all of one length s = √(2·rise/λ₁), where
    the quadratic model ½λ₁(αs)² reaches ``rise`` at α = 1 along v₁ (|λ₁| is used if λ₁ ≤ 0)."""
    lam = [float(v) for v in vectors["values"]]
    if len(lam) < 2:
        raise ValueError("the hessian plane needs two eigenvectors: set hessian.eigs.top_k ≥ 2")
    scale = math.sqrt(2.0 * rise / max(abs(lam[0]), 1e-12))

    def shaped(flat: torch.Tensor) -> ParamSet:
        flat = flat.to(torch.float64)
        unit = flat / max(float(flat.norm()), 1e-300)
        out, k = [], 0
        for t in like:
            out.append((unit[k:k + t.numel()] * scale).view(t.shape).to(t.dtype))
            k += t.numel()
        return out

    vecs = vectors["vectors"]
    return {"v1": shaped(vecs[0]), "v2": shaped(vecs[1]), "gradient": shaped(vectors["gradient"]),
            "scale": scale, "lambda_1": lam[0], "lambda_2": lam[1]}


def plan_slices(weights: ParamSet, spec: SliceSpec, initial: ParamSet | None = None,
                snapshots: Sequence[dict] = (), hessian: dict | None = None) -> SlicePlan:
    """Build the directions and the fixed, ordered list of points for one trained model.

    ``weights``: the trained parameters θ*. ``initial``: θ₀ for the init→final line (skipped if
    None). ``snapshots``: dicts with ``step``, ``epoch``, ``params`` and optionally ``buffers``,
    in training order (needed for the PCA plane and the trajectory projection). ``hessian``:
    ``hessian_directions`` (needed for the hessian plane and the 1-D lines along v₁ and the
    gradient). Order of points: random 1-D lines, the init→final line, the lines along v₁ and
    the gradient, the random plane (row-major in α then β), the PCA plane, the hessian plane,
    then the trajectory snapshots.
    """
    bank: dict[str, ParamSet] = {}
    bank_buffers: dict[str, list[torch.Tensor]] = {}
    points: list[dict] = []
    info: dict = {"weights_norm": norm(weights)}
    common = {"normalization": spec.normalization}

    alphas = grid(-spec.range_1d, spec.range_1d, spec.points_1d)
    for j in range(spec.random_1d):
        name = f"random_1d_{j}"
        bank[name] = random_direction(weights, derived_seed(spec.seed, name), spec.normalization,
                                      spec.zero_bias_bn)
        dnorm = norm(bank[name])
        info[f"{name}_norm"] = dnorm
        points += [{"table": "slice_1d", "direction": "random", "index": j, "alpha": float(a),
                    "beta": 0.0, "base": None, "terms": [[name, float(a)]], "buffers": None,
                    "distance": abs(float(a)) * dnorm, **common} for a in alphas]

    if initial is not None:
        bank["init_minus_final"] = sub(initial, weights)
        dnorm = norm(bank["init_minus_final"])
        info["init_to_final_distance"] = dnorm
        # θ(t) = θ_T + (1 − t)(θ₀ − θ_T): t = 1 is the trained weights bitwise
        ts = line_grid(spec.line_range[0], spec.line_range[1], spec.points_1d)
        points += [{"table": "slice_1d", "direction": "init_to_final", "index": 0,
                    "alpha": float(t), "beta": 0.0, "base": None,
                    "terms": [["init_minus_final", float(np.round(1.0 - t, 12) + 0.0)]],
                    "buffers": None, "distance": abs(1.0 - float(t)) * dnorm,
                    "normalization": "none"} for t in ts]

    if "hessian" in spec.planes:
        if hessian is None:
            raise ValueError("slices.planes has hessian but no Hessian eigenvectors were given")
        bank["hessian_v1"], bank["hessian_v2"] = hessian["v1"], hessian["v2"]
        bank["gradient"] = hessian["gradient"]
        info.update({"hessian_scale": hessian["scale"], "hessian_lambda_1": hessian["lambda_1"],
                     "hessian_lambda_2": hessian["lambda_2"],
                     "hessian_plane_cosine": cosine(hessian["v1"], hessian["v2"]),
                     "gradient_v1_cosine": cosine(hessian["gradient"], hessian["v1"])})
        for kind, name in (("hessian_v1", "hessian_v1"), ("gradient", "gradient")):
            dnorm = norm(bank[name])
            points += [{"table": "slice_1d", "direction": kind, "index": 0, "alpha": float(a),
                        "beta": 0.0, "base": None, "terms": [[name, float(a)]], "buffers": None,
                        "distance": abs(float(a)) * dnorm, "normalization": "hessian"}
                       for a in alphas]

    planes: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
    if "random" in spec.planes:
        names = ["plane_random_0", "plane_random_1"]
        for name in names:
            bank[name] = random_direction(weights, derived_seed(spec.seed, name),
                                          spec.normalization, spec.zero_bias_bn)
        info["plane_random_cosine"] = cosine(bank[names[0]], bank[names[1]])
        g = grid(-spec.range_2d, spec.range_2d, spec.points_2d)
        planes["random"] = (g, g, names)

    pca_ratio = None
    traj_coords = None
    if "pca" in spec.planes:
        trajectory = [s["params"] for s in snapshots]
        (d0, d1), pca_ratio = pca_directions(trajectory, weights, k=2, centre=spec.pca_centre)
        info["pca_rows"] = sum(not bitwise_equal(t, weights) for t in trajectory)
        bank["plane_pca_0"], bank["plane_pca_1"] = d0, d1
        traj_coords, off_plane = project(trajectory, weights, [d0, d1])
        a_lo, a_hi = float(traj_coords[:, 0].min()), float(traj_coords[:, 0].max())
        b_lo, b_hi = float(traj_coords[:, 1].min()), float(traj_coords[:, 1].max())
        pa = spec.pca_margin * max(a_hi - a_lo, 1e-12)
        pb = spec.pca_margin * max(b_hi - b_lo, 1e-12)
        planes["pca"] = (grid_through_zero(a_lo - pa, a_hi + pa, spec.points_2d),
                         grid_through_zero(b_lo - pb, b_hi + pb, spec.points_2d),
                         ["plane_pca_0", "plane_pca_1"])

    if "hessian" in spec.planes:
        g = grid(-spec.range_2d, spec.range_2d, spec.hessian_points_2d)
        planes["hessian"] = (g, g, ["hessian_v1", "hessian_v2"])

    for plane in PLANES:  # fixed order, whatever the order in spec.planes
        if plane not in planes:
            continue
        ga, gb, (n0, n1) = planes[plane]
        norm_label = {"random": spec.normalization, "pca": "pca", "hessian": "hessian"}[plane]
        points += [{"table": "slice_2d", "direction": plane, "index": 0, "alpha": float(a),
                    "beta": float(b), "base": None, "terms": [[n0, float(a)], [n1, float(b)]],
                    "buffers": None, "normalization": norm_label}
                   for a in ga for b in gb]

    if traj_coords is not None:
        for i, s in enumerate(snapshots):
            name = f"snapshot_{i}"
            bank[name] = [t.detach().clone() for t in s["params"]]
            if s.get("buffers"):
                bank_buffers[name] = [t.detach().clone() for t in s["buffers"]]
            points.append({"table": "trajectory_projection", "direction": "pca", "index": i,
                           "alpha": float(traj_coords[i, 0]), "beta": float(traj_coords[i, 1]),
                           "base": name, "terms": [], "buffers": name if name in bank_buffers
                           else None, "step": int(s["step"]), "epoch": float(s["epoch"]),
                           "off_plane": float(off_plane[i]), "normalization": "pca"})
    return SlicePlan(bank, bank_buffers, points, pca_ratio, info)


def evaluate_points(evaluator: PointEvaluator, plan: SlicePlan, start: int = 0,
                    stop: int | None = None, progress: bool = False) -> list[dict]:
    """Evaluate ``plan.points[start:stop]`` inside an open ``evaluator``; one row per point and
    split with the point's fields plus ``split``, ``loss``, ``accuracy``."""
    from tqdm.auto import tqdm

    bank = {k: evaluator.adopt(v) for k, v in plan.bank.items()}
    rows = []
    chosen = plan.points[start:stop]
    for pt in tqdm(chosen, desc="slice points", disable=not progress, mininterval=2.0):
        base = None if pt["base"] is None else bank[pt["base"]]
        terms = [(bank[name], c) for name, c in pt["terms"]]
        bufs = None if pt["buffers"] is None else plan.bank_buffers[pt["buffers"]]
        for split, (loss, acc) in evaluator.at(base, terms, bufs).items():
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite {split} loss {loss} at slice point "
                    f"{ {k: pt[k] for k in ('alpha', 'beta') if k in pt} }; refusing to write it")
            rows.append({**pt, "split": split, "loss": loss, "accuracy": acc})
    return rows


def slice_1d(model: nn.Module, direction: Sequence[torch.Tensor], alphas: Iterable[float],
             data: Mapping[str, tuple[torch.Tensor, torch.Tensor]], batch_size: int = 64,
             evaluate_fn: EvaluateFn = evaluate) -> pd.DataFrame:
    """L(θ* + α·d) for each α: columns alpha, split, loss, accuracy (model restored after)."""
    rows = []
    with PointEvaluator(model, data, batch_size, evaluate_fn=evaluate_fn) as ev:
        d = ev.adopt(direction)
        for a in alphas:
            for split, (loss, acc) in ev.at(terms=[(d, float(a))]).items():
                rows.append({"alpha": float(a), "split": split, "loss": loss, "accuracy": acc})
    return pd.DataFrame(rows)


def slice_2d(model: nn.Module, d1: Sequence[torch.Tensor], d2: Sequence[torch.Tensor],
             alphas: Iterable[float], betas: Iterable[float],
             data: Mapping[str, tuple[torch.Tensor, torch.Tensor]], batch_size: int = 64,
             evaluate_fn: EvaluateFn = evaluate) -> pd.DataFrame:
    """L(θ* + α·d₁ + β·d₂) on the grid alphas × betas (row-major): columns alpha, beta, split,
    loss, accuracy (model restored after)."""
    rows = []
    betas = list(betas)
    with PointEvaluator(model, data, batch_size, evaluate_fn=evaluate_fn) as ev:
        a1, a2 = ev.adopt(d1), ev.adopt(d2)
        for a in alphas:
            for b in betas:
                for split, (loss, acc) in ev.at(terms=[(a1, float(a)), (a2, float(b))]).items():
                    rows.append({"alpha": float(a), "beta": float(b), "split": split,
                                 "loss": loss, "accuracy": acc})
    return pd.DataFrame(rows)


TABLE_COLUMNS = {
    "slice_1d": ["direction", "index", "normalization", "alpha", "distance"],
    "slice_2d": ["direction", "normalization", "alpha", "beta"],
    "trajectory_projection": ["index", "step", "epoch", "alpha", "beta", "off_plane"],
}
RENAME = {"direction": {"slice_2d": "plane"}, "index": {"slice_1d": "direction_index",
                                                        "trajectory_projection": "snapshot"}}


def rows_to_tables(rows: list[dict], extra: Mapping[str, object]) -> dict[str, pd.DataFrame]:
    """Split evaluated rows into the three slice tables (schemas in ``landscape.tables``).

    ``extra`` holds constant columns: run, eval_set per split (``eval_set`` dict), eval_size per
    split (``eval_size`` dict), ``direction_seed``, ``bn_recomputed``.
    """
    out = {}
    for table in TABLES:
        sel = [r for r in rows if r["table"] == table]
        cols = TABLE_COLUMNS[table]
        recs = []
        for r in sel:
            rec = {"run": extra["run"]}
            for c in cols:
                rec[RENAME.get(c, {}).get(table, c)] = r[c]
            rec.update(split=r["split"], loss=r["loss"], accuracy=r["accuracy"],
                       eval_set=extra["eval_set"][r["split"]],
                       eval_size=extra["eval_size"][r["split"]],
                       bn_recomputed=extra["bn_recomputed"])
            if table != "trajectory_projection":
                rec["direction_seed"] = extra["direction_seed"]
            recs.append(rec)
        out[table] = pd.DataFrame(recs, columns=[c.name for c in SCHEMAS[table]])
    return out


def pca_variance_frame(run: str, ratio: torch.Tensor | None, n_snapshots: int) -> pd.DataFrame:
    """Rows (run, component 1.., explained_variance_ratio, cumulative, n_snapshots)."""
    if ratio is None:
        return pd.DataFrame(columns=["run", "component", "explained_variance_ratio",
                                     "cumulative_ratio", "n_snapshots"])
    r = ratio.double().cpu().numpy()
    return pd.DataFrame({"run": run, "component": np.arange(1, len(r) + 1),
                         "explained_variance_ratio": r, "cumulative_ratio": np.cumsum(r),
                         "n_snapshots": n_snapshots})
