"""Curvature of the loss: exact Hessian-vector products, extreme eigenvalues, trace, spectral
density and sharpness along training. One algorithm per module:

- ``operator``: ``HessianOperator`` (H of the mean loss over an evaluation set; flat vectors)
- ``lanczos``: Lanczos with full reorthogonalisation → top-k and λ_min with residuals
- ``power``: power iteration with deflation → largest |λ| (PyHessian's method, for comparison)
- ``trace``: Hutchinson and Hutch++ with standard errors
- ``density``: stochastic Lanczos quadrature spectral density
- ``sharpness``: λ_max over snapshots, edge-of-stability thresholds
- ``analysis``: everything for one model, as table rows
"""

from .density import Density, spectral_density
from .lanczos import EigResult, NonFiniteError, lanczos, lanczos_eigs, random_start
from .operator import HessianOperator, flatten
from .power import PowerResult, power_iteration
from .sharpness import sharpness_trajectory, stability_threshold, two_over_lr
from .trace import TraceEstimate, estimate_trace, hutchinson, hutchpp

__all__ = [
    "Density", "EigResult", "HessianOperator", "NonFiniteError", "PowerResult",
    "TraceEstimate", "estimate_trace", "flatten", "hutchinson", "hutchpp", "lanczos",
    "lanczos_eigs", "power_iteration", "random_start", "sharpness_trajectory",
    "spectral_density", "stability_threshold", "two_over_lr",
]
