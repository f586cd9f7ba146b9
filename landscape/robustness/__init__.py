"""Robustness of the trained weights to perturbations, as numbers for the generalisation study.

One measure per module; every function takes a model (or an open
``landscape.evaluator.PointEvaluator``) and in-memory tensors, writes perturbations into the model's
own parameters, restores them bitwise, and returns plain numbers, dicts or DataFrames:

- ``noise``: loss/accuracy under Gaussian weight noise, absolute (N(0, σ²)) or relative
  (per-filter, σ·‖θ_f‖/√n_f per entry); ``robustness_curve``, ``sigma_half`` (with censoring
  at the grid bounds), ``sigma_at_half_accuracy``
- ``box_sharpness``: ε-sharpness (Keskar et al. 2017) and adaptive sharpness, worst and average case
  (Kwon et al. 2021; Andriushchenko et al. 2023), by projected sign-gradient ascent in a box
- ``pacbayes``: PAC-Bayes flatness 1/σ² by bisection on σ (Jiang et al. 2020), plain and
  magnitude-aware

Scale: "absolute" measures (absolute noise, ε-sharpness, ``pacbayes.flatness``) change under the
function-preserving ReLU rescalings of Dinh et al. (2017); the "relative"/"adaptive" ones
(relative noise, adaptive sharpness, ``pacbayes.mag.flatness`` with ε' = 0) do not.
"""

from .box_sharpness import (
    adaptive_box,
    adaptive_sharpness,
    adaptive_sharpness_average,
    box_ascent,
    epsilon_box,
    epsilon_sharpness,
    loss_and_grad,
)
from .noise import (
    MODES,
    mean_curve,
    noise_direction,
    noise_scale,
    noise_seed,
    robustness_curve,
    sigma_at_half_accuracy,
    sigma_half,
)
from .pacbayes import MAG_EPS, bisect_sigma, pacbayes_flatness, pacbayes_seed

__all__ = [
    "MAG_EPS", "MODES", "adaptive_box", "adaptive_sharpness", "adaptive_sharpness_average",
    "bisect_sigma", "box_ascent", "epsilon_box", "epsilon_sharpness", "loss_and_grad",
    "mean_curve", "noise_direction", "noise_scale", "noise_seed", "pacbayes_flatness",
    "pacbayes_seed", "robustness_curve", "sigma_at_half_accuracy", "sigma_half",
]
