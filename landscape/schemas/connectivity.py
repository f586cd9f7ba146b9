"""Table schemas of mode connectivity (landscape/connectivity/,
stages/connectivity.py, stages/spawn.py).

One ``register`` call per table: name, row key and columns (how and why: ``landscape.schemas``).
"""

from __future__ import annotations

from ..tables import EVAL, Col, register

# mode connectivity: a pair of runs, and a barrier with its endpoints, over t ∈ [0, 1] in two
# forms: the largest rise above the straight line between the endpoint values (Entezari et al.
# 2022; loss_barrier, error_barrier) and the largest value above the endpoints' mean (Frankle et
# al. 2020, the Git Re-Basin code of Ainsworth et al. 2023; *_barrier_mean). They agree when the
# endpoint values are equal (landscape/connectivity/paths.py)
PAIR = [
    Col("pair", "string", "pair identifier: <run_a>__<run_b>"),
    Col("run_a", "string", "run at t = 0"),
    Col("run_b", "string", "run at t = 1"),
]
BARRIER = [
    Col("loss_barrier", "float64", "max over t of loss(t) − [(1 − t)·loss(0) + t·loss(1)] (nats; "
        "≥ 0; Entezari et al. 2022)"),
    Col("loss_barrier_t", "float64", "the t where the loss barrier is attained"),
    Col("error_barrier", "float64", "the same for the error 1 − accuracy (fraction)"),
    Col("error_barrier_t", "float64", "the t where the error barrier is attained"),
    Col("loss_barrier_mean", "float64", "max over t of loss(t) − ½[loss(0) + loss(1)] (nats; "
        "Frankle et al. 2020, Git Re-Basin code): equals loss_barrier when loss(0) = loss(1); "
        "otherwise ≥ ½|loss(1) − loss(0)| > 0 even for a path without a bump, as t = 0 and 1 "
        "count; attained where the loss is largest (loss_max)"),
    Col("error_barrier_mean", "float64", "the same for the error (fraction); Frankle et al. "
        "2020's instability"),
    Col("loss_max", "float64", "largest loss on the path"),
    Col("loss_a", "float64", "loss at t = 0"),
    Col("loss_b", "float64", "loss at t = 1"),
    Col("error_a", "float64", "error at t = 0"),
    Col("error_b", "float64", "error at t = 1"),
]

# Paths from θ_A (t = 0) to θ_B (t = 1); values over the seeded evaluation subsets.
register("connectivity", ["pair", "method", "t", "split"], PAIR + [
    Col("method", "string", "linear (θ_A → θ_B), aligned (θ_A → P(θ_B), B's hidden units "
        "permuted by weight matching: the same function as B), activation (θ_A → P(θ_B) with P "
        "from activation matching on the train subset), repair (the aligned line with REPAIR at "
        "every point: each hidden unit renormalised to the endpoints' interpolated mean and "
        "std on the train subset, Jordan et al. 2023) or bezier (quadratic Bézier curve with a "
        "trained bend)"),
    Col("endpoint_b", "string", "the path's end: raw (θ_B as trained), aligned (P(θ_B), weight "
        "matching) or activation (P(θ_B), activation matching)"),
    Col("t", "float64", "position on the path: 0 = θ_A, 1 = θ_B (or P(θ_B))"),
    Col("split", "string", "train or test"),
    Col("loss", "float64", "mean cross-entropy over the evaluation set (nats)"),
    Col("accuracy", "float64", "accuracy over the evaluation set"),
] + EVAL + [
    Col("bn_recomputed", "bool", "BatchNorm statistics re-estimated on the train subset at "
        "every point (false: the model has no BatchNorm, or recompute_bn is off)"),
])

register("barriers", ["pair", "method", "split"], PAIR + [
    Col("method", "string", "linear, aligned, activation, repair or bezier (as in "
        "`connectivity`)"),
    Col("endpoint_b", "string", "the path's end: raw (θ_B), aligned (P(θ_B), weight matching) "
        "or activation (P(θ_B), activation matching)"),
    Col("split", "string", "train or test"),
] + BARRIER + EVAL + [
    Col("bn_recomputed", "bool", "BatchNorm statistics re-estimated at every point"),
])

# one row per permutation matching run for the pair: weight matching (Ainsworth et al. 2023,
# Alg. 1) for the aligned, repair and aligned-Bézier paths; activation matching (their Sec. 3.1)
# for the activation path
register("alignment", ["pair", "method"], PAIR + [
    Col("method", "string", "weight (weight matching) or activation (activation matching)"),
    Col("seed", "int64", "weight: connectivity.alignment.seed (order of the layer visits); "
        "activation: connectivity.subset_seed (the train subset whose activations are matched)"),
    Col("iterations", "int64", "weight: sweeps over the layers that weight matching ran; "
        "activation: 1 (each layer solved once, independently)"),
    Col("converged", "bool", "weight: the last sweep changed no permutation; activation: true"),
    Col("n_permuted", "int64", "hidden units (all layers) that the permutation moves"),
    Col("n_units", "int64", "hidden units (all permuted layers)"),
    Col("objective", "float64", "weight: Σ over parameters of ⟨θ_A, P(θ_B)⟩ after matching; "
        "activation: Σ over hidden units of the correlation between A's unit and P(B)'s unit "
        "on the train subset (at most n_units)"),
    Col("distance_before", "float64", "Euclidean parameter distance ‖θ_A − θ_B‖"),
    Col("distance_after", "float64", "‖θ_A − P(θ_B)‖ after matching"),
    Col("seconds", "float64", "wall-clock seconds of the matching (activation: with the "
        "forward passes)"),
])

# spawning (Frankle et al. 2020): two children trained from a run's snapshot at step k
register("spawn_barriers", ["run", "spawn_step", "split"], [
    Col("run", "string", "run the children were spawned from"),
    Col("spawn_step", "int64", "optimiser step k of the snapshot the children start from"),
    Col("spawn_epoch", "float64", "k in epochs (k / steps per epoch)"),
    Col("spawn_seed", "int64", "connectivity.spawn.seed"),
    Col("seed_a", "int64", "data-order seed of child A"),
    Col("seed_b", "int64", "data-order seed of child B"),
    Col("steps_a", "int64", "optimiser steps child A trained (the run's budget minus k)"),
    Col("steps_b", "int64", "optimiser steps child B trained"),
    Col("distance", "float64", "Euclidean parameter distance between the children"),
    Col("split", "string", "train or test"),
] + BARRIER + EVAL + [
    Col("bn_recomputed", "bool", "BatchNorm statistics re-estimated at every point"),
])
