"""What a slice stage measures, as a value: the config's ``slices`` section checked and frozen.

Kept apart from ``landscape.slices`` (which needs torch) so that validating a config, which every
Snakemake start does, stays light and does not make every rule depend on the slicing code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PLANES = ("random", "pca", "hessian")
NORMALIZATIONS = ("filter", "layer", "model", "none")


def check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"Unsupported normalization {normalization!r}. "
                         f"Supported normalizations are {list(NORMALIZATIONS)}.")


@dataclass(frozen=True)
class SliceSpec:
    """What to slice. Coordinates are in units of the direction (α = 1: one full direction).
    Fields mirror the config's ``slices`` section (documented in the schema); build it with
    ``SliceSpec.from_config``."""

    seed: int
    normalization: str
    zero_bias_bn: bool
    random_1d: int
    range_1d: float
    points_1d: int
    line_range: tuple[float, float]
    planes: tuple[str, ...]
    range_2d: float
    points_2d: int
    pca_margin: float
    pca_centre: bool
    hessian_rise: float = 1.0
    hessian_points_2d: int = 9

    def __post_init__(self) -> None:
        from .errors import ConfigError

        try:
            self._check()
        except ValueError as exc:  # a bad `slices` section: a user error, one line
            raise ConfigError(str(exc)) from None

    def _check(self) -> None:
        check_normalization(self.normalization)
        bad = [p for p in self.planes if p not in PLANES]
        if bad:
            raise ValueError(f"Unsupported planes {bad}. Supported planes are {list(PLANES)}.")
        for key in ("points_1d", "points_2d", "hessian_points_2d"):
            n = getattr(self, key)
            if n < 3 or n % 2 == 0:
                raise ValueError(f"slices.{key} = {n} is not allowed: expected an odd number ≥ 3 "
                                 "(so that α = 0, the trained weights, is a grid point)")
        lo, hi = self.line_range
        if not hi > lo or not lo <= 1.0 or not hi >= 0.0:
            raise ValueError(f"slices.line_range = {list(self.line_range)} is not allowed: "
                             "expected [lo, hi] with lo < hi overlapping [0, 1]")
        if not self.hessian_rise > 0:
            raise ValueError(f"slices.hessian_rise = {self.hessian_rise} is not allowed: "
                             "expected > 0")
        if self.random_1d < 0:
            raise ValueError(f"slices.random_1d = {self.random_1d} is not allowed: expected ≥ 0")

    @classmethod
    def from_config(cls, cfg: Mapping) -> SliceSpec:
        """Build from the config's ``slices`` section (keys that are not fields are ignored;
        missing ones take the schema's defaults, the only place defaults are written)."""
        from .schema import with_defaults

        names = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in with_defaults(dict(cfg), "slices").items() if k in names}
        for k in ("line_range", "planes"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)


def check_config(config: Mapping, runs) -> None:
    """The slices section's cross-key rules (STAGE ``checks`` of slice_directions): a valid
    grid (odd sizes, ranges, planes), ``slices.seeds`` naming seeds the study trains, and a
    hessian plane only where the curvature stage computes two eigenvectors."""
    from .errors import ConfigError
    from .study import runs_with_seeds

    try:
        spec = SliceSpec.from_config(config["slices"])
        runs_with_seeds(runs, config["slices"]["seeds"], "slices.seeds")
    except ValueError as exc:
        raise ConfigError(f"config error: {exc}") from None
    top_k = config.get("hessian", {}).get("eigs", {}).get("top_k")
    if "hessian" in spec.planes and top_k is not None and top_k < 2:
        raise ConfigError(f"config error: hessian.eigs.top_k = {top_k} is not allowed with "
                          f"slices.planes = {list(spec.planes)}: expected top_k ≥ 2 (the "
                          "hessian plane is spanned by the top two eigenvectors), or planes "
                          "without hessian")
