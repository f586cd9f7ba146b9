"""Findings generated from the study's tables: every sentence carries the numbers it rests on.

Nothing here is written by hand about results. Each ``finding_*`` function takes tables
(DataFrames with the schemas of ``landscape.tables``) and returns ``Finding`` rows whose wording
is chosen by the data: a comparison is called a difference only when it exceeds the spread that
one evaluation subset gives (``curvature_repeats``), a correlation is called significant only at
p < 0.05 and always shows n. A stage whose tables are absent contributes nothing.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..labels import optimizer_of
from ..study import HPARAMS as STUDY_HPARAMS
from ..study import fixed_with

ALPHA = 0.05
MIN_RUNS_FOR_RANKS = 5  # fewer finished runs: no rank-correlation finding
HPARAMS = list(STUDY_HPARAMS)


@dataclass
class Finding:
    """One generated statement: its stage, the sentence, and the numbers behind it."""

    stage: str
    key: str
    text: str
    numbers: dict = field(default_factory=dict)


def fmt(x: float, digits: int = 3) -> str:
    """A number for prose: ``digits`` significant figures, NaN as 'n/a'."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def describe_run(row) -> str:
    """e.g. 'cnn sgd η=0.02 B=128 s1'."""
    wd = f" wd={row['weight_decay']:g}" if row.get("weight_decay", 0) else ""
    return (f"{row['model']} {optimizer_of(row)} η={row['lr']:g} B={int(row['batch_size'])}"
            f"{wd} s{int(row['seed'])}")


def kendall_sentence(x: np.ndarray, y: np.ndarray, what: str) -> tuple[str, dict]:
    """'τ = … (p = …, n = …): …' with the verdict chosen by p and n."""
    from scipy.stats import kendalltau

    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3:
        return f"{what}: too few runs to test (n = {n})", {"n": n}
    tau, p = kendalltau(x[ok], y[ok])
    tau, p = float(tau), float(p)
    if p < ALPHA:
        verdict = f"{'positive' if tau > 0 else 'negative'}, significant at {ALPHA:g}"
    else:
        verdict = f"not significant with n = {n}"
    return (f"{what}: Kendall τ = {tau:+.2f} (p = {p:.2g}, n = {n}): {verdict}",
            {"tau": tau, "p_value": p, "n": n})


def curvature_per_run(repeats: pd.DataFrame) -> pd.DataFrame:
    """Per run: λ_max and trace mean, standard deviation and count over evaluation subsets."""
    if repeats is None or repeats.empty:
        return pd.DataFrame(columns=["run", "lambda_max", "lambda_max_sd", "trace", "trace_sd",
                                     "subsets"])
    g = repeats.groupby("run")
    out = pd.DataFrame({"lambda_max": g["lambda_max"].mean(),
                        "lambda_max_sd": g["lambda_max"].std(ddof=1),
                        "trace": g["trace"].mean(), "trace_sd": g["trace"].std(ddof=1),
                        "subsets": g.size()})
    return out.reset_index()


def run_table(runs: pd.DataFrame, repeats: pd.DataFrame | None = None,
              extra: list[pd.DataFrame] = ()) -> pd.DataFrame:
    """One row per run: hyper-parameters, status, test accuracy, gaps, curvature (mean and
    spread over subsets) and any per-run columns in ``extra`` (merged on ``run``)."""
    cols = ["run", *HPARAMS, "status", "test_acc", "gap_error", "gap_loss"]
    df = runs[cols].copy()
    if repeats is not None and not repeats.empty:
        df = df.merge(curvature_per_run(repeats), on="run", how="left")
    for e in extra:
        if e is not None and not e.empty:
            df = df.merge(e, on="run", how="left")
    return df.sort_values(HPARAMS,
                          kind="stable").reset_index(drop=True)


def finding_training(runs: pd.DataFrame) -> list[Finding]:
    out = []
    n = len(runs)
    bad = runs[runs["status"] != "ok"]
    if len(bad):
        names = ", ".join(describe_run(r) for _, r in bad.iterrows())
        out.append(Finding("training", "diverged",
                           f"{len(bad)} of {n} runs diverged and are left out of the geometry "
                           f"stages: {names}.", {"diverged": len(bad), "n": n}))
    else:
        out.append(Finding("training", "diverged", f"All {n} runs finished without diverging.",
                           {"diverged": 0, "n": n}))
    ok = runs[runs["status"] == "ok"]
    if ok.empty:
        return out
    stopped = ok[ok["stop_at_loss"].notna()] if "stop_at_loss" in ok else ok.iloc[:0]
    if len(stopped):
        # train.stop_at_loss (Jiang et al. 2020): runs compared at one training loss; a run that
        # hit the epoch budget first is compared at a higher one, so say which
        targets = sorted(float(v) for v in stopped["stop_at_loss"].unique())
        target = " / ".join(f"{v:g}" for v in targets)
        hit = stopped[stopped["stop_reason"] == "target"]
        short = stopped[stopped["stop_reason"] == "budget"]
        text = (f"Training stopped at the first epoch end with training loss ≤ {target} "
                f"(train.stop_at_loss): {len(hit)} of {len(stopped)} finished runs reached it")
        if len(hit):
            e = hit["epochs"]
            text += (f" (after {int(e.min())}–{int(e.max())} epochs, median {e.median():g})"
                     if e.min() != e.max() else f" (after {int(e.min())} epochs)")
        if len(short):
            names = ", ".join(f"{describe_run(r)} (loss {fmt(r['train_loss'])} after "
                              f"{int(r['epochs'])} epochs)" for _, r in short.iterrows())
            text += (f"; {len(short)} hit the epoch budget (train.epochs) first, so their gaps "
                     f"are measured at a higher training loss: {names}.")
        else:
            text += "; none hit the epoch budget (train.epochs) first."
        out.append(Finding("training", "stopping", text,
                           {"target": len(hit), "budget": len(short), "n": len(stopped),
                            "stop_at_loss": targets[0] if len(targets) == 1 else None}))
    keys = [h for h in HPARAMS if h != "seed"]
    g = ok.groupby(keys)["test_acc"].agg(["mean", "std", "count"]).reset_index()
    g = g.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)
    best, worst = g.iloc[0], g.iloc[-1]

    def cfg(r) -> str:
        return f"η={r['lr']:g}, B={int(r['batch_size'])}" + (
            f", wd={r['weight_decay']:g}" if r["weight_decay"] else "") + (
            f", {r['model']}" if ok["model"].nunique() > 1 else "") + (
            f", {optimizer_of(r)}" if ok[["optimizer", "rho"]].drop_duplicates().shape[0] > 1
            else "")

    def acc(r) -> str:
        sd = f" ± {fmt(r['std'], 2)}" if r["count"] > 1 and math.isfinite(r["std"]) else ""
        return f"{r['mean']:.4f}{sd} over {int(r['count'])} seed(s)"

    text = f"Highest mean test accuracy: {cfg(best)} ({acc(best)})"
    if len(g) > 1:
        text += f"; lowest: {cfg(worst)} ({acc(worst)})"
    out.append(Finding("training", "best_config", text + ".",
                       {"best": float(best["mean"]), "worst": float(worst["mean"])}))
    gap = ok["gap_error"]
    out.append(Finding("training", "gap",
                       f"Generalisation gap (test − train error) ranged from {fmt(gap.min())} "
                       f"to {fmt(gap.max())} (median {fmt(gap.median())}, n = {len(gap)}).",
                       {"min": float(gap.min()), "max": float(gap.max()), "n": len(gap)}))
    return out


def _pairs_differing_in(df: pd.DataFrame, col: str) -> list[tuple[pd.Series, pd.Series]]:
    """Pairs of runs equal in every hyper-parameter but ``col`` (smaller value first; ρ varies
    with the optimiser)."""
    others = fixed_with([col])
    pairs = []
    for _, g in df.groupby(others):
        g = g.sort_values(col)
        for (_, a), (_, b) in itertools.combinations(g.iterrows(), 2):
            pairs.append((a, b))
    return pairs


def compare_beyond_spread(pairs, value: str, spread: str) -> dict:
    """Count pairs where the second run's ``value`` is higher / lower than the first's by more
    than 2·√(sd_a² + sd_b²) (sd: spread over evaluation subsets), or neither.

    A pair where either spread is unknown (NaN: one evaluation subset, so no spread) is counted
    as ``unknown_spread`` and never called higher or lower: a difference cannot be told from
    subset noise without a spread. ``pairs`` counts the pairs with a finite difference."""
    up = down = tie = unknown = 0
    for a, b in pairs:
        d = b[value] - a[value]
        if not math.isfinite(d):
            continue
        sds = [float(a[spread]), float(b[spread])]
        if not all(math.isfinite(x) for x in sds):
            unknown += 1
            continue
        margin = 2.0 * math.sqrt(sds[0] ** 2 + sds[1] ** 2)
        if d > margin:
            up += 1
        elif d < -margin:
            down += 1
        else:
            tie += 1
    return {"higher": up, "lower": down, "within_spread": tie, "unknown_spread": unknown,
            "pairs": up + down + tie + unknown}


def spread_clause(c: dict, higher: str, lower: str, source: str = "subset") -> str:
    """'ended sharper in 3 of 6 pairs, flatter in 1, and within the spread in 2' from a
    ``compare_beyond_spread`` count; pairs without a known spread are named, never called.
    ``source``: what the spread is over (evaluation subsets; one per run gives none)."""
    known = c["pairs"] - c["unknown_spread"]
    if known == 0:
        return (f"are not compared in their {c['pairs']} pair(s): with one {source} per run "
                "there is no spread to tell a difference from noise")
    text = (f"{higher} in {c['higher']} of {known} pairs, {lower} in {c['lower']}, and within "
            f"the {source} spread in {c['within_spread']}")
    if c["unknown_spread"]:
        text += f" ({c['unknown_spread']} more pair(s) without a spread: not called)"
    return text


def finding_curvature(table: pd.DataFrame, sharpness: pd.DataFrame | None = None) -> list[Finding]:
    """Statements on λ_max across runs: batch size and η effects beyond the subset spread,
    correlation with the gap, edge of stability."""
    out = []
    ok = table[(table["status"] == "ok") & table["lambda_max"].notna()]
    if ok.empty:
        return out
    subsets = int(ok["subsets"].min())
    if subsets >= 2:
        spread = ok["lambda_max_sd"].median()
        out.append(Finding("curvature", "spread",
                           f"λ_max measured on {subsets} seeded evaluation subsets per run varies "
                           f"by a median standard deviation of {fmt(spread)} (relative "
                           f"{fmt((ok['lambda_max_sd'] / ok['lambda_max']).median(), 2)}); "
                           "differences below twice the combined spread are called ties.",
                           {"subsets": subsets, "median_sd": float(spread)}))
    else:
        one = int((ok["subsets"] < 2).sum())
        which = "every run" if one == len(ok) else f"{one} of {len(ok)} runs"
        out.append(Finding("curvature", "spread",
                           f"λ_max was measured on one evaluation subset for {which}: the "
                           "spread over subsets is unknown there (set hessian.repeats ≥ 2), so "
                           "no difference involving such a run is called higher or lower.",
                           {"subsets": subsets, "median_sd": math.nan, "single_subset": one}))
    for col, name in (("batch_size", "larger batches"), ("lr", "larger learning rates")):
        if ok[col].nunique() < 2:
            continue
        c = compare_beyond_spread(_pairs_differing_in(ok, col), "lambda_max", "lambda_max_sd")
        if not c["pairs"]:
            continue
        fixed = "η fixed" if col == "batch_size" else "batch size fixed"
        clause = spread_clause(c, "ended sharper (higher λ_max)", "flatter")
        text = f"{name.capitalize()} ({fixed}) {clause}."
        out.append(Finding("curvature", f"lambda_max_vs_{col}", text, c))
    out += finding_sam(ok)
    for gap in ("gap_error", "gap_loss"):
        text, nums = kendall_sentence(ok["lambda_max"].to_numpy(float),
                                      ok[gap].to_numpy(float), f"λ_max vs {gap}")
        out.append(Finding("curvature", f"tau_lambda_max_{gap}", text + ".", nums))
    if sharpness is not None and not sharpness.empty:
        last = sharpness.sort_values("step").groupby("run").tail(1)
        last = last[last["run"].isin(ok["run"]) & last["lambda_max"].notna()]
        if len(last):
            above = int((last["lambda_max"] > last["two_over_lr"]).sum())
            above_eos = int((last["lambda_max"] > last["eos_threshold"]).sum())
            out.append(Finding(
                "curvature", "edge_of_stability",
                f"At the last snapshot λ_max exceeded 2/η in {above} of {len(last)} runs and the "
                f"momentum threshold (2 + 2β)/η in {above_eos} (ratio λ_max/(2/η) from "
                f"{fmt((last['lambda_max'] / last['two_over_lr']).min())} to "
                f"{fmt((last['lambda_max'] / last['two_over_lr']).max())}).",
                {"above_two_over_lr": above, "above_eos": above_eos, "n": len(last)}))
            out.append(_sharpness_peak(sharpness[sharpness["run"].isin(last["run"])]))
    return out


def _sharpness_peak(sharpness: pd.DataFrame) -> Finding:
    """The largest λ_max/(2/η) along training per run (every snapshot, dense ones included):
    how close each run came to the edge of stability, not only where it ended."""
    d = sharpness[sharpness["lambda_max"].notna()]
    ratio = (d["lambda_max"] / d["two_over_lr"]).groupby(d["run"])
    peak = ratio.max()
    crossed = int((peak > 1).sum())
    crossed_eos = int(((d["lambda_max"] > d["eos_threshold"]).groupby(d["run"]).any()).sum())
    per_run = d.groupby("run").size()
    return Finding(
        "curvature", "edge_of_stability_peak",
        f"Along training ({fmt(per_run.median())} snapshots per run, median) λ_max/(2/η) peaked "
        f"at {fmt(peak.min())} to {fmt(peak.max())}; {crossed} of {len(peak)} runs crossed 2/η "
        f"and {crossed_eos} the momentum threshold at some snapshot.",
        {"peak_min": float(peak.min()), "peak_max": float(peak.max()), "crossed": crossed,
         "crossed_eos": crossed_eos, "snapshots_median": float(per_run.median())})


SAM_NAMES = {"sam": "SAM", "asam": "adaptive SAM"}


def finding_sam(ok: pd.DataFrame) -> list[Finding]:
    """Flatness as an intervention: each SAM (or ASAM) run against the SGD run of the same model,
    η, batch size, weight decay and seed, one finding per radius ρ; with several radii, also the
    larger radius against the smaller (same everything else). λ_max is called lower or higher
    only beyond the subset spread; test accuracy and the error gap (one evaluation, no spread)
    are given as median differences with their range, never called."""
    out = []
    keys = fixed_with(["optimizer"])
    sgd = ok[ok["optimizer"] == "sgd"]
    for kind, name in SAM_NAMES.items():
        radii = sorted(ok.loc[ok["optimizer"] == kind, "rho"].unique())
        for rho in radii if not sgd.empty else []:
            other = ok[(ok["optimizer"] == kind) & (ok["rho"] == rho)]
            key = f"{kind}_vs_sgd" if len(radii) == 1 else f"{kind}_rho{rho:g}_vs_sgd"
            out += _sam_against_sgd(sgd.merge(other, on=keys, suffixes=("_sgd", "_sam")),
                                    f"{name} (ρ = {rho:g})", key)
        if len(radii) > 1:
            out += _sam_radii(ok[ok["optimizer"] == kind], kind, name)
    return out


def _sam_radii(runs: pd.DataFrame, kind: str, name: str) -> list[Finding]:
    """The larger radius against the smaller, same everything else: λ_max beyond the spread."""
    runs_pairs = _pairs_differing_in(runs, "rho")
    if not runs_pairs:
        return []
    pairs = [(pd.Series({"v": a["lambda_max"], "sd": a["lambda_max_sd"]}),
              pd.Series({"v": b["lambda_max"], "sd": b["lambda_max_sd"]})) for a, b in runs_pairs]
    c = compare_beyond_spread(pairs, "v", "sd")
    radii = ", ".join(f"{r:g}" for r in sorted(runs["rho"].unique()))
    acc = [b["test_acc"] - a["test_acc"] for a, b in runs_pairs]
    text = (f"{name} with the larger radius against the smaller (ρ ∈ {{{radii}}}; same model, η, "
            f"batch size, weight decay and seed; {len(pairs)} pair"
            f"{'' if len(pairs) == 1 else 's'}): λ_max {spread_clause(c, 'higher', 'lower')}; "
            f"test accuracy changed by a median {fmt(float(np.median(acc)), 2)} (one evaluation "
            "each: not called)")
    return [Finding("curvature", f"{kind}_radius", text + ".",
                    {**c, "test_acc_diff_median": float(np.median(acc))})]


def _sam_against_sgd(both: pd.DataFrame, name: str, key: str) -> list[Finding]:
    out = []
    if not both.empty:
        pairs = [(pd.Series({"v": r.lambda_max_sgd, "sd": r.lambda_max_sd_sgd}),
                  pd.Series({"v": r.lambda_max_sam, "sd": r.lambda_max_sd_sam}))
                 for r in both.itertuples()]
        c = compare_beyond_spread(pairs, "v", "sd")
        d_acc = both["test_acc_sam"] - both["test_acc_sgd"]
        d_gap = both["gap_error_sam"] - both["gap_error_sgd"]
        ratio = both["lambda_max_sam"] / both["lambda_max_sgd"]
        pairs = f"{len(both)} pair" + ("" if len(both) == 1 else "s")
        text = (f"{name} against SGD (same model, η, batch size, weight decay and seed; "
                f"{pairs}): λ_max {spread_clause(c, 'higher', 'lower')} (ratio "
                f"{fmt(ratio.median())}, range {fmt(ratio.min())}–{fmt(ratio.max())}); test "
                f"accuracy changed by a median {fmt(d_acc.median(), 2)} (range "
                f"{fmt(d_acc.min(), 2)} to {fmt(d_acc.max(), 2)}) and the error gap by "
                f"{fmt(d_gap.median(), 2)} (one evaluation each: not called)")
        out.append(Finding("curvature", key, text + ".",
                           {**c, "lambda_ratio_median": float(ratio.median()),
                            "test_acc_diff_median": float(d_acc.median()),
                            "gap_error_diff_median": float(d_gap.median())}))
    return out


def finding_slices(slice_1d: pd.DataFrame, runs: pd.DataFrame) -> list[Finding]:
    """Loss rise along the random filter-normalised directions at |α| = 1, per run."""
    if slice_1d is None or slice_1d.empty:
        return []
    d = slice_1d[(slice_1d["direction"] == "random") & (slice_1d["split"] == "train")]
    if d.empty:
        return []
    rows = []
    for (run, _), g in d.groupby(["run", "direction_index"]):
        centre = g[g["alpha"] == 0.0]["loss"].mean()
        edge = g[np.isclose(g["alpha"].abs(), g["alpha"].abs().max())]["loss"].mean()
        rows.append({"run": run, "rise": edge - centre, "alpha": float(g["alpha"].abs().max())})
    per = pd.DataFrame(rows).groupby("run")
    # the spread of the rise over a run's random directions (NaN with one direction: unknown)
    r = pd.DataFrame({"rise": per["rise"].mean(), "sd": per["rise"].std(ddof=1),
                      "directions": per.size(), "alpha": per["alpha"].first()}).reset_index()
    r = r.merge(runs[["run", *HPARAMS]], on="run")
    alpha = fmt(r["alpha"].iloc[0])
    text = (f"Along filter-normalised random directions the training loss at |α| = {alpha} rose "
            f"by a median of {fmt(r['rise'].median())} (from {fmt(r['rise'].min())} to "
            f"{fmt(r['rise'].max())}, n = {len(r)} runs, {int(r['directions'].min())} "
            "direction(s) each) above the trained weights' loss")
    nums = {"median_rise": float(r["rise"].median()), "n": len(r)}
    if r["batch_size"].nunique() > 1:
        c = compare_beyond_spread(_pairs_differing_in(r, "batch_size"), "rise", "sd")
        text += "; larger batches (η fixed) " + spread_clause(c, "rose more", "less",
                                                             "random direction")
        nums.update(c)
    return [Finding("slices", "random_rise", text + ".", nums)]


def finding_slices_all(tables: dict[str, pd.DataFrame]) -> list[Finding]:
    """The slices stage's findings: the rise along random directions, and curvature along the
    Hessian's top eigenvector against random directions."""
    return (finding_slices(tables["slice_1d"], tables["runs"])
            + finding_eigen_slices(tables["slice_1d"]))


def curvature_at_zero(g: pd.DataFrame) -> float:
    """Second difference of the loss at α = 0 of one 1-D slice (one run, direction, split), per
    unit length squared in parameter space: (L(h) − 2L(0) + L(−h)) / (h‖d‖)², h the smallest
    grid step; the curvature dᵀHd/‖d‖² along the direction, to O(h²)."""
    g = g.set_index("alpha")["loss"]
    steps = sorted(a for a in g.index if a > 0 and -a in g.index)
    if 0.0 not in g.index or not steps:
        return float("nan")
    h = steps[0]
    return float((g[h] - 2 * g[0.0] + g[-h]) / h ** 2)


def finding_eigen_slices(slice_1d: pd.DataFrame) -> list[Finding]:
    """How much more the training loss curves along the top Hessian eigenvector than along the
    random filter-normalised directions, per run (second differences at α = 0 per unit length²,
    on the slices' training subset)."""
    if slice_1d is None or slice_1d.empty or "hessian_v1" not in set(slice_1d["direction"]):
        return []
    d = slice_1d[(slice_1d["split"] == "train") & (slice_1d["direction"] != "init_to_final")]
    rows = []
    for run, g in d.groupby("run"):
        curv = {}
        for (kind, _), s in g.groupby(["direction", "direction_index"]):
            nz = s[s["alpha"] != 0]
            length = float((nz["distance"] / nz["alpha"].abs()).iloc[0]) if len(nz) else np.nan
            curv.setdefault(kind, []).append(curvature_at_zero(s) / length ** 2)
        if "random" in curv and "hessian_v1" in curv:
            rows.append({"run": run, "v1": curv["hessian_v1"][0],
                         "random": float(np.mean(curv["random"])),
                         "gradient": curv.get("gradient", [np.nan])[0]})
    if not rows:
        return []
    r = pd.DataFrame(rows)
    ratio = r["v1"] / r["random"]
    ok = ratio[np.isfinite(ratio) & (r["random"] > 0)]
    text = (f"Along the top Hessian eigenvector v₁ the training loss curved by "
            f"{fmt(r['v1'].median())} per unit length² at the trained weights (median over "
            f"{len(r)} runs), against {fmt(r['random'].median())} along random filter-normalised "
            "directions")
    nums = {"n": len(r), "v1_median": float(r["v1"].median()),
            "random_median": float(r["random"].median())}
    if len(ok):
        text += (f": {fmt(ok.median())}× sharper (median; range {fmt(ok.min())}–"
                 f"{fmt(ok.max())}, {len(ok)} runs with a positive random curvature)")
        nums["ratio_median"] = float(ok.median())
    text += (". Second differences at α = 0 on the slices' training subset (the eigenvector is "
             "the curvature stage's, from its own subset)")
    if len(ok) and ok.min() > 1:
        text += ("; in every run the random directions saw a flatter landscape than the one "
                 "along v₁, as PyHessian's tutorial warns for random-direction plots")
    text += "."
    return [Finding("slices", "eigen_vs_random", text, nums)]


def barrier_per_run(barriers: pd.DataFrame) -> pd.DataFrame:
    """Per run: mean linear train-loss barrier (``loss_barrier``: above the line between the
    endpoint values, Entezari et al. 2022) over the pairs it belongs to (for the run table)."""
    b = barriers[(barriers["method"] == "linear") & (barriers["split"] == "train")]
    if b.empty:
        return pd.DataFrame(columns=["run", "linear_barrier"])
    long = pd.concat([b[["run_a", "loss_barrier"]].rename(columns={"run_a": "run"}),
                      b[["run_b", "loss_barrier"]].rename(columns={"run_b": "run"})])
    return (long.groupby("run")["loss_barrier"].mean().rename("linear_barrier")
            .reset_index())


# the end B of each method's path when a barriers table has no endpoint_b column (older tables);
# the Bézier curve's end is a config choice (connectivity.bezier.init), so it is not guessed
_DEFAULT_END = {"linear": "raw", "aligned": "aligned", "activation": "activation",
                "repair": "aligned"}
_PATH_METHODS = ("linear", "aligned", "activation", "repair", "bezier")
_LINE_TO = {"raw": ("linear", "the unaligned straight line A → θ_B"),
            "aligned": ("aligned", "the aligned straight line A → P(θ_B)")}


def _barrier_by_pair(tr: pd.DataFrame, method: str) -> pd.DataFrame:
    """One method's train-loss barrier per pair: ``barrier`` (mean over evaluation subsets),
    ``sd`` (their standard deviation; NaN with one subset, which is what the barriers table
    holds: its key is pair, method, split), ``subsets`` and the path's end ``endpoint_b``."""
    g = tr[tr["method"] == method]
    by = g.groupby("pair", sort=True)
    out = pd.DataFrame({"barrier": by["loss_barrier"].mean(),
                        "sd": by["loss_barrier"].std(ddof=1), "subsets": by.size()})
    out["endpoint_b"] = (by["endpoint_b"].first() if "endpoint_b" in g
                         else _DEFAULT_END.get(method, math.nan))
    return out


def _versus_line(subject: str, line: str, path: pd.DataFrame, ref: pd.DataFrame,
                 eval_sets: str, what: str = "train-loss barrier") -> tuple[str, dict]:
    """'<subject> had a lower <what> than <line> …': pairs in both frames compared by
    ``compare_beyond_spread`` (ref first); without a spread the pairs lower and higher are
    counted but not called a difference."""
    common = path.index.intersection(ref.index)
    pairs = [(ref.loc[p], path.loc[p]) for p in common]
    c = compare_beyond_spread(pairs, "barrier", "sd")
    unknown = c["unknown_spread"]
    d = np.array([b["barrier"] - a["barrier"] for a, b in pairs], dtype=float)
    d = d[np.isfinite(d)]
    raw = {"raw_lower": int((d < 0).sum()), "raw_higher": int((d > 0).sum()),
           "median_difference": float(np.median(d)) if d.size else math.nan}
    nums = c | raw
    if not c["pairs"]:
        return (f"{subject} could not be compared with {line}: no pair has both barriers.",
                nums)
    if unknown == c["pairs"]:
        text = (f"{subject} had a lower {what} than {line} in {raw['raw_lower']} of "
                f"{c['pairs']} pair(s) and a higher one in {raw['raw_higher']} (median difference "
                f"{fmt(raw['median_difference'])} nats), not called a difference: each path was "
                f"evaluated on one seeded subset per split ({eval_sets}), so the barrier's spread "
                "over subsets is unknown.")
        return text, nums
    known = c["pairs"] - unknown
    text = (f"{subject} had a lower {what} than {line} beyond the evaluation-subset "
            f"spread (2·√(sd² + sd²)) in {c['lower']} of {known} pair(s), a higher one in "
            f"{c['higher']}, and was within the spread in {c['within_spread']}")
    if unknown:
        text += f"; {unknown} more pair(s) have no spread and are not called"
    return text + ".", nums


def _stays_below(steps: np.ndarray, values: np.ndarray, limits: np.ndarray
                 ) -> tuple[int | None, int | None]:
    """(first k with value ≤ limit, smallest k from which every later k has value ≤ limit); None
    where there is none. ``steps`` ascending; NaN values count as not below."""
    ok = np.asarray(values <= limits, dtype=bool) & np.isfinite(values)
    first = int(steps[ok][0]) if ok.any() else None
    if not ok.size or not ok[-1]:
        return first, None
    above = np.flatnonzero(~ok)
    return first, int(steps[above[-1] + 1] if above.size else steps[0])


def _from_k_clause(what: str, first: int | None, stays: int | None, last: int) -> str:
    """'<what> at every k from k = 40 on (already at k = 10, …)' and its other cases."""
    if first is None:
        return f"{what} at no k"
    if stays is None:
        return (f"{what} first at k = {first} but not at the last k = {last}, so at no k from "
                "which every later k stays there")
    if stays == first:
        return f"{what} at every k from k = {stays} on"
    return (f"{what} at every k from k = {stays} on (already at k = {first}, but not at every "
            "k after it)")


def _versus_aligned(subject: str, short: str, other: str, path: pd.DataFrame,
                    ref: pd.DataFrame, eval_sets: str) -> tuple[str, dict]:
    """Test-loss barrier of ``path`` against the weight-matched line ``ref`` per pair: both
    medians, the median ratio path/ref (pairs with a positive ref barrier), then
    ``_versus_line``'s count of lower and higher pairs beside the spread."""
    common = path.index.intersection(ref.index)
    p, r = path.loc[common, "barrier"].astype(float), ref.loc[common, "barrier"].astype(float)
    ok = np.isfinite(p) & np.isfinite(r) & (r > 0)
    ratio = float(np.median(p[ok] / r[ok])) if ok.any() else math.nan
    text, nums = _versus_line(subject, "the weight-matched line A → P(θ_B)" + other, path, ref,
                              eval_sets, what="test-loss barrier")
    head = (f"Median test-loss barrier over {len(common)} pair(s): {fmt(float(p.median()))} "
            f"nats for {short} against {fmt(float(r.median()))} for "
            f"the weight-matched line (median ratio {fmt(ratio)} over {int(ok.sum())} pair(s) "
            "whose weight-matched barrier is positive). ")
    return head + text, nums | {"median": float(p.median()), "median_aligned": float(r.median()),
                                "median_ratio": ratio, "ratio_pairs": int(ok.sum())}


def finding_connectivity(tables: dict[str, pd.DataFrame]) -> list[Finding]:
    """Barriers of the paths, what alignment and the Bézier curve change against the straight
    line between the same endpoints (called only beyond the evaluation-subset spread), REPAIR
    and activation matching against the weight-matched line (test-loss barrier), and from which
    spawn step on spawned children stay connected."""
    out = []
    b = tables.get("barriers")
    if b is not None and not b.empty:
        tr = b[b["split"] == "train"]
        methods = [m for m in _PATH_METHODS if m in set(tr["method"])]
        per = {m: _barrier_by_pair(tr, m) for m in methods}
        n = len(per[methods[0]]) if methods else 0
        parts = [f"{m} {fmt(per[m]['barrier'].median())} (range {fmt(per[m]['barrier'].min())} "
                 f"to {fmt(per[m]['barrier'].max())})" for m in methods]
        out.append(Finding("connectivity", "barriers",
                           f"Train-loss barrier between minima over {n} pair(s), median by path: "
                           + "; ".join(parts) + " (nats above the line between the endpoint "
                           "values, Entezari et al. 2022).",
                           {m: float(per[m]["barrier"].median()) for m in methods}
                           | {"pairs": n}))
        sets = ", ".join(sorted(tr["eval_set"].dropna().unique())) if "eval_set" in tr else ""
        sets = sets or "one subset"
        if "linear" in per and "aligned" in per:
            text, nums = _versus_line("Permutation alignment (weight matching): the aligned line "
                                      "A → P(θ_B)", "the unaligned line A → θ_B (the same two "
                                      "functions at its ends)", per["aligned"], per["linear"],
                                      sets)
            out.append(Finding("connectivity", "alignment", text, nums))
        te = b[b["split"] == "test"]
        test_sets = ", ".join(sorted(te["eval_set"].dropna().unique())) if "eval_set" in te \
            else ""
        test_sets = test_sets or "one subset"
        test = {m: _barrier_by_pair(te, m) for m in ("aligned", "activation", "repair")
                if m in set(te["method"])}
        if "aligned" in test:
            for m, key, subject, short, other in (
                    ("repair", "repair", "REPAIR (Jordan et al. 2023) on the weight-matched line",
                     "REPAIR", " without REPAIR (the same path, not renormalised)"),
                    ("activation", "activation_matching", "The activation-matched line "
                     "A → P_act(θ_B) (Ainsworth et al. 2023, activation matching)",
                     "the activation-matched line", " (the same two functions at its ends)")):
                if m in test:
                    text, nums = _versus_aligned(subject, short, other, test[m],
                                                 test["aligned"], test_sets)
                    out.append(Finding("connectivity", key, text, nums))
        if "bezier" in per:
            bz = per["bezier"]
            texts, nums = [], {}
            for end, (line_method, line) in _LINE_TO.items():
                curve = bz[bz["endpoint_b"] == end]
                if curve.empty:
                    continue
                subject = ("The trained Bézier curve (ending at "
                           f"{'P(θ_B)' if end == 'aligned' else 'θ_B'})")
                if line_method not in per:
                    texts.append(f"{subject} was not compared in {len(curve)} pair(s): "
                                 f"{line} was not evaluated.")
                    nums[end] = {"pairs": 0, "missing_line": len(curve)}
                    continue
                t, c = _versus_line(subject, f"{line} (the curve's own endpoints)", curve,
                                    per[line_method], sets)
                texts.append(t)
                nums[end] = c | {"compared_with": line_method}
            unknown_end = int(bz["endpoint_b"].isna().sum())
            if unknown_end:
                texts.append(f"{unknown_end} Bézier pair(s) without endpoint_b were not "
                             "compared.")
            if texts:
                out.append(Finding("connectivity", "bezier", " ".join(texts),
                                   nums | {"unknown_endpoint": unknown_end}))
    sp = tables.get("spawn_barriers")
    if sp is not None and not sp.empty:
        tr = sp[sp["split"] == "train"].sort_values("spawn_step")
        te = sp[sp["split"] == "test"].sort_values("spawn_step")
        for run, g in tr.groupby("run"):
            ks = g["spawn_step"].to_numpy(dtype=np.int64)
            loss = g["loss_barrier"].to_numpy(dtype=float)
            steps = ", ".join(f"k = {k}: {fmt(v)}" for k, v in zip(ks, loss, strict=True))
            # this project's criterion: the loss barrier at most 10 % of the mean loss of the
            # children spawned at that k
            limit = 0.1 * np.maximum(np.nanmean(g[["loss_a", "loss_b"]].to_numpy(float), axis=1),
                                     1e-12)
            first, stays = _stays_below(ks, loss, limit)
            text = (f"Children spawned from {run} at step k and trained apart have linear "
                    f"train-loss barriers {steps}; "
                    + _from_k_clause("the barrier is at most 10 % of the children's mean train "
                                     "loss (this project's criterion)", first, stays,
                                     int(ks[-1])))
            nums = {"steps": [int(k) for k in ks], "barriers": [float(v) for v in loss],
                    "limits": [float(v) for v in limit], "first_below_k": first,
                    "stays_below_from_k": stays}
            e = te[te["run"] == run]
            if "error_barrier_mean" in e and len(e):
                eks = e["spawn_step"].to_numpy(dtype=np.int64)
                err = e["error_barrier_mean"].to_numpy(dtype=float)
                efirst, estays = _stays_below(eks, err, np.full(err.shape, 0.02))
                text += ("; Frankle et al. (2020) judge stability by the error barrier rather "
                         "than the loss (roughly: at most 0.02 counts as stable), and the "
                         "test-error barrier in their mean form ("
                         + ", ".join(f"k = {k}: {fmt(v)}" for k, v in zip(eks, err, strict=True))
                         + ") is " + _from_k_clause("at most 0.02", efirst, estays,
                                                     int(eks[-1])))
                nums |= {"error_steps": [int(k) for k in eks],
                         "error_barriers_mean": [float(v) for v in err],
                         "error_first_below_k": efirst, "error_stays_below_from_k": estays}
            out.append(Finding("connectivity", f"spawn_{run}", text + ".", nums))
    return out


def finding_robustness(tables: dict[str, pd.DataFrame]) -> list[Finding]:
    """How much noise the solutions take before training accuracy halves, and how many runs'
    σ½ lies beyond the σ grid (censored: kept at the grid bound)."""
    m = tables.get("measures")
    out = []
    if m is None or m.empty:
        return out
    for mode in ("absolute", "relative"):
        col, cens = f"sigma_half_{mode}", f"sigma_half_{mode}_censoring"
        if col not in m or m[col].notna().sum() == 0:
            continue
        v = m[col].dropna()
        flag = m[cens] if cens in m else pd.Series("crossed", index=m.index)
        left, right = int((flag == "left").sum()), int((flag == "right").sum())
        best = m.loc[m[col].idxmax()]
        text = (f"Training accuracy fell halfway to chance at {mode} weight noise σ from "
                f"{fmt(v.min())} to {fmt(v.max())} (median {fmt(v.median())}, n = {len(v)}); "
                f"most robust: {describe_run(best)}")
        if left or right:
            parts = []
            if left:
                parts.append(f"{left} already below halfway at the smallest σ (σ½ ≤ "
                             f"{fmt(m.loc[flag == 'left', col].max())})")
            if right:
                parts.append(f"{right} never below halfway on the grid (σ½ > "
                             f"{fmt(m.loc[flag == 'right', col].min())})")
            text += (f". σ½ is censored for {left + right} of {len(v)} runs and kept at the "
                     "grid bound, so they still rank: " + ", ".join(parts))
        else:
            text += "; every run crossed halfway inside the σ grid"
        out.append(Finding("robustness", f"sigma_half_{mode}", text + ".",
                           {"min": float(v.min()), "max": float(v.max()), "n": len(v),
                            "censored_left": left, "censored_right": right}))
    return out


def finding_generalisation(tables: dict[str, pd.DataFrame]) -> list[Finding]:
    """The measure with the largest |τ| against each gap, quoted as selected after looking:
    with its Holm-adjusted p over every measure tested (and the unadjusted p), its interval and
    Ψ; the page's per-measure table lists them all."""
    c = tables.get("correlations")
    if c is None or c.empty:
        return []
    out = []
    for gap, g in c.groupby("gap"):
        g = g.dropna(subset=["tau"])
        if g.empty:
            continue
        n = int(g["n"].max())
        if n < MIN_RUNS_FOR_RANKS:  # τ of 2-3 runs is ±1 by construction; its interval is void
            out.append(Finding("generalisation", f"best_{gap}",
                               f"Too few runs (n = {n}) to rank measures by their correlation with "
                               f"{gap}; at least {MIN_RUNS_FOR_RANKS} are needed.", {"n": n}))
            continue
        g = g.reindex(g["tau"].abs().sort_values(ascending=False).index)
        top = g.iloc[0]
        holm = g["p_holm"] if "p_holm" in g else pd.Series(math.nan, index=g.index)
        k = len(g)
        excl = (top["tau_lo"] > 0) or (top["tau_hi"] < 0)
        verdict = (f"its 95 % interval {'excludes' if excl else 'includes'} 0 (not adjusted for "
                   "the selection)")
        sig_holm = int((holm < ALPHA).sum())
        sig_raw = int((g["p_value"] < ALPHA).sum())
        psi = (f"; granulated Ψ = {fmt(top['psi'], 2)} [{fmt(top['psi_lo'], 2)}, "
               f"{fmt(top['psi_hi'], 2)}] over {int(top['n_groups'])} groups"
               if math.isfinite(top["psi"]) else "; Ψ undefined (no groups)")
        out.append(Finding("generalisation", f"best_{gap}",
                           f"Ranked by |τ| with {gap} after all {k} measures were computed, "
                           f"{top['measure']} came first (τ = {top['tau']:+.2f} "
                           f"[{fmt(top['tau_lo'], 2)}, {fmt(top['tau_hi'], 2)}], n = "
                           f"{int(top['n'])}; Holm-adjusted p = {fmt(holm.loc[top.name], 2)} "
                           f"over the {k} measures, unadjusted p = {top['p_value']:.2g}); "
                           f"{verdict}{psi}. {sig_holm} of {k} measures have Holm-adjusted "
                           f"p < {ALPHA:g} ({sig_raw} before adjustment); the table of "
                           "measures below lists every one.",
                           {"measure": top["measure"], "tau": float(top["tau"]),
                            "p_value": float(top["p_value"]),
                            "p_holm": float(holm.loc[top.name]), "n": int(top["n"]),
                            "significant_holm": sig_holm, "significant": sig_raw,
                            "measures": k}))
    return out


MATRIX_NAMES = {"ggn": "the generalised Gauss–Newton G", "ef": "the empirical Fisher F"}


def finding_matrices(tables: dict[str, pd.DataFrame]) -> list[Finding]:
    """How λ_max and the trace of the Gauss–Newton and empirical Fisher compare with the
    Hessian's, run by run on the same evaluation set: the ratio's median and range, and how many
    runs differ beyond the uncertainty of each number (Lanczos residuals for λ_max, whose error
    they bound; twice the combined Hutchinson standard error for the trace)."""
    cm = tables.get("curvature_matrices")
    if cm is None or cm.empty or "hessian" not in set(cm["matrix"]):
        return []
    h = cm[cm["matrix"] == "hessian"].set_index("run")
    out = []
    for m, name in MATRIX_NAMES.items():
        d = cm[cm["matrix"] == m].merge(h.reset_index(), on="run", suffixes=("", "_h"))
        if d.empty:
            continue
        parts, numbers = [], {"n": len(d)}
        for col, label, err in (("lambda_max", "λ_max", "residual"),
                                ("trace", "trace", "trace_std_error")):
            ok = d[[col, f"{col}_h"]].notna().all(axis=1) & (d[f"{col}_h"] != 0)
            if not ok.any():
                continue
            ratio = d.loc[ok, col] / d.loc[ok, f"{col}_h"]
            k = 1.0 if col == "lambda_max" else 2.0
            bound = k * (d[err] + d[f"{err}_h"] if col == "lambda_max"
                         else np.sqrt(d[err] ** 2 + d[f"{err}_h"] ** 2))
            diff = (d[col] - d[f"{col}_h"])[ok]
            lower, higher = int((diff < -bound[ok]).sum()), int((diff > bound[ok]).sum())
            within = int(ok.sum()) - lower - higher
            rule = ("their Lanczos residuals" if col == "lambda_max"
                    else "twice the combined standard error")
            parts.append(f"its {label} was {fmt(ratio.median())}× the Hessian's (median over "
                         f"{int(ok.sum())} runs; range {fmt(ratio.min())}–{fmt(ratio.max())}): "
                         f"below H's by more than {rule} in {lower} run{'s' * (lower != 1)}, "
                         f"above in {higher}, "
                         f"within in {within}")
            numbers.update({f"{col}_ratio_median": float(ratio.median()),
                            f"{col}_lower": lower, f"{col}_higher": higher,
                            f"{col}_within": within})
        if parts:
            text = (f"On each run's evaluation set, for {name}, " + "; ".join(parts)
                    + (". G is positive semi-definite and H = G + R, so a G close to H says the "
                       "residual R (the network's own curvature times the loss gradient in the "
                       "logits) is small there" if m == "ggn" else
                       ". F uses the observed labels, not the model's: it is not a curvature "
                       "matrix in general (Kunstner et al. 2019)") + ".")
            out.append(Finding("curvature", f"matrices_{m}", text, numbers))
    return out


def finding_layers(tables: dict[str, pd.DataFrame]) -> list[Finding]:
    """Which layer's diagonal Hessian block has the largest λ_max and the largest share of the
    trace, over runs; and the block λ_max against the whole Hessian's (interlacing: ≤ 1)."""
    lay = tables.get("layer_curvature")
    if lay is None or lay.empty:
        return []
    h = lay[(lay["matrix"] == "hessian") & lay["lambda_max"].notna()]
    if h.empty:
        return []
    top = h.loc[h.groupby("run")["lambda_max"].idxmax()]
    counts = top["layer"].value_counts()
    n = len(top)
    lead = counts.index[0]
    text = (f"The largest λ_max of a layer's own diagonal Hessian block was in layer {lead} in "
            f"{int(counts.iloc[0])} of {n} runs"
            + (" (" + ", ".join(f"{k}: {int(v)}" for k, v in counts.iloc[1:].items()) + ")"
               if len(counts) > 1 else ""))
    numbers = {"n": n, "layer": lead, "count": int(counts.iloc[0])}
    cm = tables.get("curvature_matrices")
    if cm is not None and not cm.empty:
        whole = cm[cm["matrix"] == "hessian"].set_index("run")["lambda_max"]
        ratio = (top.set_index("run")["lambda_max"] / whole).dropna()
        if len(ratio):
            text += (f"; that block's λ_max was {fmt(ratio.median())}× the whole Hessian's "
                     f"(median; range {fmt(ratio.min())}–{fmt(ratio.max())}; at most 1 by "
                     "interlacing, below 1 as far as layers couple)")
            numbers["block_to_whole_median"] = float(ratio.median())
    t = lay[lay["matrix"] == "hessian"].copy()
    total = t.groupby("run")["trace"].transform("sum")
    t["share"] = t["trace"] / total
    share = t.groupby("layer")["share"].median().sort_values(ascending=False)
    text += (f". By the trace, layer {share.index[0]} held the largest share (median "
             f"{fmt(share.iloc[0])} of the Hutchinson estimate over runs).")
    numbers["trace_share_layer"] = share.index[0]
    numbers["trace_share_median"] = float(share.iloc[0])
    return [Finding("curvature", "layers", text, numbers)]


def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    """The findings as a ``findings`` table (numbers as JSON)."""
    import json

    return pd.DataFrame([{"stage": f.stage, "key": f.key, "text": f.text,
                          "numbers": json.dumps(f.numbers, sort_keys=True, default=float)}
                         for f in findings], columns=["stage", "key", "text", "numbers"])
