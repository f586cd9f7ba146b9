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

ALPHA = 0.05
MIN_RUNS_FOR_RANKS = 5  # fewer finished runs: no rank-correlation finding
HPARAMS = ["model", "optimizer", "lr", "batch_size", "weight_decay", "seed"]


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
    return (f"{row['model']} {row['optimizer']} η={row['lr']:g} B={int(row['batch_size'])}{wd} "
            f"s{int(row['seed'])}")


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
    return df.sort_values(["model", "optimizer", "lr", "batch_size", "weight_decay", "seed"],
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
    keys = [h for h in HPARAMS if h != "seed"]
    g = ok.groupby(keys)["test_acc"].agg(["mean", "std", "count"]).reset_index()
    g = g.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)
    best, worst = g.iloc[0], g.iloc[-1]

    def cfg(r) -> str:
        return f"η={r['lr']:g}, B={int(r['batch_size'])}" + (
            f", wd={r['weight_decay']:g}" if r["weight_decay"] else "") + (
            f", {r['model']}" if ok["model"].nunique() > 1 else "") + (
            f", {r['optimizer']}" if ok["optimizer"].nunique() > 1 else "")

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
    """Pairs of runs equal in every hyper-parameter but ``col`` (smaller value first)."""
    others = [h for h in HPARAMS if h != col]
    pairs = []
    for _, g in df.groupby(others):
        g = g.sort_values(col)
        for (_, a), (_, b) in itertools.combinations(g.iterrows(), 2):
            pairs.append((a, b))
    return pairs


def compare_beyond_spread(pairs, value: str, spread: str) -> dict:
    """Count pairs where the second run's ``value`` is higher / lower than the first's by more
    than 2·√(sd_a² + sd_b²) (sd: spread over evaluation subsets), or neither."""
    up = down = tie = 0
    for a, b in pairs:
        margin = 2.0 * math.sqrt(np.nansum([a[spread] ** 2, b[spread] ** 2]))
        d = b[value] - a[value]
        if not math.isfinite(d):
            continue
        if d > margin:
            up += 1
        elif d < -margin:
            down += 1
        else:
            tie += 1
    return {"higher": up, "lower": down, "within_spread": tie, "pairs": up + down + tie}


def finding_curvature(table: pd.DataFrame, sharpness: pd.DataFrame | None = None) -> list[Finding]:
    """Statements on λ_max across runs: batch size and η effects beyond the subset spread,
    correlation with the gap, edge of stability."""
    out = []
    ok = table[(table["status"] == "ok") & table["lambda_max"].notna()]
    if ok.empty:
        return out
    subsets = int(ok["subsets"].max())
    spread = ok["lambda_max_sd"].median()
    out.append(Finding("curvature", "spread",
                       f"λ_max measured on {subsets} seeded evaluation subsets per run varies by a "
                       f"median standard deviation of {fmt(spread)} (relative "
                       f"{fmt((ok['lambda_max_sd'] / ok['lambda_max']).median(), 2)}); "
                       "differences below twice the combined spread are called ties.",
                       {"subsets": subsets, "median_sd": float(spread)}))
    for col, name in (("batch_size", "larger batches"), ("lr", "larger learning rates")):
        if ok[col].nunique() < 2:
            continue
        c = compare_beyond_spread(_pairs_differing_in(ok, col), "lambda_max", "lambda_max_sd")
        if not c["pairs"]:
            continue
        fixed = "η fixed" if col == "batch_size" else "batch size fixed"
        text = (f"{name.capitalize()} ended sharper (higher λ_max) in {c['higher']} of "
                f"{c['pairs']} pairs ({fixed}), flatter in {c['lower']}, and within the subset "
                f"spread in {c['within_spread']}.")
        out.append(Finding("curvature", f"lambda_max_vs_{col}", text, c))
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
    return out


def finding_slices(slice_1d: pd.DataFrame, runs: pd.DataFrame) -> list[Finding]:
    """Loss rise along the random filter-normalised directions at |α| = 1, per run."""
    if slice_1d is None or slice_1d.empty:
        return []
    d = slice_1d[(slice_1d["direction"] == "random") & (slice_1d["split"] == "train")]
    if d.empty:
        return []
    rises = {}
    for run, g in d.groupby("run"):
        centre = g[g["alpha"] == 0.0]["loss"].mean()
        edge = g[np.isclose(g["alpha"].abs(), g["alpha"].abs().max())]["loss"].mean()
        rises[run] = (edge - centre, float(g["alpha"].abs().max()))
    r = pd.DataFrame([{"run": k, "rise": v[0], "alpha": v[1]} for k, v in rises.items()])
    r = r.merge(runs[["run", *HPARAMS]], on="run")
    alpha = fmt(r["alpha"].iloc[0])
    text = (f"Along filter-normalised random directions the training loss at |α| = {alpha} rose "
            f"by a median of {fmt(r['rise'].median())} (from {fmt(r['rise'].min())} to "
            f"{fmt(r['rise'].max())}, n = {len(r)} runs) above the trained weights' loss")
    nums = {"median_rise": float(r["rise"].median()), "n": len(r)}
    if r["batch_size"].nunique() > 1:
        pairs = _pairs_differing_in(r.assign(sd=0.0), "batch_size")
        c = compare_beyond_spread(pairs, "rise", "sd")
        text += (f"; the larger batch rose more in {c['higher']} of {c['pairs']} pairs at fixed "
                 "η (one direction per run: no spread available)")
        nums.update(c)
    return [Finding("slices", "random_rise", text + ".", nums)]


def barrier_per_run(barriers: pd.DataFrame) -> pd.DataFrame:
    """Per run: mean linear train-loss barrier over the pairs it belongs to (for the run table)."""
    b = barriers[(barriers["method"] == "linear") & (barriers["split"] == "train")]
    if b.empty:
        return pd.DataFrame(columns=["run", "linear_barrier"])
    long = pd.concat([b[["run_a", "loss_barrier"]].rename(columns={"run_a": "run"}),
                      b[["run_b", "loss_barrier"]].rename(columns={"run_b": "run"})])
    return (long.groupby("run")["loss_barrier"].mean().rename("linear_barrier")
            .reset_index())


def finding_connectivity(tables: dict[str, pd.DataFrame]) -> list[Finding]:
    """Barriers of the three paths, what alignment changed, and when spawned children connect."""
    out = []
    b = tables.get("barriers")
    if b is not None and not b.empty:
        tr = b[b["split"] == "train"]
        methods = [m for m in ("linear", "aligned", "bezier") if m in set(tr["method"])]
        per = {m: tr[tr["method"] == m].set_index("pair")["loss_barrier"] for m in methods}
        n = len(per[methods[0]]) if methods else 0
        parts = [f"{m} {fmt(per[m].median())} (range {fmt(per[m].min())} to "
                 f"{fmt(per[m].max())})" for m in methods]
        out.append(Finding("connectivity", "barriers",
                           f"Train-loss barrier between minima over {n} pair(s), median by path: "
                           + "; ".join(parts) + " (nats above the line between the endpoints).",
                           {m: float(per[m].median()) for m in methods} | {"pairs": n}))
        wording = {"alignment": ("aligned", "Permutation alignment (weight matching) lowered "
                                 "the linear barrier in {lower} of {pairs} pair(s)."),
                   "bezier": ("bezier", "The trained Bézier curve had a lower barrier than the "
                              "straight line in {lower} of {pairs} pair(s).")}
        for key, (method, sentence) in wording.items():
            if "linear" not in per or method not in per:
                continue
            both = pd.concat([per["linear"], per[method]], axis=1, join="inner").dropna()
            nums = {"lower": int((both.iloc[:, 1] < both.iloc[:, 0]).sum()), "pairs": len(both)}
            out.append(Finding("connectivity", key, sentence.format(**nums), nums))
    sp = tables.get("spawn_barriers")
    if sp is not None and not sp.empty:
        tr = sp[sp["split"] == "train"].sort_values("spawn_step")
        for run, g in tr.groupby("run"):
            steps = ", ".join(f"k = {int(r.spawn_step)}: {fmt(r.loss_barrier)}"
                              for r in g.itertuples())
            first = g.iloc[0]
            scale = max(float(np.nanmean([first["loss_a"], first["loss_b"]])), 1e-12)
            small = g[g["loss_barrier"] <= 0.1 * scale]
            when = (f"below 10 % of the children's loss from step {int(small['spawn_step'].min())}"
                    if len(small) else "never below 10 % of the children's loss")
            out.append(Finding("connectivity", f"spawn_{run}",
                               f"Children spawned from {run} at step k and trained apart have "
                               f"linear train-loss barriers {steps}; {when}.",
                               {"steps": [int(k) for k in g["spawn_step"]],
                                "barriers": [float(v) for v in g["loss_barrier"]]}))
    return out


def finding_robustness(tables: dict[str, pd.DataFrame]) -> list[Finding]:
    """How much noise the solutions take before test accuracy halves."""
    m = tables.get("measures")
    out = []
    if m is None or m.empty:
        return out
    for mode in ("absolute", "relative"):
        col = f"sigma_half_{mode}"
        if col not in m or m[col].notna().sum() == 0:
            continue
        v = m[col].dropna()
        best = m.loc[m[col].idxmax()]
        out.append(Finding("robustness", f"sigma_half_{mode}",
                           f"Test accuracy fell halfway to chance at {mode} weight noise σ from "
                           f"{fmt(v.min())} to {fmt(v.max())} (median {fmt(v.median())}, n = "
                           f"{len(v)}); most robust: {describe_run(best)}.",
                           {"min": float(v.min()), "max": float(v.max()), "n": len(v)}))
    return out


def finding_generalisation(tables: dict[str, pd.DataFrame]) -> list[Finding]:
    """Which measure ranks the runs' generalisation gap best, with n, p and intervals."""
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
        excl = (top["tau_lo"] > 0) or (top["tau_hi"] < 0)
        verdict = ("its 95 % interval excludes 0" if excl else "its 95 % interval includes 0")
        sig = int(((g["p_value"] < ALPHA)).sum())
        psi = (f"; granulated Ψ = {fmt(top['psi'], 2)} [{fmt(top['psi_lo'], 2)}, "
               f"{fmt(top['psi_hi'], 2)}] over {int(top['n_groups'])} groups"
               if math.isfinite(top["psi"]) else "; Ψ undefined (no groups)")
        out.append(Finding("generalisation", f"best_{gap}",
                           f"Strongest rank correlation with {gap}: {top['measure']} "
                           f"(τ = {top['tau']:+.2f} [{fmt(top['tau_lo'], 2)}, "
                           f"{fmt(top['tau_hi'], 2)}], p = {top['p_value']:.2g}, n = "
                           f"{int(top['n'])}); {verdict}{psi}. {sig} of {len(g)} measures have "
                           f"p < {ALPHA:g} before any correction for testing {len(g)}.",
                           {"measure": top["measure"], "tau": float(top["tau"]),
                            "p_value": float(top["p_value"]), "n": int(top["n"]),
                            "significant": sig, "measures": len(g)}))
    return out


def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    """The findings as a ``findings`` table (numbers as JSON)."""
    import json

    return pd.DataFrame([{"stage": f.stage, "key": f.key, "text": f.text,
                          "numbers": json.dumps(f.numbers, sort_keys=True, default=float)}
                         for f in findings], columns=["stage", "key", "text", "numbers"])
