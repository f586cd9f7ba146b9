"""Rank correlation between a measure and the generalisation gap over the runs of a study.

Jiang, Neyshabur, Mobahi, Krishnan & Bengio (2020), "Fantastic generalization measures and where
to find them", Sec. 4 and 5:

* **Kendall's τ** over all runs between a measure μ and the gap g (e.g. train − test accuracy,
  or test − train loss). We use τ_b (``scipy.stats.kendalltau``'s default), which equals the
  paper's τ when there are no ties and corrects the denominator for ties. τ is for the measure as
  given: a complexity measure that predicts a larger gap has τ > 0; negate a "robustness" measure
  (larger = flatter) to read it the same way.
* **Granulated τ, Ψ** (their Eq. 4): for each hyper-parameter h of ``hparams``, the runs are
  grouped by the values of all the *other* hyper-parameters (and of the ``fixed`` columns, e.g.
  the seed, when given); in each group where h takes at least two values, τ is computed over the
  group's runs; ψ_h is the mean over those groups, and Ψ the mean of ψ_h over the
  hyper-parameters that have at least one group. Ψ asks whether μ tracks the gap when *one*
  hyper-parameter changes at a time, which the overall τ can hide (a measure that only separates
  two model families has a large τ and Ψ ≈ 0). Columns outside ``hparams`` and ``fixed`` are not
  held fixed (with ``seed`` among neither, runs that differ only in the seed share a group).
* **Bootstrap intervals**: runs are resampled with replacement (``n_boot`` times, seed given) and
  the statistic recomputed; the interval is the percentile interval at ``level``.

Runs whose measure or gap is NaN are dropped first (per measure).

For this pipeline's study: ``MEASURES`` lists the measures ranked (with the sign that makes each
a complexity measure), ``measure_table`` joins the runs, flatness, robustness and curvature
tables into one row per finished run, and ``study_correlations`` ranks every measure with Ψ over
the hyper-parameters the runs vary, seed held fixed.

Example (run as a doctest by tests/test_generalisation.py): four runs on a 2 × 2 grid; the measure
follows the gap when lr changes at bs = 32 only, and always when bs changes::

    >>> import pandas as pd
    >>> runs = pd.DataFrame({"lr": [0.1, 0.2, 0.1, 0.2], "bs": [32, 32, 128, 128],
    ...                      "mu": [1.0, 2.0, 4.0, 3.0], "gap": [0.1, 0.2, 0.3, 0.4]})
    >>> round(kendall(runs["mu"], runs["gap"])[0], 12)  # 5 concordant, 1 discordant: (5 − 1)/6
    0.666666666667
    >>> psi, per, n_groups = granulated_tau(runs, "mu", "gap", ["lr", "bs"])
    >>> per, n_groups  # ψ_lr = (1 + (−1))/2, ψ_bs = (1 + 1)/2
    ({'lr': 0.0, 'bs': 1.0}, {'lr': 2, 'bs': 2})
    >>> psi
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .schemas.hessian import lambda_max_rows
from .study import HPARAMS, varying_with
from .study import varied_hparams as study_varied

CORRELATION_COLUMNS = ["measure", "tau", "p_value", "n", "tau_lo", "tau_hi", "psi", "psi_lo",
                       "psi_hi", "n_groups"]


def _valid(measure, gap) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(measure, dtype=float)
    g = np.asarray(gap, dtype=float)
    if m.shape != g.shape or m.ndim != 1:
        raise ValueError(f"measure and gap must be 1-D of the same length, got {m.shape} and "
                         f"{g.shape}")
    ok = np.isfinite(m) & np.isfinite(g)
    return m[ok], g[ok]


def kendall(measure, gap) -> tuple[float, float, int]:
    """Kendall's τ_b between ``measure`` and ``gap`` (1-D, same length; pairs with a NaN/inf in
    either are dropped). Returns (τ in [−1, 1], two-sided p-value of τ = 0 (scipy: exact for small
    samples without ties, else the normal approximation), n pairs used). τ and p are NaN when
    n < 2 or either side is constant."""
    m, g = _valid(measure, gap)
    n = int(m.size)
    if n < 2:
        return math.nan, math.nan, n
    res = stats.kendalltau(m, g)
    return float(res.statistic), float(res.pvalue), n


def tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's τ_b of two finite 1-D arrays by direct pair counting (O(n²) memory; the fast path
    used inside the bootstrap): Σ sign(Δx)sign(Δy) / √(#pairs untied in x · #pairs untied in y).
    NaN when n < 2 or either side is constant."""
    if x.size < 2:
        return math.nan
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    den = math.sqrt(float(np.count_nonzero(sx)) * float(np.count_nonzero(sy)))
    return float((sx * sy).sum()) / den if den > 0 else math.nan


class _Groups:
    """Group codes of the runs for every hyper-parameter (computed once, reused per resample)."""

    def __init__(self, df: pd.DataFrame, hparams: Sequence[str], fixed: Sequence[str] = ()):
        missing = [c for c in [*hparams, *fixed] if c not in df.columns]
        if missing:
            raise KeyError(f"columns {missing} are not in the runs table; it has "
                           f"{list(df.columns)}")
        self.hparams = list(hparams)
        self.group: dict[str, np.ndarray] = {}  # [runs, groups] indicator per hyper-parameter
        self.value: dict[str, np.ndarray] = {}  # [runs, values of h] indicator
        for h in self.hparams:
            others = [c for c in [*self.hparams, *fixed] if c not in varying_with(h)]
            if others:
                codes = df.groupby(others, dropna=False, sort=False).ngroup().to_numpy()
            else:
                codes = np.zeros(len(df), dtype=np.int64)
            values = pd.factorize(df[h], use_na_sentinel=False)[0]
            self.group[h] = (codes[:, None] == np.arange(codes.max(initial=-1) + 1)).astype(float)
            self.value[h] = (values[:, None] == np.arange(values.max(initial=-1) + 1)).astype(float)

    def psi(self, rows: np.ndarray, m: np.ndarray, g: np.ndarray
            ) -> tuple[float, dict[str, float], dict[str, int]]:
        """Ψ over the runs ``rows`` (indices into the table, repeats allowed; measure and gap
        finite at those rows), with ``m``/``g`` the full measure/gap arrays.

        All groups at once: with s_ij = sign(Δm)·sign(Δg) over the pairs of the selected runs
        and G the run × group indicator, a group's τ_b numerator is (GᵀSG)_kk and its
        denominator √((GᵀAG)_kk (GᵀBG)_kk) with A, B the untied-pair indicators (each pair is
        counted twice in all three, which cancels)."""
        x, y = m[rows], g[rows]
        sx = np.sign(x[:, None] - x[None, :])
        sy = np.sign(y[:, None] - y[None, :])
        s, a, b = sx * sy, np.abs(sx), np.abs(sy)
        per: dict[str, float] = {}
        count: dict[str, int] = {}
        for h in self.hparams:
            ind = self.group[h][rows]                                      # [n, groups]
            varies = ((ind.T @ self.value[h][rows]) > 0).sum(axis=1) >= 2  # ≥ 2 values of h
            num = (ind * (s @ ind)).sum(axis=0)
            den = np.sqrt((ind * (a @ ind)).sum(axis=0) * (ind * (b @ ind)).sum(axis=0))
            ok = varies & (den > 0)
            taus = num[ok] / den[ok]
            per[h] = float(taus.mean()) if taus.size else math.nan
            count[h] = int(taus.size)
        used = [v for v in per.values() if math.isfinite(v)]
        return (float(np.mean(used)) if used else math.nan), per, count


def granulated_tau(df: pd.DataFrame, measure: str, gap: str, hparams: Sequence[str],
                   fixed: Sequence[str] = ()) -> tuple[float, dict[str, float], dict[str, int]]:
    """Jiang et al.'s granulated Kendall coefficient Ψ of column ``measure`` against column
    ``gap`` over the runs (rows) of ``df`` (module docstring).

    A group counts when it has ≥ 2 runs (after dropping NaN measure/gap), ≥ 2 distinct values of
    the hyper-parameter, and a defined τ (neither side constant). Returns (Ψ, {h: ψ_h},
    {h: number of groups averaged}); ψ_h is NaN for a hyper-parameter without groups, and Ψ NaN
    when no hyper-parameter has one (or ``hparams`` is empty: a study that varies only seeds).
    """
    groups = _Groups(df, hparams, fixed)
    m = df[measure].to_numpy(dtype=float)
    g = df[gap].to_numpy(dtype=float)
    rows = np.nonzero(np.isfinite(m) & np.isfinite(g))[0]
    return groups.psi(rows, m, g)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values, controlling the family-wise error rate over
    the finite entries of ``p_values`` (NaN entries stay NaN and do not count as tests).

    With the m finite p-values sorted, p₍₁₎ ≤ … ≤ p₍ₘ₎, the adjusted value of the i-th is
    max over j ≤ i of min(1, (m − j + 1)·p₍ⱼ₎); rejecting where it is below α keeps the chance
    of any false rejection among the m at most α.

        >>> holm([0.01, 0.04, 0.03, float("nan")]).round(6).tolist()
        [0.03, 0.06, 0.06, nan]
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = np.nonzero(np.isfinite(p))[0]
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def resample_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n] row indices drawn with replacement by ``numpy.random.default_rng(seed)``."""
    if n_boot < 1:
        raise ValueError(f"n_boot = {n_boot} is not allowed: expected ≥ 1")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def percentile_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite ``values`` at ``level`` ((NaN, NaN) if none)."""
    if not 0 < level < 1:
        raise ValueError(f"level = {level} is not allowed: expected 0 < level < 1")
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_ci(df: pd.DataFrame, fn: Callable[[pd.DataFrame], float], n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the statistic ``fn(runs) -> float`` at ``level``,
    resampling the rows (runs) of ``df`` with replacement ``n_boot`` times
    (``resample_indices(len(df), n_boot, seed)``). Resamples where ``fn`` is not finite are left
    out. Returns (lo, hi)."""
    idx = resample_indices(len(df), n_boot, seed)
    return percentile_interval([fn(df.iloc[r]) for r in idx], level)


def correlations(runs_df: pd.DataFrame, measures: Sequence[str], gap_col: str,
                 hparams: Sequence[str], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95, fixed: Sequence[str] = ()) -> pd.DataFrame:
    """One row per measure: how it ranks the runs' generalisation gap.

    ``runs_df``: one row per run with the measure columns, ``gap_col`` and the ``hparams``
    columns. Columns of the result:

    - ``measure`` (str): the measure's column name
    - ``tau``, ``p_value``, ``n``: ``kendall`` over all runs with finite measure and gap
    - ``tau_lo``, ``tau_hi``: bootstrap percentile interval of τ at ``level`` (runs resampled)
    - ``psi``: granulated τ Ψ (``granulated_tau`` with ``hparams``, ``fixed``)
    - ``psi_lo``, ``psi_hi``: bootstrap interval of Ψ (same resamples as τ)
    - ``n_groups`` (int): groups averaged in Ψ, summed over the hyper-parameters

    Every measure is bootstrapped on the same resamples of the runs (paired), equal to
    ``bootstrap_ci(runs_df, fn, n_boot, seed, level)`` with ``fn`` the statistic (τ computed by
    ``tau_b``, which equals scipy's τ_b up to rounding).
    """
    groups = _Groups(runs_df, hparams, fixed)
    idx = resample_indices(len(runs_df), n_boot, seed)
    g = runs_df[gap_col].to_numpy(dtype=float)
    rows = []
    for name in measures:
        m = runs_df[name].to_numpy(dtype=float)
        ok = np.isfinite(m) & np.isfinite(g)
        tau, p, n = kendall(m, g)
        psi, _, count = groups.psi(np.nonzero(ok)[0], m, g)
        boot_tau, boot_psi = [], []
        for r in idx:
            sel = r[ok[r]]
            boot_tau.append(tau_b(m[sel], g[sel]))
            boot_psi.append(groups.psi(sel, m, g)[0])
        tau_lo, tau_hi = percentile_interval(boot_tau, level)
        psi_lo, psi_hi = percentile_interval(boot_psi, level)
        rows.append({"measure": name, "tau": tau, "p_value": p, "n": n, "tau_lo": tau_lo,
                     "tau_hi": tau_hi, "psi": psi, "psi_lo": psi_lo, "psi_hi": psi_hi,
                     "n_groups": int(sum(count.values()))})
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def granulated_table(runs_df: pd.DataFrame, measures: Sequence[str], gap_col: str,
                     hparams: Sequence[str], fixed: Sequence[str] = ()) -> pd.DataFrame:
    """ψ per measure and hyper-parameter (long form): columns measure, hparam, psi (ψ_h, NaN
    without groups), n_groups (groups averaged)."""
    groups = _Groups(runs_df, hparams, fixed)
    g = runs_df[gap_col].to_numpy(dtype=float)
    rows = []
    for name in measures:
        m = runs_df[name].to_numpy(dtype=float)
        _, per, count = groups.psi(np.nonzero(np.isfinite(m) & np.isfinite(g))[0], m, g)
        rows += [{"measure": name, "hparam": h, "psi": per[h], "n_groups": count[h]}
                 for h in hparams]
    return pd.DataFrame(rows, columns=["measure", "hparam", "psi", "n_groups"])


# ---------------------------------------------------------------- the measures of this pipeline

@dataclass(frozen=True)
class Measure:
    """A column of the ``measures`` table that the study ranks against the gap.

    ``sign``: +1 for a sharpness/complexity measure (larger = sharper), −1 for a robustness
    measure (larger = flatter), so that sign·measure is a complexity measure and τ > 0 always
    reads "sharper ↔ larger gap"."""

    name: str
    family: str
    sign: int
    label: str


MEASURES: tuple[Measure, ...] = (
    Measure("lambda_max", "curvature", 1, "λ_max of the Hessian"),
    Measure("hessian_trace", "curvature", 1, "trace of the Hessian"),
    Measure("eps_sharpness", "sharpness", 1, "ε-sharpness (%)"),
    Measure("adaptive_worst", "sharpness", 1, "adaptive sharpness, worst (nats)"),
    Measure("adaptive_average", "sharpness", 1, "adaptive sharpness, average (nats)"),
    Measure("pacbayes_flatness", "pac-bayes", 1, "PAC-Bayes 1/σ²"),
    Measure("pacbayes_mag_flatness", "pac-bayes", 1, "PAC-Bayes 1/σ², magnitude-aware"),
    Measure("sigma_half_absolute", "noise", -1, "σ½, absolute noise"),
    Measure("sigma_half_relative", "noise", -1, "σ½, relative noise"),
    Measure("weight_norm", "norm", 1, "‖θ‖₂"),
    Measure("dist_init", "norm", 1, "‖θ − θ₀‖₂"),
)
STUDY_HPARAMS = tuple(h for h in HPARAMS if h != "seed")  # what τ and Ψ are over
RUN_COLUMNS = ["run", *HPARAMS,
               "train_loss", "train_acc", "test_loss", "test_acc", "gap_loss", "gap_error"]
FLATNESS_COLUMNS = ["eps_sharpness", "adaptive_worst", "adaptive_average", "pacbayes_sigma",
                    "pacbayes_flatness", "pacbayes_mag_sigma", "pacbayes_mag_flatness",
                    "weight_norm", "dist_init"]


def measure_table(runs: pd.DataFrame, flatness: pd.DataFrame, robustness: pd.DataFrame,
                  eigs: pd.DataFrame | None = None, trace: pd.DataFrame | None = None,
                  chance: float = 0.1) -> pd.DataFrame:
    """One row per finished run (``status == "ok"``): its hyper-parameters, losses, accuracies
    and gaps (``runs`` table), the flatness measures (``flatness`` table), λ_max (``eigs``: the
    lanczos largest_algebraic k = 1 row) and tr(H) (``trace``: hutchinson), and per noise mode
    σ½ with its censoring (``sigma_half`` of the *training* accuracy in the ``robustness``
    table, with ``chance``). Like every other measure, σ½ sees the model and training data only
    (Jiang et al. 2020): the test split is what the gap is measured on, so it must not enter a
    measure ranked against that gap. A censored σ½ keeps its grid bound (it ranks correctly);
    ``sigma_half_<mode>_censoring`` says which runs are censored. A measure that was not
    measured for a run is NaN (censoring ``not_measured``). Sorted by run."""
    from .robustness.noise import sigma_half

    out = runs.loc[runs["status"] == "ok", RUN_COLUMNS].reset_index(drop=True)
    out = out.merge(flatness[["run", *FLATNESS_COLUMNS]], on="run", how="left")
    if eigs is not None and len(eigs):
        sel = lambda_max_rows(eigs)
        out = out.merge(sel[["run", "eigenvalue"]].rename(columns={"eigenvalue": "lambda_max"}),
                        on="run", how="left")
    if trace is not None and len(trace):
        sel = trace[trace["method"] == "hutchinson"][["run", "trace"]]
        out = out.merge(sel.rename(columns={"trace": "hessian_trace"}), on="run", how="left")
    for mode in ("absolute", "relative"):
        half = {}
        for run, curve in robustness[robustness["mode"] == mode].groupby("run"):
            half[run] = sigma_half(curve, "train", chance, mode)
        out[f"sigma_half_{mode}"] = out["run"].map(
            {r: v for r, (v, _) in half.items()}).astype(float)
        out[f"sigma_half_{mode}_censoring"] = out["run"].map(
            {r: c for r, (_, c) in half.items()}).astype(object).fillna("not_measured").astype(str)
    for col in ("lambda_max", "hessian_trace"):
        if col not in out:
            out[col] = math.nan
    return out.sort_values("run", kind="stable").reset_index(drop=True)


def varied_hparams(measures: pd.DataFrame) -> list[str]:
    """The hyper-parameters (seed excluded) that take more than one value over the runs."""
    return study_varied(measures, STUDY_HPARAMS)


def study_correlations(measures: pd.DataFrame, gap: str, n_boot: int, seed: int,
                       level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """τ, Ψ and their bootstrap intervals of every ``MEASURES`` entry (times its sign) against
    column ``gap``, Ψ over ``varied_hparams`` with the seed held fixed: (one row per measure as
    ``correlations`` returns plus ``family``, ``sign``, ``gap``, ``p_holm`` (``holm`` over the
    measures with a p-value: the family is this study's measures against this gap), ``hparams``,
    ``n_boot``; ψ per
    measure and hyper-parameter as ``granulated_table`` returns plus ``gap``)."""
    hparams = varied_hparams(measures)
    signed = measures.copy()
    for m in MEASURES:
        signed[m.name] = m.sign * measures[m.name].astype(float)
    names = [m.name for m in MEASURES]
    corr = correlations(signed, names, gap, hparams, n_boot, seed, level, fixed=["seed"])
    corr.insert(1, "family", [m.family for m in MEASURES])
    corr.insert(2, "sign", [m.sign for m in MEASURES])
    corr.insert(3, "gap", gap)
    corr.insert(corr.columns.get_loc("p_value") + 1, "p_holm", holm(corr["p_value"]))
    corr["hparams"] = ",".join(hparams)
    corr["n_boot"] = int(n_boot)
    gran = granulated_table(signed, names, gap, hparams, fixed=["seed"])
    gran.insert(1, "gap", gap)
    return corr, gran
