"""Table schemas of robustness: weight noise and flatness measures
(landscape/robustness/, stages/robustness.py).

One ``register`` call per table: name, row key and columns (how and why: ``landscape.schemas``).
"""

from __future__ import annotations

from ..tables import EVAL, Col, register

# Weight-noise curves (landscape/robustness/noise.py): every mode × σ × draw × split of one
# run, on seeded evaluation subsets. σ = 0 is the unperturbed model (one evaluation, listed
# under every draw).
register("robustness", ["run", "mode", "sigma", "draw", "split"], [
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
])

# Flatness measures of one run (landscape/robustness/box_sharpness.py, pacbayes.py): one row.
register("flatness", ["run"], [
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
    Col("ascent_evaluations", "int64", "loss evaluations over the set in the two ascents "
        "(base, last iterate, and the best iterate unless it is the last or δ = 0: 2-3 each), "
        "besides their gradient passes"),
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
    Col("pacbayes_evaluations", "int64", "accuracy evaluations over the PAC-Bayes subset in the "
        "isotropic search: the clean one plus pacbayes_draws per σ tried"),
    Col("pacbayes_mag_evaluations", "int64", "as pacbayes_evaluations, magnitude-aware search"),
    Col("weight_norm", "float64", "‖θ‖₂ over every trainable entry (Frobenius norm of all "
        "weights and biases)"),
    Col("dist_init", "float64", "‖θ − θ₀‖₂: distance from the initialisation (snapshot at "
        "step 0)"),
    Col("n_params", "int64", "trainable parameters"),
    Col("bn_recomputed", "bool", "BatchNorm statistics re-estimated at every PAC-Bayes point "
        "(the ascents keep the checkpoint's statistics, model in eval mode)"),
    Col("seconds", "float64", "wall-clock seconds of the run's whole robustness job"),
])
