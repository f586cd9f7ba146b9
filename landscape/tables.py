"""The table contract: one place defines every Parquet table's columns, types and meaning.

``write_table(df, name, path)`` checks ``df`` against ``SCHEMAS[name]`` (missing or extra
columns are errors), casts to the declared types, stores a content checksum in the Parquet
metadata and writes atomically. ``read_table(path, name)`` verifies name and checksum.
``SORT_KEYS[name]`` (declared beside the schemas) is each table's unique row key and sort order;
``gather`` is the one way per-job tables become a study table. ``python -m landscape docs
tables`` prints every schema (docs/tables.md is generated from it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .io import IntegrityError, atomic_path

SCHEMA_VERSION = 1
_ARROW = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}


@dataclass(frozen=True)
class Col:
    name: str
    dtype: str  # one of _ARROW
    doc: str


RUN_HPARAMS = [
    Col("run", "string", "run identifier: model_optimizer_lr…_bs…_wd…_s…"),
    Col("model", "string", "model name in the registry"),
    Col("optimizer", "string", "sgd (with momentum) or adam"),
    Col("lr", "float64", "learning rate η"),
    Col("batch_size", "int64", "mini-batch size"),
    Col("weight_decay", "float64", "L2 weight decay"),
    Col("seed", "int64", "seed of initialisation and data order"),
]
EVAL = [
    Col("eval_set", "string", "evaluation set, e.g. train[2048,seed=0] or test[all]"),
    Col("eval_size", "int64", "number of samples in the evaluation set"),
]

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

SCHEMAS: dict[str, list[Col]] = {
    "training": RUN_HPARAMS + [
        Col("epoch", "int64", "epochs completed (0 = initialisation)"),
        Col("step", "int64", "optimiser steps completed"),
        Col("train_loss", "float64", "mean cross-entropy on the training set (eval mode)"),
        Col("train_acc", "float64", "accuracy on the training set"),
        Col("test_loss", "float64", "mean cross-entropy on the test set"),
        Col("test_acc", "float64", "accuracy on the test set"),
        Col("lr_now", "float64", "learning rate in use during this epoch"),
        Col("wall_time", "float64", "training seconds so far (excluding evaluation)"),
    ],
    "runs": RUN_HPARAMS + [
        Col("status", "string", "ok or diverged"),
        Col("diverged_step", "int64",
            "optimiser step where the loss became non-finite (-1: never)"),
        Col("stop_at_loss", "float64", "train.stop_at_loss: the training loss at which the run "
            "was to stop (checked on the whole training set at epoch ends); NaN when not set"),
        Col("stop_reason", "string", "why training ended: target (train_loss reached "
            "stop_at_loss), budget (stop_at_loss set, but train.epochs ran out first), epochs (no "
            "stop_at_loss: the fixed train.epochs) or diverged"),
        Col("epochs", "int64", "epochs completed (fewer than train.epochs when it stopped at "
            "stop_at_loss or diverged)"),
        Col("n_params", "int64", "trainable parameters"),
        Col("train_loss", "float64", "final training loss (with stop_reason target: the loss "
            "reached, ≤ stop_at_loss)"),
        Col("train_acc", "float64", "final training accuracy"),
        Col("test_loss", "float64", "final test loss"),
        Col("test_acc", "float64", "final test accuracy"),
        Col("gap_loss", "float64", "generalisation gap: test loss − train loss"),
        Col("gap_error", "float64", "generalisation gap: test error − train error"),
        Col("train_seconds", "float64", "wall-clock seconds spent in optimisation"),
        Col("train_size", "int64", "training samples"),
        Col("test_size", "int64", "test samples"),
        Col("data_fingerprint", "string", "SHA-256 prefix of the exact data used"),
    ],
    # loss-landscape slices (landscape/slices.py). Values are over the eval subsets.
    "slice_1d": [
        Col("run", "string", "run identifier"),
        Col("direction", "string", "random (θ* + α·d) or init_to_final (θ₀ + α·(θ_T − θ₀))"),
        Col("direction_index", "int64", "which random direction (0, 1, …); 0 for init_to_final"),
        Col("normalization", "string", "direction normalisation: filter, layer, model or none"),
        Col("direction_seed", "int64", "slices.seed the random directions derive from"),
        Col("alpha", "float64", "coordinate along the direction (init_to_final: 0 = θ₀, 1 = θ_T)"),
        Col("distance", "float64", "Euclidean distance in parameter space from the trained θ*"),
        Col("split", "string", "train or test"),
        Col("loss", "float64", "mean cross-entropy over the evaluation set"),
        Col("accuracy", "float64", "accuracy over the evaluation set"),
    ] + EVAL + [
        Col("bn_recomputed", "bool", "BatchNorm statistics re-estimated at each point"),
    ],
    "slice_2d": [
        Col("run", "string", "run identifier"),
        Col("plane", "string", "random (two filter-normalised directions) or pca (trajectory)"),
        Col("normalization", "string", "filter, layer, model or none; pca for the PCA plane"),
        Col("direction_seed", "int64", "slices.seed the random directions derive from"),
        Col("alpha", "float64", "coordinate along the first direction"),
        Col("beta", "float64", "coordinate along the second direction"),
        Col("split", "string", "train or test"),
        Col("loss", "float64", "mean cross-entropy over the evaluation set"),
        Col("accuracy", "float64", "accuracy over the evaluation set"),
    ] + EVAL + [
        Col("bn_recomputed", "bool", "BatchNorm statistics re-estimated at each point"),
    ],
    "trajectory_projection": [
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
    ],
    "pca_variance": [
        Col("run", "string", "run identifier"),
        Col("component", "int64", "principal component of the trajectory (1 = first)"),
        Col("explained_variance_ratio", "float64", "share of the trajectory's variance"),
        Col("cumulative_ratio", "float64", "share explained by components 1..component"),
        Col("n_snapshots", "int64", "snapshots (besides the final weights) in the PCA"),
    ],
    # curvature (landscape/hessian/). H = Hessian of the mean cross-entropy over the
    # evaluation set, model in eval mode.
    "hessian_eigs": [
        Col("run", "string", "run identifier"),
    ] + EVAL + [
        Col("method", "string", "lanczos (full reorthogonalisation) or power (power iteration)"),
        Col("which", "string", "largest_algebraic (k=1: λ_max), smallest_algebraic (k=1: λ_min) "
            "or largest_magnitude (power iteration: k-th largest |λ|, signed)"),
        Col("k", "int64", "rank within `which`, from 1"),
        Col("eigenvalue", "float64", "the eigenvalue estimate (Ritz value / Rayleigh quotient)"),
        Col("residual", "float64", "‖Hv − λv‖ of its unit vector (lanczos: Lanczos estimate, "
            "floored at float rounding ε·‖H‖)"),
        Col("converged", "bool", "lanczos largest: residual ≤ tol·‖H‖; lanczos smallest (λ_min): "
            "residual ≤ tol·|λ_min|, relative to itself (false: only the bound "
            "|λ − λ_true| ≤ residual holds); power: relative change < tol"),
        Col("relative_residual", "float64", "residual / |eigenvalue|: ≥ 1 means not even the "
            "sign is certain"),
        Col("tol", "float64", "tolerance of the method"),
        Col("n_hvp", "int64", "Hessian-vector products used by the whole method call"),
        Col("seconds", "float64", "wall-clock seconds of the whole method call"),
    ],
    "hessian_trace": [
        Col("run", "string", "run identifier"),
    ] + EVAL + [
        Col("method", "string", "hutchinson (Rademacher) or hutchpp (Hutch++)"),
        Col("trace", "float64", "estimate of tr(H)"),
        Col("std_error", "float64", "standard error of the estimate"),
        Col("ci_low", "float64", "95 % confidence interval, lower end (Student t, n_samples − 1 "
            "degrees of freedom)"),
        Col("ci_high", "float64", "95 % confidence interval, upper end"),
        Col("n_samples", "int64", "i.i.d. samples behind std_error (Hutch++: its Hutchinson "
            "part, a third of the products)"),
        Col("n_hvp", "int64", "Hessian-vector products used"),
        Col("seconds", "float64", "wall-clock seconds"),
        Col("n_params", "int64", "dimension of H (trainable parameters)"),
    ],
    "hessian_density": [
        Col("run", "string", "run identifier"),
    ] + EVAL + [
        Col("eigenvalue", "float64", "grid point λ on the eigenvalue axis"),
        Col("density", "float64", "smoothed spectral density ρ(λ) (integrates to 1 over λ)"),
        Col("sigma", "float64", "Gaussian smoothing width σ (eigenvalue units)"),
        Col("n_starts", "int64", "random starts of stochastic Lanczos quadrature"),
        Col("n_steps", "int64", "Lanczos steps per extra start"),
    ],
    "curvature_repeats": [
        Col("run", "string", "run identifier"),
        Col("subset", "int64", "evaluation subset: 0 = the stage's main set (same numbers as "
            "hessian_eigs/hessian_trace), r = seed eval_seed + r"),
    ] + EVAL + [
        Col("lambda_max", "float64", "largest algebraic eigenvalue (Lanczos)"),
        Col("residual", "float64", "‖Hv − λv‖ of its Ritz vector"),
        Col("converged", "bool", "residual ≤ tol·‖H‖"),
        Col("trace", "float64", "Hutchinson estimate of tr(H) (NaN when hutchinson is off)"),
        Col("trace_std_error", "float64", "its standard error over the probes"),
        Col("n_hvp", "int64", "Hessian-vector products used on this subset"),
        Col("seconds", "float64", "wall-clock seconds on this subset"),
    ],
    "sharpness_trajectory": [
        Col("run", "string", "run identifier"),
    ] + EVAL + [
        Col("optimizer", "string", "sgd or adam"),
        Col("momentum", "float64", "SGD heavy-ball momentum β (NaN for adam)"),
        Col("step", "int64", "optimiser steps completed at the snapshot"),
        Col("epoch", "float64", "epochs completed (fractional inside epoch 1)"),
        Col("lr", "float64", "learning rate η in effect at the snapshot"),
        Col("lambda_max", "float64", "largest algebraic eigenvalue of H (Lanczos)"),
        Col("residual", "float64", "‖Hv − λv‖ of its Ritz vector"),
        Col("converged", "bool", "residual ≤ tol·‖H‖ (‖H‖ ≈ largest |Ritz value|)"),
        Col("n_hvp", "int64", "Hessian-vector products used"),
        Col("seconds", "float64", "wall-clock seconds for this snapshot"),
        Col("eval_loss", "float64", "mean cross-entropy over the evaluation set (eval mode)"),
        Col("two_over_lr", "float64", "2/η: stability limit of gradient descent without momentum"),
        Col("eos_threshold", "float64", "(2 + 2β)/η: stability limit of SGD with momentum β "
            "(Cohen et al. 2021); NaN for adam"),
    ],
    # ---- connectivity (landscape/connectivity/; stages/connectivity.py) ----
    # Paths from θ_A (t = 0) to θ_B (t = 1); values over the seeded evaluation subsets.
    "connectivity": PAIR + [
        Col("method", "string", "linear (θ_A → θ_B), aligned (θ_A → P(θ_B), B's hidden units "
            "permuted by weight matching: the same function as B) or bezier (quadratic Bézier "
            "curve with a trained bend)"),
        Col("endpoint_b", "string", "the path's end: raw (θ_B as trained) or aligned (P(θ_B))"),
        Col("t", "float64", "position on the path: 0 = θ_A, 1 = θ_B (or P(θ_B))"),
        Col("split", "string", "train or test"),
        Col("loss", "float64", "mean cross-entropy over the evaluation set (nats)"),
        Col("accuracy", "float64", "accuracy over the evaluation set"),
    ] + EVAL + [
        Col("bn_recomputed", "bool", "BatchNorm statistics re-estimated on the train subset at "
            "every point (false: the model has no BatchNorm, or recompute_bn is off)"),
    ],
    "barriers": PAIR + [
        Col("method", "string", "linear, aligned or bezier (as in `connectivity`)"),
        Col("endpoint_b", "string", "the path's end: raw (θ_B) or aligned (P(θ_B))"),
        Col("split", "string", "train or test"),
    ] + BARRIER + EVAL + [
        Col("bn_recomputed", "bool", "BatchNorm statistics re-estimated at every point"),
    ],
    "alignment": PAIR + [
        Col("seed", "int64", "connectivity.alignment.seed (order of the layer visits)"),
        Col("iterations", "int64", "sweeps over the layers that weight matching ran"),
        Col("converged", "bool", "the last sweep changed no permutation"),
        Col("n_permuted", "int64", "hidden units (all layers) that the permutation moves"),
        Col("n_units", "int64", "hidden units (all permuted layers)"),
        Col("objective", "float64", "Σ over parameters of ⟨θ_A, P(θ_B)⟩ after matching"),
        Col("distance_before", "float64", "Euclidean parameter distance ‖θ_A − θ_B‖"),
        Col("distance_after", "float64", "‖θ_A − P(θ_B)‖ after matching"),
        Col("seconds", "float64", "wall-clock seconds of weight matching"),
    ],
    # spawning (Frankle et al. 2020): two children trained from a run's snapshot at step k
    "spawn_barriers": [
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
    ],
    # ---- end connectivity ----
    # ---- robustness and generalisation (landscape/robustness/, generalisation.py) ----
    # Weight-noise curves (landscape/robustness/noise.py): every mode × σ × draw × split of one
    # run, on seeded evaluation subsets. σ = 0 is the unperturbed model (one evaluation, listed
    # under every draw).
    "robustness": [
        Col("run", "string", "run identifier"),
        Col("mode", "string", "absolute (δ_i ~ N(0, σ²), σ in weight units) or relative (per "
            "filter δ_f ~ N(0, σ²‖θ_f‖²/n_f), σ a fraction of the filter's norm)"),
        Col("sigma", "float64", "noise level σ (0: the trained weights)"),
        Col("draw", "int64", "noise draw (0, 1, …); draw d is the same standard-normal z for "
            "every σ and both modes (common random numbers)"),
        Col("split", "string", "train or test"),
        Col("loss", "float64", "mean cross-entropy over the evaluation set (nats; may be inf)"),
        Col("accuracy", "float64", "accuracy over the evaluation set"),
    ] + EVAL + [
        Col("bn_recomputed", "bool", "BatchNorm statistics re-estimated on the train subset at "
            "every point, σ = 0 included (BatchNorm models with recompute_bn only)"),
    ],
    # Flatness measures of one run (landscape/robustness/box_sharpness.py, pacbayes.py): one row.
    "flatness": [
        Col("run", "string", "run identifier"),
        Col("eval_set", "string", "training subset of the sharpness measures, e.g. "
            "train[1024,seed=0]"),
        Col("eval_size", "int64", "its number of samples"),
        Col("base_loss", "float64", "L(θ): mean cross-entropy of the trained weights on it (nats)"),
        Col("epsilon", "float64", "ε of the ε-sharpness box |δ_i| ≤ ε(|θ_i| + 1)"),
        Col("eps_sharpness", "float64", "ε-sharpness (Keskar et al. 2017): (max L(θ+δ) − L(θ)) / "
            "(1 + L(θ)) × 100 over the ε box, percent; a lower bound (projected sign-gradient "
            "ascent)"),
        Col("rho", "float64", "ρ of the adaptive box |δ_i| ≤ ρ|θ_i|"),
        Col("adaptive_worst", "float64", "worst-case adaptive sharpness (Kwon et al. 2021; "
            "Andriushchenko et al. 2023): max L(θ+δ) − L(θ) over the adaptive box, nats; a lower "
            "bound (projected ascent); one δ for the whole set, where Andriushchenko et al. "
            "average per-batch maxima (m-sharpness), which is ≥ this"),
        Col("adaptive_average", "float64", "average-case adaptive sharpness: mean over draws of "
            "L(θ + ρ|θ|⊙z) − L(θ), z ~ N(0, I), nats"),
        Col("adaptive_average_se", "float64", "standard error of adaptive_average over its draws"),
        Col("ascent_steps", "int64", "gradient steps of each projected ascent"),
        Col("ascent_inside_box", "bool", "every ascent iterate stayed inside its box"),
        Col("average_draws", "int64", "random δ behind adaptive_average"),
        Col("pacbayes_eval_set", "string", "training subset the PAC-Bayes accuracy is measured on"),
        Col("pacbayes_eval_size", "int64", "its number of samples"),
        Col("deviation", "float64", "PAC-Bayes target: largest σ whose mean train accuracy drops "
            "by at most this from the clean accuracy"),
        Col("pacbayes_draws", "int64", "noise draws averaged per σ in the bisection"),
        Col("pacbayes_sigma", "float64", "PAC-Bayes σ, isotropic noise u_i ~ N(0, σ²) (weight "
            "units; Jiang et al. 2020)"),
        Col("pacbayes_flatness", "float64", "1/σ² of pacbayes_sigma (larger: sharper)"),
        Col("pacbayes_converged", "bool", "bisection bracketed σ in [lo, hi] and narrowed it to "
            "rtol (false: pacbayes_sigma is a bound)"),
        Col("pacbayes_mag_sigma", "float64", "magnitude-aware PAC-Bayes σ, u_i ~ N(0, σ²θ_i² + "
            "ε'²), ε' = 1e-3 (a fraction of each weight's magnitude)"),
        Col("pacbayes_mag_flatness", "float64", "1/σ² of pacbayes_mag_sigma (larger: sharper)"),
        Col("pacbayes_mag_converged", "bool", "as pacbayes_converged, magnitude-aware search"),
        Col("weight_norm", "float64", "‖θ‖₂ over every trainable entry (Frobenius norm of all "
            "weights and biases)"),
        Col("dist_init", "float64", "‖θ − θ₀‖₂: distance from the initialisation (snapshot at "
            "step 0)"),
        Col("n_params", "int64", "trainable parameters"),
        Col("bn_recomputed", "bool", "BatchNorm statistics re-estimated at every PAC-Bayes point "
            "(the ascents keep the checkpoint's statistics, model in eval mode)"),
        Col("seconds", "float64", "wall-clock seconds of the run's whole robustness job"),
    ],
    # The generalisation study (stages/generalisation.py): one row per finished run, every
    # measure of the pipeline beside the generalisation gaps.
    "measures": RUN_HPARAMS + [
        Col("train_loss", "float64", "final training loss (runs table)"),
        Col("train_acc", "float64", "final training accuracy"),
        Col("test_loss", "float64", "final test loss"),
        Col("test_acc", "float64", "final test accuracy"),
        Col("gap_loss", "float64", "generalisation gap: test loss − train loss"),
        Col("gap_error", "float64", "generalisation gap: test error − train error"),
        Col("eps_sharpness", "float64", "ε-sharpness, percent (flatness table)"),
        Col("adaptive_worst", "float64", "worst-case adaptive sharpness, nats"),
        Col("adaptive_average", "float64", "average-case adaptive sharpness, nats"),
        Col("pacbayes_sigma", "float64", "PAC-Bayes σ (weight units)"),
        Col("pacbayes_flatness", "float64", "PAC-Bayes 1/σ²"),
        Col("pacbayes_mag_sigma", "float64", "magnitude-aware PAC-Bayes σ"),
        Col("pacbayes_mag_flatness", "float64", "magnitude-aware PAC-Bayes 1/σ²"),
        Col("weight_norm", "float64", "‖θ‖₂ over every trainable entry"),
        Col("dist_init", "float64", "‖θ − θ₀‖₂, distance from initialisation"),
        Col("lambda_max", "float64", "λ_max of the loss Hessian (hessian_eigs: lanczos, "
            "largest_algebraic, k = 1; NaN when not measured)"),
        Col("hessian_trace", "float64", "tr(H) (hessian_trace: hutchinson; NaN when not "
            "measured)"),
        Col("sigma_half_absolute", "float64", "absolute weight noise σ at which the mean "
            "*training* accuracy (robustness train subset) has fallen half-way from clean to "
            "chance (0.1), interpolated in log σ on the robustness grid; censored runs keep the "
            "grid bound (see sigma_half_absolute_censoring); NaN when the mode is off or the "
            "clean accuracy is at chance"),
        Col("sigma_half_absolute_censoring", "string", "crossed (interpolated), left (already "
            "below half-way at the smallest σ: σ½ ≤ that σ, recorded as it), right (never below "
            "half-way: σ½ > the largest σ, recorded as it), undefined (clean accuracy ≤ chance) "
            "or not_measured"),
        Col("sigma_half_relative", "float64", "the same for relative (per-filter) noise"),
        Col("sigma_half_relative_censoring", "string", "the same for relative noise"),
    ],
    "correlations": [
        Col("measure", "string", "measure: a column of the measures table"),
        Col("family", "string", "curvature, sharpness, pac-bayes, noise or norm"),
        Col("sign", "int64", "the measure enters τ and Ψ multiplied by this: −1 for robustness "
            "measures (larger = flatter, e.g. σ½), +1 otherwise; τ > 0 then always means "
            "'sharper ↔ larger gap'"),
        Col("gap", "string", "the generalisation gap (a measures column: gap_error or gap_loss)"),
        Col("tau", "float64", "Kendall τ_b (scipy.stats.kendalltau) of sign·measure with the gap "
            "over all finished runs"),
        Col("p_value", "float64", "two-sided p-value of τ = 0 (unadjusted)"),
        Col("p_holm", "float64", "p_value adjusted for testing every measure against this gap "
            "(Holm 1979 step-down, family-wise error rate; NaN where p_value is)"),
        Col("n", "int64", "runs with a finite measure and gap"),
        Col("tau_lo", "float64", "bootstrap 95 % percentile interval of τ (runs resampled), low"),
        Col("tau_hi", "float64", "bootstrap 95 % percentile interval of τ, high"),
        Col("psi", "float64", "granulated τ Ψ (Jiang et al. 2020): τ within groups of runs that "
            "differ in one hyper-parameter only (seed held fixed), averaged over groups, then "
            "over the hyper-parameters"),
        Col("psi_lo", "float64", "bootstrap 95 % interval of Ψ (same resamples as τ), low"),
        Col("psi_hi", "float64", "bootstrap 95 % interval of Ψ, high"),
        Col("n_groups", "int64", "groups behind Ψ, summed over the hyper-parameters"),
        Col("hparams", "string", "hyper-parameters Ψ is over: those the finished runs vary, "
            "seed excluded (comma-separated)"),
        Col("n_boot", "int64", "bootstrap resamples"),
    ],
    "granulated": [
        Col("measure", "string", "measure (a measures column)"),
        Col("gap", "string", "the generalisation gap"),
        Col("hparam", "string", "the hyper-parameter that varies within each group"),
        Col("psi", "float64", "ψ_h: mean τ of sign·measure with the gap over the groups (NaN: "
            "no group)"),
        Col("n_groups", "int64", "groups averaged (same other hyper-parameters and seed, ≥ 2 "
            "values of hparam)"),
    ],
    # ---- end robustness ----
    "findings": [
        Col("order", "int64", "position on the findings page"),
        Col("stage", "string", "stage the statement is about (training, curvature, …)"),
        Col("key", "string", "stable identifier of the kind of statement"),
        Col("text", "string", "the generated sentence, numbers included"),
        Col("numbers", "string", "JSON of the numbers the sentence rests on (n, p, counts, …)"),
    ],
    "skipped": [
        Col("run", "string", "run identifier"),
        Col("stage", "string", "stage that skipped the run"),
        Col("reason", "string", "why it was skipped"),
    ],
}


# Every table's row key: its rows are unique on these columns and gathered tables are sorted by
# them, so a gathered table does not depend on job order or shard count.
SORT_KEYS: dict[str, list[str]] = {
    "training": ["run", "epoch"],
    "runs": ["run"],
    "slice_1d": ["run", "direction", "direction_index", "alpha", "split"],
    "slice_2d": ["run", "plane", "alpha", "beta", "split"],
    "trajectory_projection": ["run", "snapshot", "split"],
    "pca_variance": ["run", "component"],
    "hessian_eigs": ["run", "method", "which", "k"],
    "hessian_trace": ["run", "method"],
    "hessian_density": ["run", "eigenvalue"],
    "sharpness_trajectory": ["run", "step"],
    "curvature_repeats": ["run", "subset"],
    # connectivity sort keys
    "connectivity": ["pair", "method", "t", "split"],
    "barriers": ["pair", "method", "split"],
    "alignment": ["pair"],
    "spawn_barriers": ["run", "spawn_step", "split"],
    # robustness sort keys
    "robustness": ["run", "mode", "sigma", "draw", "split"],
    "flatness": ["run"],
    "measures": ["run"],
    "correlations": ["gap", "measure"],
    "granulated": ["gap", "measure", "hparam"],
    "findings": ["order"],
    "skipped": ["run", "stage"],
}


def _coerce(df: pd.DataFrame, name: str) -> pa.Table:
    if name not in SCHEMAS:
        raise KeyError(f"Unknown table {name!r}. Known tables are {sorted(SCHEMAS)}.")
    cols = SCHEMAS[name]
    want = [c.name for c in cols]
    missing = [c for c in want if c not in df.columns]
    extra = [c for c in df.columns if c not in want]
    if missing or extra:
        raise ValueError(f"table {name!r}: missing columns {missing}, unexpected columns {extra}")
    arrays = []
    for c in cols:
        s = df[c.name]
        if c.dtype == "string":
            values = s.astype(object).where(s.notna(), None).tolist()
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
        elif c.dtype == "bool":
            arrays.append(pa.array(s.astype(bool).to_numpy(), pa.bool_()))
        elif c.dtype == "int64":
            arrays.append(pa.array(s.astype(np.int64).to_numpy(), pa.int64()))
        else:
            arrays.append(pa.array(s.astype(np.float64).to_numpy(), pa.float64()))
    return pa.Table.from_arrays(arrays, names=want)


def _digest(table: pa.Table) -> str:
    h = hashlib.sha256()
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        h.update(name.encode())
        if pa.types.is_string(col.type):
            h.update(json.dumps(col.to_pylist()).encode())
        else:
            h.update(col.to_numpy(zero_copy_only=False).tobytes())
    return h.hexdigest()


def write_table(df: pd.DataFrame, name: str, path: str | Path,
                extra_meta: dict | None = None) -> None:
    """Validate ``df`` against schema ``name`` and write it atomically to ``path``."""
    table = _coerce(df.reset_index(drop=True), name)
    meta = {"landscape.table": name, "landscape.schema_version": str(SCHEMA_VERSION),
            "landscape.sha256": _digest(table)}
    for k, v in (extra_meta or {}).items():
        meta[f"landscape.{k}"] = json.dumps(v)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | Path, name: str | None = None) -> pd.DataFrame:
    """Read a table written by ``write_table``, verifying its name and checksum."""
    path = Path(path)
    remedy = "delete it and rerun the stage that writes it"
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001
        raise IntegrityError(f"{path}: table is truncated or corrupt ({exc}); {remedy}.") from exc
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if name is not None and meta.get("landscape.table") != name:
        raise IntegrityError(f"{path}: expected table {name!r}, found "
                             f"{meta.get('landscape.table')!r}; {remedy}.")
    table = table.replace_schema_metadata(None)
    if meta.get("landscape.sha256") != _digest(table):
        raise IntegrityError(f"{path}: table content does not match its checksum (altered); "
                             f"{remedy}.")
    return table.to_pandas()


def table_meta(path: str | Path) -> dict:
    """The extra metadata stored with a table (decoded JSON values)."""
    raw = pq.read_schema(path).metadata or {}
    out = {}
    for k, v in raw.items():
        k = k.decode()
        if k.startswith("landscape.") and k not in ("landscape.table", "landscape.sha256",
                                                    "landscape.schema_version"):
            out[k[len("landscape."):]] = json.loads(v.decode())
    return out


def empty(name: str) -> pd.DataFrame:
    """An empty frame with schema ``name``'s columns."""
    return pd.DataFrame({c.name: pd.Series(dtype=object) for c in SCHEMAS[name]})


def concat_tables(paths: list[str | Path], name: str) -> pd.DataFrame:
    """Read and concatenate several tables of schema ``name`` (an empty frame if none)."""
    frames = [read_table(p, name) for p in paths]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else empty(name)


def describe() -> str:
    """Markdown description of every schema."""
    lines = []
    for name, cols in SCHEMAS.items():
        key = ", ".join(f"`{k}`" for k in SORT_KEYS.get(name, []))
        lines.append(f"## `{name}`\n\nRow key: {key}\n\n| column | type | meaning |\n"
                     "|---|---|---|")
        lines += [f"| `{c.name}` | {c.dtype} | {c.doc} |" for c in cols]
        lines.append("")
    return "\n".join(lines)


def skipped_entries(paths: list[str | Path]) -> list[dict]:
    """Skip records carried by tables: a per-job table's own ``skipped`` reason (with its
    ``run`` and ``stage``), or a gathered table's ``skipped_runs``; unique, sorted."""
    out = []
    for p in paths:
        meta = table_meta(p)
        if "skipped" in meta:
            out.append({"run": meta.get("run", ""), "stage": meta.get("stage", ""),
                        "reason": meta["skipped"]})
        out.extend(meta.get("skipped_runs", []))
    unique = {(e["run"], e["stage"], e["reason"]): e for e in out}
    return [unique[k] for k in sorted(unique)]


def gather(inputs: list[str | Path], name: str, out: str | Path) -> pd.DataFrame:
    """Concatenate per-job tables of schema ``name``, refuse duplicate rows (on
    ``SORT_KEYS[name]``: overlapping shards or stale files), sort by that key, carry the inputs'
    skip records in the metadata (``skipped_runs``) and write ``out`` atomically."""
    df = concat_tables(inputs, name)
    keys = SORT_KEYS[name]
    if len(df):
        dup = df.duplicated(keys)
        if dup.any():
            raise ValueError(f"{name}: {int(dup.sum())} duplicate rows, e.g. "
                             f"{df[dup].iloc[0][keys].to_dict()}; inputs overlap (stale files?)")
        df = df.sort_values(keys, kind="stable").reset_index(drop=True)
    skipped = skipped_entries(inputs)
    write_table(df, name, out, extra_meta={"skipped_runs": skipped} if skipped else None)
    return df
