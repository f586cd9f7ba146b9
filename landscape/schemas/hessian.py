"""Table schemas of curvature (landscape/hessian/, stages/hessian.py,
stages/sharpness.py).

One ``register`` call per table: name, row key and columns (how and why: ``landscape.schemas``).
"""

from __future__ import annotations

import pandas as pd

from ..tables import EVAL, Col, register

# curvature (landscape/hessian/). H = Hessian of the mean cross-entropy over the
# evaluation set, model in eval mode.
register("hessian_eigs", ["run", "method", "which", "k"], [
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
])

register("hessian_trace", ["run", "method"], [
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
])

register("hessian_density", ["run", "eigenvalue"], [
    Col("run", "string", "run identifier"),
] + EVAL + [
    Col("eigenvalue", "float64", "grid point λ on the eigenvalue axis"),
    Col("density", "float64", "smoothed spectral density ρ(λ) (integrates to 1 over λ)"),
    Col("sigma", "float64", "Gaussian smoothing width σ (eigenvalue units)"),
    Col("n_starts", "int64", "random starts of stochastic Lanczos quadrature"),
    Col("n_steps", "int64", "Lanczos steps per extra start"),
    Col("n_hvp", "int64", "Hessian-vector products of the extra starts (the first start reuses "
        "the λ_max Lanczos run: no products); at most (n_starts − 1) × n_steps"),
])

register("curvature_repeats", ["run", "subset"], [
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
    Col("warm_start", "bool", "its Lanczos run started from subset 0's top Ritz vector "
        "(hessian.warm_start; false for subset 0 and for a seeded Gaussian start)"),
    Col("seconds", "float64", "wall-clock seconds on this subset"),
])

register("sharpness_trajectory", ["run", "step"], [
    Col("run", "string", "run identifier"),
] + EVAL + [
    Col("optimizer", "string", "sgd or adam"),
    Col("momentum", "float64", "SGD heavy-ball momentum β (NaN for adam)"),
    Col("step", "int64", "optimiser steps completed at the snapshot"),
    Col("epoch", "float64", "epochs completed (fractional inside an epoch)"),
    Col("trajectory", "bool", "one of the run's trajectory snapshots (step 0, "
        "train.snapshot_steps, epoch ends); False: a dense one (train.sharpness_snapshots)"),
    Col("lr", "float64", "learning rate η in effect at the snapshot"),
    Col("lambda_max", "float64", "largest algebraic eigenvalue of H (Lanczos)"),
    Col("residual", "float64", "‖Hv − λv‖ of its Ritz vector"),
    Col("converged", "bool", "residual ≤ tol·‖H‖ (‖H‖ ≈ largest |Ritz value|)"),
    Col("n_hvp", "int64", "Hessian-vector products used"),
    Col("warm_start", "bool", "its Lanczos run started from the previous snapshot's top Ritz "
        "vector (hessian.sharpness.warm_start), not from a seeded Gaussian vector"),
    Col("seconds", "float64", "wall-clock seconds for this snapshot"),
    Col("eval_loss", "float64", "mean cross-entropy over the evaluation set (eval mode)"),
    Col("two_over_lr", "float64", "2/η: stability limit of gradient descent without momentum"),
    Col("eos_threshold", "float64", "(2 + 2β)/η: stability limit of SGD with momentum β "
        "(Cohen et al. 2021); NaN for adam"),
])


def lambda_max_rows(eigs: pd.DataFrame) -> pd.DataFrame:
    """The rows of a ``hessian_eigs`` table that hold λ_max: Lanczos, largest algebraic, k = 1
    (one per run)."""
    return eigs[(eigs["method"] == "lanczos") & (eigs["which"] == "largest_algebraic")
                & (eigs["k"] == 1)]
