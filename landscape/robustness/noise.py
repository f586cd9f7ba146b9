"""Robustness to Gaussian weight noise: loss and accuracy of θ + δ for random δ of growing size.

Two noise models, both Gaussian with independent entries, both linear in the noise level σ:

* ``absolute``: δ_i ~ N(0, σ²) for every trainable entry (biases and BatchNorm affine
  parameters included), as the original assignment perturbed its network. σ is in weight units,
  so the result depends on how the weights are scaled (Dinh et al. 2017).
* ``relative``: per *filter* f of Li et al. (2018), Sec. 4 — an output channel of a conv weight,
  a row of a linear weight, a single entry of a 1-D tensor (bias, BatchNorm weight/bias), see
  ``landscape.params.filter_norms`` — with n_f entries and norm ‖θ_f‖::

      δ_f = σ · (‖θ_f‖ / √n_f) · z_f,    z_f ~ N(0, I_{n_f}),

  i.e. every entry of the filter gets the same std σ·rms(θ_f). Hence E‖δ_f‖² = σ²‖θ_f‖²: the
  perturbation of each filter has norm ≈ σ·‖θ_f‖ (relative spread 1/√(2 n_f)), and for 1-D
  tensors (n_f = 1) the std is σ·|θ_i|. Rescaling any filter by a > 0 rescales its noise by a,
  so σ is dimensionless and the curve is unchanged by the ReLU rescalings of Dinh et al. (2017)
  that leave the function unchanged. This is the Gaussian counterpart of Li et al.'s filter
  normalisation (there each filter of a direction is rescaled to ‖θ_f‖ exactly).

Seeds: draw ``d`` uses the standard-normal z drawn on the CPU from ``torch.Generator`` seeded
with ``noise_seed(seed, d)`` (then moved to the weights' device), for *every* σ and both modes
(common random numbers): along σ each draw walks one random ray θ + σ·u_d, so the curve is smooth
in σ and the two modes are paired. σ = 0 is θ bitwise.

``robustness_curve`` evaluates every point in place through an open
``landscape.evaluator.PointEvaluator`` (no model copies; the model is restored bitwise when the
evaluator closes); BatchNorm statistics are re-estimated at each point iff the evaluator was
given ``bn_data``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from ..directions import derived_seed, gaussian_like
from ..evaluator import PointEvaluator
from ..params import ParamSet, detached, filter_norms

MODES = ("absolute", "relative")
CURVE_COLUMNS = ["mode", "sigma", "draw", "split", "loss", "accuracy"]


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"Unsupported noise mode {mode!r}. Supported modes are {list(MODES)}.")


def noise_seed(seed: int, draw: int) -> int:
    """The 63-bit seed of noise draw ``draw`` under the study seed ``seed`` (shared by all σ and
    both modes)."""
    return derived_seed(seed, f"weight-noise:{int(draw)}")


def noise_scale(weights: Sequence[torch.Tensor], mode: str) -> ParamSet:
    """Per-entry standard deviation of the noise at σ = 1, shaped like ``weights``.

    ``absolute``: ones. ``relative``: ‖θ_f‖/√n_f for every entry of filter f (for 1-D tensors
    |θ_i|, for 0-d tensors |θ|).
    """
    check_mode(mode)
    out: ParamSet = []
    for w in weights:
        w = w.detach()
        if mode == "absolute":
            out.append(torch.ones_like(w))
            continue
        n_f = w[0].numel() if w.dim() > 0 else 1
        rms = filter_norms(w) / math.sqrt(n_f)  # [w.shape[0]] (or [1] for 0-d)
        out.append((rms.reshape(-1, *([1] * (w.dim() - 1))) if w.dim() > 0 else rms.reshape(()))
                   .expand_as(w).clone())
    return out


def noise_direction(weights: Sequence[torch.Tensor], sigma: float, mode: str = "relative",
                    seed: int = 0) -> ParamSet:
    """One Gaussian perturbation δ of the weights (module docstring for the two ``mode``s).

    ``weights``: parameter set θ (any device/dtype). ``sigma``: noise level (weight units for
    ``absolute``, a fraction of the filter norm for ``relative``). ``seed``: seed of the CPU
    generator of the standard-normal draw z (use ``noise_seed(study_seed, draw)``). Returns
    δ = σ·scale⊙z, a new parameter set shaped like ``weights``, on their device and dtype.
    """
    check_mode(mode)
    if not sigma >= 0:
        raise ValueError(f"sigma = {sigma} is not allowed: expected σ ≥ 0")
    z = gaussian_like(weights, seed)
    return [float(sigma) * s * zi for s, zi in zip(noise_scale(weights, mode), z, strict=True)]


def robustness_curve(evaluator: PointEvaluator, sigmas: Iterable[float],
                     modes: Sequence[str] = MODES, draws: int = 3, seed: int = 0,
                     progress: bool = False) -> pd.DataFrame:
    """Loss and accuracy under weight noise, for every mode × σ × draw × split.

    ``evaluator``: an *open* ``PointEvaluator`` (inside its ``with`` block) holding the splits to
    evaluate; each point θ + σ·u_d (u_d = ``noise_direction(θ, 1, mode, noise_seed(seed, d))``)
    is written into the model in place and evaluated with ``evaluator.at``. σ = 0 is evaluated
    once and reported for every draw: it is θ bitwise, so without ``bn_data`` it reproduces the
    checkpoint's numbers exactly (with ``bn_data`` it is θ with re-estimated BatchNorm
    statistics, like every other point). Non-finite losses are kept as they are (accuracy stays
    meaningful).

    Returns a DataFrame with columns ``mode`` (str), ``sigma`` (float, as given), ``draw`` (int,
    0-based), ``split`` (str), ``loss`` (mean cross-entropy, nats), ``accuracy`` (fraction in
    [0, 1]); rows ordered by mode, σ (as given), draw, split.
    """
    from tqdm.auto import tqdm

    for m in modes:
        check_mode(m)
    if draws < 1:
        raise ValueError(f"draws = {draws} is not allowed: expected ≥ 1")
    sigmas = [float(s) for s in sigmas]
    bad = [s for s in sigmas if not (s >= 0 and math.isfinite(s))]
    if bad:
        raise ValueError(f"sigmas {bad} are not allowed: expected finite σ ≥ 0")

    base = evaluator.at()  # also leaves θ (bitwise) in the model's tensors
    theta = detached(evaluator.params)
    rows: list[dict] = []
    work = [(m, d) for m in modes for d in range(draws)]
    units = {}
    for m, d in tqdm(work, desc="weight noise", disable=not progress, mininterval=2.0):
        if any(s > 0 for s in sigmas):
            units[m, d] = evaluator.adopt(noise_direction(theta, 1.0, m, noise_seed(seed, d)))
        for s in sigmas:
            res = base if s == 0 else evaluator.at(terms=[(units[m, d], s)])
            rows += [{"mode": m, "sigma": s, "draw": d, "split": split, "loss": loss,
                      "accuracy": acc} for split, (loss, acc) in res.items()]
        units.pop((m, d), None)
    df = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    # generated draw by draw (one noise tensor alive at a time); reorder to mode, σ, draw, split
    m_index = {m: i for i, m in enumerate(modes)}
    s_index = {s: i for i, s in enumerate(dict.fromkeys(sigmas))}
    key = pd.DataFrame({"m": df["mode"].map(m_index), "s": df["sigma"].map(s_index),
                        "d": df["draw"]})
    order = key.sort_values(["m", "s", "d"], kind="stable").index
    return df.loc[order].reset_index(drop=True)


def mean_curve(df: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Mean and standard error over draws per mode and σ for one split: columns mode, sigma,
    loss, accuracy, accuracy_se (standard error of the mean accuracy; 0 for one draw), draws."""
    sel = df[df["split"] == split]
    if sel.empty:
        raise ValueError(f"split {split!r} is not in the curve; it has {sorted(set(df['split']))}")
    g = sel.groupby(["mode", "sigma"], sort=True)
    out = g.agg(loss=("loss", "mean"), accuracy=("accuracy", "mean"),
                accuracy_sd=("accuracy", "std"), draws=("draw", "nunique")).reset_index()
    out["accuracy_se"] = (out["accuracy_sd"].fillna(0.0) / np.sqrt(out["draws"])).astype(float)
    return out.drop(columns="accuracy_sd")


SIGMA_HALF_CENSORING = ("crossed", "left", "right", "undefined")


def sigma_half(df: pd.DataFrame, split: str = "train", chance: float = 0.1,
               mode: str | None = None) -> tuple[float, str]:
    """Noise level σ½ at which the mean accuracy has fallen half-way from clean to chance, with
    censoring on the σ grid.

    With a₀ the accuracy at σ = 0 and ā(σ) the mean over draws, σ½ solves
    ā(σ) = chance + (a₀ − chance)/2. Returns ``(value, censoring)``:

    - ``"crossed"``: the first σ > 0 (in increasing order) with ā(σ) ≤ the threshold and its
      predecessor bracket σ½; the value is the linear interpolation of ā in log σ between them;
    - ``"left"``: ā is already at or below the threshold at the smallest σ > 0, so σ½ ≤ that σ
      (left-censored); the value is that grid bound;
    - ``"right"``: ā stays above the threshold on the whole grid, so σ½ > the largest σ
      (right-censored); the value is that grid bound;
    - ``"undefined"``: a₀ ≤ chance (no half-way level); the value is NaN.

    A censored value is a bound in the right direction, so ranks stay correct: a left-censored
    run ranks at or below every crossed run and a right-censored one at or above (ties among
    runs censored at the same bound). ``df``: the output of ``robustness_curve``; it must contain
    σ = 0. ``mode``: which noise mode (may be omitted when ``df`` has one). Units: those of σ.
    """
    modes = sorted(set(df["mode"]))
    if mode is None:
        if len(modes) != 1:
            raise ValueError(f"the curve has modes {modes}; pass mode= one of them")
        mode = modes[0]
    if mode not in modes:
        raise ValueError(f"mode {mode!r} is not in the curve; it has {modes}")
    curve = mean_curve(df[df["mode"] == mode], split)
    zero = curve[curve["sigma"] == 0.0]
    if zero.empty:
        raise ValueError("the curve has no σ = 0 rows; include 0 in sigmas to know the clean "
                         "accuracy")
    a0 = float(zero["accuracy"].iloc[0])
    pos = curve[curve["sigma"] > 0].sort_values("sigma")
    if not a0 > chance or pos.empty:
        return math.nan, "undefined"
    target = chance + 0.5 * (a0 - chance)
    s, a = pos["sigma"].to_numpy(float), pos["accuracy"].to_numpy(float)
    below = np.nonzero(a <= target)[0]
    if below.size == 0:
        return float(s[-1]), "right"
    if below[0] == 0:
        return float(s[0]), "left"
    i = int(below[0])
    l0, l1 = math.log(s[i - 1]), math.log(s[i])
    a_hi, a_lo = a[i - 1], a[i]
    frac = 0.0 if a_hi == a_lo else (a_hi - target) / (a_hi - a_lo)
    return math.exp(l0 + frac * (l1 - l0)), "crossed"


def sigma_at_half_accuracy(df: pd.DataFrame, split: str = "test", chance: float = 0.1,
                           mode: str | None = None) -> float:
    """σ½ of ``sigma_half`` when the grid brackets it, NaN otherwise (not crossed on the grid,
    crossed already at the smallest σ > 0, or a₀ ≤ chance). For ranking runs use ``sigma_half``,
    which keeps censored runs at their grid bound instead of dropping them."""
    value, censoring = sigma_half(df, split, chance, mode)
    return value if censoring == "crossed" else math.nan
