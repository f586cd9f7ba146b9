"""Curvature of the loss: exact Hessian-vector products, extreme eigenvalues, trace, spectral
density and sharpness along training. One algorithm per module:

- ``operator``: ``HessianOperator`` (H of the mean loss over an evaluation set; flat vectors)
- ``lanczos``: Lanczos with full reorthogonalisation → top-k and λ_min with residuals
- ``power``: power iteration with deflation → largest |λ| (PyHessian's method, for comparison)
- ``trace``: Hutchinson and Hutch++ with standard errors
- ``density``: stochastic Lanczos quadrature spectral density
- ``trajectory``: λ_max over training snapshots, edge-of-stability thresholds
- ``analysis``: everything for one model, as table rows
"""

from .density import Density, spectral_density
from .lanczos import EigResult, NonFiniteError, lanczos, lanczos_eigs, random_start
from .operator import HessianOperator
from .power import PowerResult, power_iteration
from .trace import TraceEstimate, estimate_trace, hutchinson, hutchpp
from .trajectory import sharpness_trajectory, stability_threshold, two_over_lr

__all__ = [
    "Density", "EigResult", "HessianOperator", "NonFiniteError", "PowerResult",
    "TraceEstimate", "estimate_trace", "hutchinson", "hutchpp", "lanczos",
    "lanczos_eigs", "power_iteration", "random_start", "sharpness_trajectory",
    "spectral_density", "stability_threshold", "two_over_lr",
]
