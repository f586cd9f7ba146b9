"""Table schemas of loss-landscape slices (landscape/slices.py,
stages/slices.py, stages/slice_directions.py).

One ``register`` call per table: name, row key and columns (how and why: ``landscape.schemas``).
"""

from __future__ import annotations

from ..tables import EVAL, Col, register

# loss-landscape slices (landscape/slices.py). Values are over the eval subsets.
register("slice_1d", ["run", "direction", "direction_index", "alpha", "split"], [
    Col("run", "string", "run identifier"),
    Col("direction", "string", "random (θ* + α·d), init_to_final (θ₀ + α·(θ_T − θ₀)), "
        "hessian_v1 (θ* + α·s·v₁, v₁ the top Hessian eigenvector) or gradient (θ* + α·s·ĝ, ĝ the "
        "unit loss gradient), s = √(2·slices.hessian_rise/λ₁)"),
    Col("direction_index", "int64", "which random direction (0, 1, …); 0 for init_to_final"),
    Col("normalization", "string", "direction normalisation: filter, layer, model or none; "
        "hessian: unit vector × s = √(2·slices.hessian_rise/λ₁)"),
    Col("direction_seed", "int64", "slices.seed the random directions derive from"),
    Col("alpha", "float64", "coordinate along the direction (init_to_final: 0 = θ₀, 1 = θ_T)"),
    Col("distance", "float64", "Euclidean distance in parameter space from the trained θ*"),
    Col("split", "string", "train or test"),
    Col("loss", "float64", "mean cross-entropy over the evaluation set"),
    Col("accuracy", "float64", "accuracy over the evaluation set"),
] + EVAL + [
    Col("bn_recomputed", "bool", "BatchNorm statistics re-estimated at each point"),
])

register("slice_2d", ["run", "plane", "alpha", "beta", "split"], [
    Col("run", "string", "run identifier"),
    Col("plane", "string", "random (two filter-normalised directions), pca (trajectory) or "
        "hessian (top two Hessian eigenvectors, each of length s)"),
    Col("normalization", "string", "filter, layer, model or none; pca for the PCA plane; hessian "
        "for the hessian plane"),
    Col("direction_seed", "int64", "slices.seed the random directions derive from"),
    Col("alpha", "float64", "coordinate along the first direction"),
    Col("beta", "float64", "coordinate along the second direction"),
    Col("split", "string", "train or test"),
    Col("loss", "float64", "mean cross-entropy over the evaluation set"),
    Col("accuracy", "float64", "accuracy over the evaluation set"),
] + EVAL + [
    Col("bn_recomputed", "bool", "BatchNorm statistics re-estimated at each point"),
])

register("trajectory_projection", ["run", "snapshot", "split"], [
    Col("run", "string", "run identifier"),
    Col("snapshot", "int64", "snapshot index in training order (0 = initialisation)"),
    Col("step", "int64", "optimiser steps completed at the snapshot"),
    Col("epoch", "float64", "epochs completed (fractional inside epoch 1)"),
    Col("alpha", "float64", "projection on the first PCA direction (unit vector)"),
    Col("beta", "float64", "projection on the second PCA direction (unit vector)"),
    Col("off_plane", "float64", "distance of the snapshot from the PCA plane"),
    Col("split", "string", "train or test"),
    Col("loss", "float64", "actual loss of the snapshot (not of its projection)"),
    Col("accuracy", "float64", "actual accuracy of the snapshot"),
] + EVAL + [
    Col("bn_recomputed", "bool", "BatchNorm statistics re-estimated (else the snapshot's)"),
])

register("pca_variance", ["run", "component"], [
    Col("run", "string", "run identifier"),
    Col("component", "int64", "principal component of the trajectory (1 = first)"),
    Col("explained_variance_ratio", "float64", "share of the trajectory's variance"),
    Col("cumulative_ratio", "float64", "share explained by components 1..component"),
    Col("n_snapshots", "int64", "snapshots (besides the final weights) in the PCA"),
])
