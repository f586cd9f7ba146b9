"""Tables of the curvature_matrices stage: the Hessian, generalised Gauss–Newton and empirical
Fisher of one run compared on one evaluation set (``landscape.hessian.gauss_newton``)."""

from __future__ import annotations

from ..tables import EVAL, Col, register

MATRIX = Col("matrix", "string", "hessian (H), ggn (generalised Gauss–Newton G: PSD, H = G + "
             "residual) or ef (empirical Fisher, observed labels)")

register("curvature_matrices", ["run", "matrix"], [
    Col("run", "string", "run identifier"),
    MATRIX,
] + EVAL + [
    Col("lambda_max", "float64", "largest Ritz value of one Lanczos run (Rademacher start)"),
    Col("residual", "float64", "‖Mv − λv‖ of its Ritz vector"),
    Col("converged", "bool", "residual ≤ hessian.eigs.tol × largest |Ritz value|"),
    Col("lambda_min", "float64", "smallest Ritz value of the same run (≥ 0 up to rounding for "
        "ggn and ef, which are PSD; for H the run's estimate, not converged in general)"),
    Col("trace", "float64", "Hutchinson estimate of tr(M) (NaN when its probes are 0)"),
    Col("trace_std_error", "float64", "its standard error over the probes"),
    Col("lanczos_steps", "int64", "Lanczos steps (products) of the λ_max and density run"),
    Col("n_probes", "int64", "Hutchinson probes"),
    Col("n_mv", "int64", "matrix-vector products used for this matrix"),
    Col("seconds", "float64", "wall-clock seconds for this matrix"),
])

register("matrix_density", ["run", "matrix", "eigenvalue"], [
    Col("run", "string", "run identifier"),
    MATRIX,
    Col("eigenvalue", "float64", "grid point λ"),
    Col("density", "float64", "one-start SLQ spectral density at λ (integrates to 1)"),
    Col("sigma", "float64", "Gaussian smoothing width (landscape.hessian.density)"),
])

register("layer_curvature", ["run", "matrix", "layer"], [
    Col("run", "string", "run identifier"),
    MATRIX,
    Col("layer", "string", "module whose own parameters form the block, e.g. conv1 or fc2"),
    Col("position", "int64", "the layer's order in the network (0: the input side)"),
    Col("n_params", "int64", "parameters in the block (weights and bias)"),
    Col("lambda_max", "float64", "largest eigenvalue of the layer's diagonal block M_ll "
        "(Lanczos in the block; NaN when the matrix is not in hessian.matrices.layer_matrices)"),
    Col("residual", "float64", "‖M_ll v − λv‖ of its Ritz vector"),
    Col("converged", "bool", "residual ≤ hessian.eigs.tol × largest |Ritz value|"),
    Col("trace", "float64", "tr(M_ll) by the matrix's Hutchinson probes restricted to the block "
        "(E[z_lᵀ(Mz)_l] = tr(M_ll); the blocks' traces sum to the matrix's trace estimate)"),
    Col("trace_std_error", "float64", "its standard error over the probes"),
    Col("n_mv", "int64", "extra products of the block's Lanczos run"),
])
