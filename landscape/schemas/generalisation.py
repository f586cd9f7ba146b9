"""Table schemas of the generalisation study: the measures and their
rank correlations with the gap (landscape/generalisation.py, stages/generalisation.py).

One ``register`` call per table: name, row key and columns (how and why: ``landscape.schemas``).
"""

from __future__ import annotations

from ..tables import RUN_HPARAMS, Col, register

# The generalisation study (stages/generalisation.py): one row per finished run, every
# measure of the pipeline beside the generalisation gaps.
register("measures", ["run"], RUN_HPARAMS + [
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
])

register("correlations", ["gap", "measure"], [
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
])

register("granulated", ["gap", "measure", "hparam"], [
    Col("measure", "string", "measure (a measures column)"),
    Col("gap", "string", "the generalisation gap"),
    Col("hparam", "string", "the hyper-parameter that varies within each group"),
    Col("psi", "float64", "ψ_h: mean τ of sign·measure with the gap over the groups (NaN: "
        "no group)"),
    Col("n_groups", "int64", "groups averaged (same other hyper-parameters and seed, ≥ 2 "
        "values of hparam)"),
])
