"""Where the time goes: what each computing stage spent beside the arithmetic its work needs.

Per stage (rule family) three measured things are put side by side:

* **time**: CPU- and wall-seconds of its jobs, summed over the Snakemake ``benchmark:`` files
  ``benchmarks/<stage>/*.tsv`` (columns ``s``, wall seconds, and ``cpu_time``, CPU seconds over
  all cores; ``read_benchmarks``). Snakemake *samples* ``cpu_time`` (snakemake/benchmark.py:
  every 0.5 s for the first 15 s of a job, then every 30 s), so it holds the CPU time up to the
  job's last sample: a 33 s job is recorded with its first ~15 s. ``tail_s`` is the wall time
  after each job's last sample (``unsampled_tail``); ``cpu_s_used`` counts it as one busy core
  (every computing rule runs with ``threads: 1``) and is what rates are taken over;
* **work**: the floating-point operations the stage's work needs, i.e. units of work read from
  the study's own tables (optimiser steps, Hessian-vector products, evaluated points, …;
  ``work_units``) times the FLOPs of one unit on the run's real model (``model_flops``), counted
  with ``torch.utils.flop_counter.FlopCounterMode``: matrix multiplies and convolutions, a
  multiply-add = 2 FLOPs; element-wise work (activations, pooling, loss, optimiser updates) is
  not counted;
* **yardsticks** measured in the same command: the one-thread fp32 matmul peak
  (``matmul_peak``; CPU-seconds are per core, so the one-thread peak is what a CPU-second can
  do) and the fixed cost every job pays before computing (``fixed_cost``: a fresh interpreter
  importing its stage module, and loading and verifying the prepared data).

Work the tables do not record is never guessed: such a unit has ``passes`` NaN and bound
``not counted`` (REPAIR's statistics, BatchNorm re-estimation, …), and the stage's count is then
a lower bound. ``report_frame`` makes the table (``REPORT_COLUMNS``), ``kernel_rates`` the rates
of the main kernels against ``RATE_TARGETS`` (``RATE_COLUMNS``), ``format_report`` prints both;
``python -m landscape cost RESULTS_DIR`` runs it all.
"""

from __future__ import annotations

import csv
import math
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .errors import UserError
from .schemas import connectivity as _connectivity  # noqa: F401  tables read here
from .schemas import hessian as _hessian  # noqa: F401
from .schemas import matrices as _matrices  # noqa: F401
from .schemas import robustness as _robustness  # noqa: F401
from .schemas import slices as _slices  # noqa: F401
from .schemas import training as _training  # noqa: F401
from .tables import read_table, table_meta

if TYPE_CHECKING:  # torch is imported where it is used: `--help` stays light
    from torch import nn

# stage (rule family) → the stage modules of its rules (each module's jobs write their benchmarks
# into benchmarks/<module>/); the first is the one whose import is timed for the per-job fixed cost
STAGES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "hessian": ("hessian", "sharpness"),
    "matrices": ("curvature_matrices",),
    "slices": ("slices", "slice_directions"),
    "connectivity": ("connectivity", "spawn"),
    "robustness": ("robustness", "generalisation"),
}
KINDS = {"forward": "forward", "fwd_bwd": "forward+backward", "hvp": "HVP",
         "hvp_build": "HVP graph build", "gn": "G/F product", "gn_build": "G/F graph build"}
BOUNDS = ("exact", "lower bound", "upper bound", "not counted")
UNIT_COLUMNS = ["stage", "item", "model", "kind", "passes", "bound", "note"]
REPORT_COLUMNS = {
    "stage": "rule family: train; hessian (hessian + sharpness rules); matrices "
             "(curvature_matrices); slices (slice_shard + "
             "slice_directions); connectivity (connectivity_pair + spawn rules); robustness "
             "(robustness + generalisation)",
    "jobs": "jobs that ran: benchmark files in benchmarks/<module>/ of the family's stage "
            "modules",
    "forked": "jobs the fork server ran (landscape/forkserver.py: local runs); their CPU "
              "time is exact and their fixed cost has no imports",
    "cpu_s": "CPU-seconds recorded (sum of the benchmarks' cpu_time, all cores): Snakemake "
             "samples it, so the CPU time after a job's last sample is missing; for a job the "
             "fork server ran, the exact CPU time of its process from the server's accounting "
             "(the benchmark sees only the thin client)",
    "tail_s": "wall-seconds after each job's last CPU sample (0.5 s steps for 15 s, then every "
              "30 s), summed: the time cpu_s did not see",
    "cpu_s_used": "cpu_s + tail_s: CPU-seconds with the unsampled tails counted as one busy core "
                  "(the rules run with threads: 1); the rates below are per this",
    "wall_s": "wall-seconds of those jobs (sum of s; jobs that ran side by side each count)",
    "gflop": "GFLOP the stage's work needs: units of work from the tables × FLOPs per unit "
             "counted on the run's model (matmuls and convolutions only)",
    "count": "how far gflop is a full count: exact, lower bound (some work not recorded or not "
             "counted), upper bound, or approx. (both)",
    "gflop_per_cpu_s": "gflop / cpu_s_used: the rate achieved per core",
    "of_peak": "gflop_per_cpu_s as a fraction of the one-thread fp32 matmul peak measured by "
               "the same command",
    "fixed_s_per_job": "CPU-seconds every job pays before computing: a fresh interpreter "
                       "importing the stage module (not paid by a forked job), plus loading and "
                       "verifying the prepared data",
    "fixed_share": "jobs × fixed_s_per_job / cpu_s_used: the share of the stage's CPU time "
                   "that is per-job fixed cost",
}
# Snakemake's benchmark sampler (snakemake/benchmark.py, ScheduledPeriodicTimer): a sample at
# the start, then every SHORT_S seconds for SHORT_SAMPLES samples, then every LONG_S seconds
SHORT_S, SHORT_SAMPLES, LONG_S = 0.5, 30, 30.0
MISSING_BENCHMARKS = ("no benchmarks folder {path}: give the results folder of a finished study "
                      "(every computing rule writes benchmarks/<stage>/*.tsv there)")


# ----------------------------------------------------------------------------- time (benchmarks)
def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def unsampled_tail(seconds: float) -> float:
    """Wall-seconds of a job of ``seconds`` after the last sample of Snakemake's benchmark
    sampler (``SHORT_S``, ``SHORT_SAMPLES``, ``LONG_S``): its CPU time there is not recorded.
    The sampler's own overhead delays samples slightly, so this is approximate."""
    short_end = SHORT_S * SHORT_SAMPLES
    if seconds <= short_end:
        last = math.floor(seconds / SHORT_S) * SHORT_S
    else:
        last = short_end + math.floor((seconds - short_end) / LONG_S) * LONG_S
    return max(seconds - last, 0.0)


def _benchmark_of(module: str, job: str, outputs: str) -> str | None:
    """The benchmark file (relative to the benchmarks folder) of the job the fork server's
    accounting row describes, or None for a rule without one. Measurements: the registry's job
    folder of the ``--job`` keys (``landscape.registry``); training: the run folder's name."""
    from .registry import by_module

    if module == "train":
        first = outputs.split(";")[0]
        return f"train/{Path(first).name}.tsv" if first else None
    try:
        m = by_module(module)
    except KeyError:  # gathers, plots, pages: no benchmark file
        return None
    keys = dict(p.partition("=")[::2] for p in job.split(";") if p)
    try:  # the rule's own benchmark path (the registry's), relative to the benchmarks folder
        return m.benchmark("").format(**keys).removeprefix("/benchmarks/")
    except KeyError:
        return None


def read_accounting(bench_dir: str | Path) -> dict[str, dict[str, float]]:
    """Benchmark file (relative path) → the newest row of the fork server's accounting
    (``benchmarks/forkserver.tsv``; ``landscape.forkserver``) for its job, as numbers
    (finished, cpu_s, wall_s, max_rss_mb); {} without one."""
    from .forkclient import ACCOUNTING_FILE

    path = Path(bench_dir) / ACCOUNTING_FILE
    out: dict[str, dict[str, float]] = {}
    if not path.is_file():
        return out
    with path.open() as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            rel = _benchmark_of(row["stage"].replace("-", "_"), row["job"], row["outputs"])
            if rel is not None:
                out[rel] = {k: _number(row.get(k)) for k in
                            ("finished", "cpu_s", "wall_s", "max_rss_mb")}
    return out


# an accounting row and a benchmark file belong to one execution of a job when they were written
# this close together (each right after the job ended); a later fresh run of the job is not
# matched to an old row
SAME_EXECUTION_S = 60.0


def forked_execution(accounted: Mapping[str, dict], bench_dir: str | Path,
                     tsv: Path) -> dict[str, float] | None:
    """The accounting row of the execution that wrote benchmark file ``tsv`` when the fork
    server ran it (then the benchmark's ``cpu_time`` and ``max_rss`` are the thin client's,
    and the row has the job's own), else None."""
    acc = accounted.get(Path(tsv).relative_to(bench_dir).as_posix())
    if acc is None or abs(acc["finished"] - Path(tsv).stat().st_mtime) > SAME_EXECUTION_S:
        return None
    return acc


def read_benchmarks(bench_dir: str | Path) -> pd.DataFrame:
    """Per stage of ``STAGES``: ``jobs`` (TSV files), ``cpu_s`` and ``wall_s`` (sums of
    ``cpu_time`` and ``s`` over every row of every file), ``tail_s`` (sum of ``unsampled_tail``
    of the rows with a ``cpu_time``) and ``cpu_missing`` (rows without a number in
    ``cpu_time``, left out of ``cpu_s``). A job the fork server ran (``forked``: its
    accounting row written within ``SAME_EXECUTION_S`` of the benchmark file) counts its
    process's exact CPU time instead, with no tail. A missing folder raises UserError."""
    bench_dir = Path(bench_dir)
    if not bench_dir.is_dir():
        raise UserError(MISSING_BENCHMARKS.format(path=bench_dir))
    accounted = read_accounting(bench_dir)
    rows = []
    for stage, modules in STAGES.items():
        files = sorted(f for m in modules for f in (bench_dir / m).rglob("*.tsv"))
        cpu = wall = tail = 0.0
        missing = forked = 0
        for tsv in files:
            acc = forked_execution(accounted, bench_dir, tsv)
            fork = acc is not None
            if fork and math.isfinite(acc["cpu_s"]):
                cpu += acc["cpu_s"]
                forked += 1
            with tsv.open() as fh:
                for row in csv.DictReader(fh, delimiter="\t"):
                    c, s = _number(row.get("cpu_time")), _number(row.get("s"))
                    wall += s if math.isfinite(s) else 0.0
                    if fork:  # its CPU time is the accounting's, counted above
                        continue
                    if math.isfinite(c):
                        cpu += c
                        tail += unsampled_tail(s) if math.isfinite(s) else 0.0
                    else:
                        missing += 1
        rows.append({"stage": stage, "jobs": len(files), "forked": forked, "cpu_s": cpu,
                     "tail_s": tail, "wall_s": wall, "cpu_missing": missing})
    return pd.DataFrame(rows)


def other_benchmark_folders(bench_dir: str | Path) -> list[str]:
    """Folders of ``bench_dir`` that are no stage module of ``STAGES`` (not costed)."""
    known = {m for modules in STAGES.values() for m in modules}
    return sorted(p.name for p in Path(bench_dir).iterdir() if p.is_dir() and p.name not in known)


# ----------------------------------------------------------------------------- units of work


def read_tables(tables_dir: str | Path, names) -> dict[str, pd.DataFrame | None]:
    """The study tables ``<tables_dir>/<name>.parquet`` (None where a file is missing)."""
    tables_dir = Path(tables_dir)
    return {n: read_table(tables_dir / f"{n}.parquet", n)
            if (tables_dir / f"{n}.parquet").is_file() else None for n in names}


TABLES = ("runs", "training", "hessian_eigs", "hessian_trace", "hessian_density",
          "curvature_repeats", "sharpness_trajectory", "curvature_matrices", "layer_curvature",
          "slice_1d", "slice_2d", "trajectory_projection", "robustness", "flatness",
          "connectivity", "spawn_barriers")


def _unit(stage, item, model, kind, passes, bound="exact", note="") -> dict:
    return {"stage": stage, "item": item, "model": model, "kind": kind,
            "passes": float(passes), "bound": bound, "note": note}


def _absent(stage: str, item: str, table: str) -> dict:
    return _unit(stage, item, "", "", math.nan, "not counted", f"no {table} table")


def _per_run(stage, item, df, passes: pd.Series, models, kind, bound="exact", note="",
             key="run") -> list[dict]:
    """One unit per model: ``passes`` (a Series aligned with ``df``) summed per model."""
    model = df[key].map(models)
    if model.isna().any():
        raise UserError(f"{item}: runs {sorted(set(df[key][model.isna()]))} are not in the "
                        "runs table; the tables are from different studies")
    sums = passes.groupby(model).sum()
    return [_unit(stage, item, m, kind, p, bound, note) for m, p in sums.items()]


def _bn_units(stage: str, tables: dict, names) -> list[dict]:
    out = []
    for name in names:
        df = tables.get(name)
        if df is not None and len(df) and bool(df["bn_recomputed"].any()):
            out.append(_unit(stage, f"BatchNorm re-estimation ({name})", "", "", math.nan,
                             "not counted", "passes over the train subset per point: not "
                             "recorded"))
    return out


def train_steps(runs: pd.DataFrame, training: pd.DataFrame) -> pd.DataFrame:
    """The runs table joined with each run's optimiser steps (``step``: the last epoch row's,
    or the divergence step) and epoch evaluations (``evals``), and ``images``: the images its
    steps passed forward and backward."""
    from .train import images_in_steps  # torch: imported where used, `--help` stays light

    last = training.sort_values("epoch").groupby("run").agg(step=("step", "last"),
                                                            evals=("epoch", "size"))
    df = runs.set_index("run").join(last, how="inner").reset_index()
    steps = df.apply(lambda r: max(int(r["step"]), int(r["diverged_step"]))
                     if r["status"] == "diverged" else int(r["step"]), axis=1)
    df["images"] = [images_in_steps(0, s, n, b) for s, n, b in
                    zip(steps, df["train_size"], df["batch_size"], strict=True)]
    return df


def _train_units(t: dict, models: Mapping[str, str]) -> list[dict]:
    runs, training = t["runs"], t["training"]
    if runs is None or training is None:
        return [_absent("train", "optimiser steps", "runs or training")]
    df = train_steps(runs, training)
    return (_per_run("train", "optimiser steps (training.step × batch)", df, df["images"],
                     models, "fwd_bwd")
            + _per_run("train", "epoch evaluations (train + test set, epoch 0 included)", df,
                       df["evals"] * (df["train_size"] + df["test_size"]), models, "forward"))


def _hessian_units(t: dict, models: Mapping[str, str]) -> list[dict]:
    out = []
    eigs, trace, dens = t["hessian_eigs"], t["hessian_trace"], t["hessian_density"]
    rep, sharp = t["curvature_repeats"], t["sharpness_trajectory"]
    builds = []
    if eigs is None:
        out.append(_absent("hessian", "HVP: Lanczos and power iteration", "hessian_eigs"))
    elif len(eigs):
        calls = eigs.drop_duplicates(["run", "method"])  # n_hvp is per whole method call
        out += _per_run("hessian", "HVP: Lanczos and power iteration (hessian_eigs)", calls,
                        calls["n_hvp"] * calls["eval_size"], models, "hvp",
                        note="n_hvp once per run and method")
        builds.append(eigs.drop_duplicates("run")[["run", "eval_size"]])
    if trace is None:
        out.append(_absent("hessian", "HVP: trace estimators", "hessian_trace"))
    elif len(trace):
        out += _per_run("hessian", "HVP: trace estimators (hessian_trace)", trace,
                        trace["n_hvp"] * trace["eval_size"], models, "hvp")
    if dens is None:
        out.append(_absent("hessian", "HVP: spectral density", "hessian_density"))
    elif len(dens):
        d = dens.drop_duplicates("run")
        if "n_hvp" in d:  # recorded by the curvature stage
            out += _per_run("hessian", "HVP: spectral density (SLQ starts after the first)", d,
                            d["n_hvp"] * d["eval_size"], models, "hvp")
        else:  # tables from before the column existed
            out += _per_run("hessian", "HVP: spectral density (SLQ starts after the first)", d,
                            (d["n_starts"] - 1).clip(lower=0) * d["n_steps"] * d["eval_size"],
                            models, "hvp", "upper bound",
                            "not recorded: (n_starts − 1) × n_steps, fewer if a Lanczos run "
                            "closed early")
    if rep is None:
        out.append(_absent("hessian", "HVP: repeat subsets", "curvature_repeats"))
    elif len(rep):
        r = rep[rep["subset"] >= 1]  # subset 0 repeats hessian_eigs and hessian_trace
        if len(r):
            out += _per_run("hessian", "HVP: repeat subsets (curvature_repeats, subset ≥ 1)", r,
                            r["n_hvp"] * r["eval_size"], models, "hvp",
                            note="subset 0 is hessian_eigs + hessian_trace: not counted twice")
            builds.append(r[r["n_hvp"] > 0][["run", "eval_size"]])
    if sharp is None:
        out.append(_absent("hessian", "HVP: sharpness trajectory", "sharpness_trajectory"))
    elif len(sharp):
        out += _per_run("hessian", "HVP: sharpness trajectory", sharp,
                        sharp["n_hvp"] * sharp["eval_size"], models, "hvp")
        out += _per_run("hessian", "loss at each snapshot (sharpness_trajectory)", sharp,
                        sharp["eval_size"], models, "forward")
        builds.append(sharp[sharp["n_hvp"] > 0][["run", "eval_size"]])
    if builds:
        b = pd.concat(builds, ignore_index=True)
        out += _per_run("hessian", "HVP graph builds (one per operator)", b, b["eval_size"],
                        models, "hvp_build",
                        note="forward + gradient graph a cached operator keeps; 0 FLOPs when "
                             "the products recompute it")
    return out


def _slices_units(t: dict, models: Mapping[str, str]) -> list[dict]:
    out = []
    for name in ("slice_1d", "slice_2d", "trajectory_projection"):
        df = t[name]
        if df is None:
            out.append(_absent("slices", f"points ({name})", name))
        elif len(df):
            out += _per_run("slices", f"points × splits ({name})", df, df["eval_size"], models,
                            "forward")
    return out + _bn_units("slices", t, ("slice_1d", "slice_2d", "trajectory_projection"))


def _matrices_units(t: dict, models: Mapping[str, str]) -> list[dict]:
    cm, layers = t["curvature_matrices"], t["layer_curvature"]
    if cm is None:  # or the stage is off (hessian.matrices.names: [])
        return [_absent("matrices", "products of H, G and F", "curvature_matrices")]
    out = []
    if layers is not None and len(layers):  # the layer blocks' Lanczos products, per matrix
        extra = layers.groupby(["run", "matrix"], as_index=False)["n_mv"].sum()
        cm = cm.merge(extra.rename(columns={"n_mv": "layer_mv"}), on=["run", "matrix"],
                      how="left")
    else:
        cm = cm.assign(layer_mv=0)
    cm = cm.assign(layer_mv=cm["layer_mv"].fillna(0))
    h, other = cm[cm["matrix"] == "hessian"], cm[cm["matrix"] != "hessian"]
    note = "n_mv + the layer blocks' products (layer_curvature.n_mv)"
    if len(h):
        out += _per_run("matrices", "HVP: Hessian (curvature_matrices)", h,
                        (h["n_mv"] + h["layer_mv"]) * h["eval_size"], models, "hvp", note=note)
        out += _per_run("matrices", "HVP graph builds (one per run)", h, h["eval_size"],
                        models, "hvp_build")
    if len(other):
        out += _per_run("matrices", "Gauss–Newton/Fisher products (curvature_matrices)", other,
                        (other["n_mv"] + other["layer_mv"]) * other["eval_size"], models, "gn",
                        note=note)
        out += _per_run("matrices", "Gauss–Newton/Fisher map builds (one per run and matrix)",
                        other, other["eval_size"], models, "gn_build")
    if layers is None:
        out.append(_absent("matrices", "layer blocks' products", "layer_curvature"))
    return out


def _robustness_units(t: dict, models: Mapping[str, str]) -> list[dict]:
    out = []
    noise, flat = t["robustness"], t["flatness"]
    if noise is None:
        out.append(_absent("robustness", "weight-noise points", "robustness"))
    elif len(noise):
        # σ = 0 is evaluated once per mode and reported for every draw
        r = noise[(noise["sigma"] > 0) | (noise["draw"] == 0)]
        out += _per_run("robustness", "weight-noise points × splits (robustness; σ = 0 once "
                        "per mode)", r, r["eval_size"], models, "forward")
    if flat is None:
        out.append(_absent("robustness", "sharpness ascents", "flatness"))
    elif len(flat):
        out += _per_run("robustness", "ascent gradient passes (ε-sharpness + adaptive worst)",
                        flat, 2 * flat["ascent_steps"] * flat["eval_size"], models, "fwd_bwd",
                        note="two projected ascents per run, ascent_steps gradients each")
        if "ascent_evaluations" in flat:  # recorded by the robustness stage
            out += _per_run("robustness", "ascent evaluations (flatness.ascent_evaluations)",
                            flat, flat["ascent_evaluations"] * flat["eval_size"], models,
                            "forward")
        else:  # tables from before the column existed
            out += _per_run("robustness", "ascent evaluations (base + last iterate, 2 ascents)",
                            flat, 2 * 2 * flat["eval_size"], models, "forward", "lower bound",
                            "a third evaluation, when the best iterate is an inner one, is not "
                            "recorded")
        out += _per_run("robustness", "average-case draws (+ base loss)", flat,
                        (flat["average_draws"] + 1) * flat["eval_size"], models, "forward")
        if "pacbayes_evaluations" in flat:
            out += _per_run("robustness", "PAC-Bayes searches (isotropic + magnitude-aware)",
                            flat, (flat["pacbayes_evaluations"] + flat["pacbayes_mag_evaluations"])
                            * flat["pacbayes_eval_size"], models, "forward")
        else:
            out.append(_unit("robustness", "PAC-Bayes bisections (2 searches per run)", "", "",
                             math.nan, "not counted",
                             "bisection steps are not recorded (pacbayes_draws evaluations of "
                             "pacbayes_eval_size images per step)"))
    return out + _bn_units("robustness", t, ("robustness",))


def _bezier_units(paths: pd.DataFrame, jobs: pd.DataFrame | None,
                  models: Mapping[str, str]) -> list[dict]:
    """Bézier bend training: the images its steps passed forward and backward, per pair, from
    the connectivity jobs' metadata (``connectivity_jobs``); pairs whose job did not record
    them (tables written before it did) are not counted."""
    pairs = paths.loc[paths["method"] == "bezier", ["pair", "run_a"]].drop_duplicates("pair")
    known = (jobs[(jobs["method"] == "bezier") & jobs["bezier_images"].notna()]
             if jobs is not None and len(jobs) else None)
    out = []
    if known is not None and len(known):
        df = pairs.merge(known[["pair", "bezier_images"]], on="pair", how="inner")
        out += _per_run("connectivity", "Bézier bend training (steps × batch)", df,
                        df["bezier_images"], models, "fwd_bwd", key="run_a",
                        note="from the jobs' metadata (bezier_images)")
        pairs = pairs[~pairs["pair"].isin(df["pair"])]
    if len(pairs):
        out.append(_unit("connectivity", "Bézier bend training", "", "", math.nan,
                         "not counted", f"{len(pairs)} pair(s) without bezier_images in their "
                         "job's metadata (written before it was recorded)"))
    return out


def _connectivity_units(t: dict, models: Mapping[str, str]) -> list[dict]:
    out = []
    paths, spawn, runs = t["connectivity"], t["spawn_barriers"], t["runs"]
    if paths is None:
        out.append(_absent("connectivity", "path points", "connectivity"))
    elif len(paths):
        out += _per_run("connectivity", "path points × splits (connectivity)", paths,
                        paths["eval_size"], models, "forward", key="run_a")
        if (paths["method"] == "bezier").any():
            out += _bezier_units(paths, t["connectivity_jobs"], models)
        act = paths[(paths["method"] == "activation") & (paths["split"] == "train")]
        if len(act):  # A's and B's activations on the train subset, once per pair
            act = act.drop_duplicates("pair")
            out += _per_run("connectivity", "activation matching (A and B, train subset)", act,
                            2 * act["eval_size"], models, "forward", key="run_a")
        if (paths["method"] == "repair").any():
            out.append(_unit("connectivity", "REPAIR statistics", "", "", math.nan,
                             "not counted", "one partial pass over the train subset per "
                             "corrected layer at every point (and at the endpoints): the layer "
                             "count is not in the tables"))
    if spawn is None:
        out.append(_absent("connectivity", "spawned children", "spawn_barriers"))
    elif len(spawn):
        if runs is None:
            out.append(_absent("connectivity", "spawned children's steps", "runs"))
        else:
            from .train import images_in_steps

            kids = spawn.drop_duplicates(["run", "spawn_step"]).merge(
                runs[["run", "train_size", "batch_size"]], on="run", how="inner")
            images = pd.Series([images_in_steps(k, a, n, b) + images_in_steps(k, c, n, b)
                                for k, a, c, n, b in zip(kids["spawn_step"], kids["steps_a"],
                                                         kids["steps_b"], kids["train_size"],
                                                         kids["batch_size"], strict=True)],
                               kids.index)
            out += _per_run("connectivity", "spawned children's steps (steps_a + steps_b)", kids,
                            images, models, "fwd_bwd")
        points = (paths[paths["method"] == paths["method"].iloc[0]]["t"].nunique()
                  if paths is not None and len(paths) else 0)
        if points:
            per = spawn.groupby(["run", "spawn_step"], as_index=False)["eval_size"].sum()
            out += _per_run("connectivity", "spawn path points × splits", per,
                            points * per["eval_size"], models, "forward", "exact",
                            f"{points} points per path: the connectivity table's t grid (both "
                            "use connectivity.points)")
        else:
            out.append(_unit("connectivity", "spawn path points", "", "", math.nan,
                             "not counted", "points per path not recorded (no connectivity "
                             "rows to read connectivity.points from)"))
    out.append(_unit("connectivity", "weight matching (alignment)", "", "", math.nan,
                     "not counted", "works on the weights, not on images"))
    return out + _bn_units("connectivity", t, ("connectivity",))


def work_units(tables: Mapping[str, pd.DataFrame | None],
               models: Mapping[str, str]) -> pd.DataFrame:
    """Units of work of every stage from the study tables (``TABLES``; None: missing) and
    ``connectivity_jobs`` (the connectivity jobs' metadata), one row per stage, item and model:
    ``passes`` (images through the model, of ``kind`` in ``KINDS``), ``bound`` (``BOUNDS``) and
    a ``note``. ``models`` maps run → model key (``model_key``)."""
    t = {n: tables.get(n) for n in (*TABLES, "connectivity_jobs")}
    rows = (_train_units(t, models) + _hessian_units(t, models) + _matrices_units(t, models)
            + _slices_units(t, models)
            + _connectivity_units(t, models) + _robustness_units(t, models))
    return pd.DataFrame(rows, columns=UNIT_COLUMNS)


# ----------------------------------------------------------------------------- FLOPs per unit
def model_key(name: str, options: Mapping) -> str:
    """A readable key of a model and its options, e.g. ``cnn(hidden=64, width=16)``."""
    return f"{name}({', '.join(f'{k}={options[k]}' for k in sorted(options))})"


def run_models(results_dir: str | Path, runs: pd.DataFrame) -> tuple[dict, dict, str]:
    """(run → model key, model key → (name, options), where the options came from): the
    checkpoint's ``config`` (``runs/<run>/checkpoint.pt``), else the runs table's model with the
    schema's default options."""
    from .checkpoints import load_checkpoint
    from .schema import defaults

    keys, specs, sources = {}, {}, set()
    for run, name in zip(runs["run"], runs["model"], strict=True):
        ckpt = Path(results_dir) / "runs" / run / "checkpoint.pt"
        if ckpt.is_file():
            cfg = load_checkpoint(ckpt)["meta"]["config"]
            name, options = cfg["model"], dict(cfg.get("model_options") or {})
            sources.add("checkpoints")
        else:
            options = defaults("models", name)
            sources.add("schema defaults (no checkpoint)")
        keys[run] = model_key(name, options)
        specs[keys[run]] = (name, options)
    return keys, specs, " and ".join(sorted(sources)) or "none"


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs ``FlopCounterMode`` counts while ``fn()`` runs."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def model_flops(model: nn.Module, input_shape=(1, 28, 28), classes: int = 10, n: int = 8,
                hvp_method: str = "cached", gn_cached: bool = True) -> dict[str, float]:
    """FLOPs per image of one unit of each kind in ``KINDS`` on ``model``, counted on ``n``
    random images: ``forward`` (eval mode, no graph), ``fwd_bwd`` (mean cross-entropy and its
    gradient to the parameters), ``hvp`` (one Hessian-vector product of
    ``landscape.hessian.HessianOperator`` with ``hvp_method``; for ``cached``, a product through
    the kept graph), ``hvp_build`` (``cached``: building that graph, once per operator; else 0),
    and ``gn``/``gn_build`` the same for a Gauss–Newton (or empirical Fisher: the same matmuls)
    product of ``landscape.hessian.GaussNewtonOperator`` with its maps cached or not.
    """
    import torch
    from torch.nn import functional as F

    from .hessian.gauss_newton import GaussNewtonOperator
    from .hessian.operator import HessianOperator

    gen = torch.Generator().manual_seed(0)
    x = torch.randn((n, *input_shape), generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        forward = count_flops(lambda: model(x))

    def step():
        torch.autograd.grad(F.cross_entropy(model(x), y), params)

    model.train()
    fwd_bwd = count_flops(step)
    out = {"forward": forward / n, "fwd_bwd": fwd_bwd / n}
    operators = (("hvp", HessianOperator(model, x, y, batch_size=None, method=hvp_method)),
                 ("gn", GaussNewtonOperator(model, x, y, "ggn", batch_size=None,
                                            max_cache_mb=math.inf if gn_cached else 0.0)))
    for kind, op in operators:  # each puts the model in eval mode
        v = torch.randn(op.dim, generator=gen, dtype=torch.float64)
        first = count_flops(lambda op=op, v=v: op.matvec(v))
        second = count_flops(lambda op=op, v=v: op.matvec(v))
        op.release()
        out[kind], out[f"{kind}_build"] = second / n, (first - second) / n
    model.train(was_training)
    return out


def hvp_method_for(model: nn.Module, eval_size: int, options: Mapping,
                   input_shape=(1, 28, 28)) -> str:
    """The product method the curvature stages used: ``options['hvp_method']``, or with
    ``auto`` the operator's own choice for ``eval_size`` images (graph-size estimate)."""
    import torch

    from .hessian.operator import HessianOperator

    if options["hvp_method"] != "auto":
        return options["hvp_method"]
    x = torch.zeros((int(eval_size), *input_shape))
    y = torch.zeros(int(eval_size), dtype=torch.int64)
    op = HessianOperator(model, x, y, batch_size=options["batch_size"], method="auto",
                         max_cache_mb=options["max_cache_mb"])
    return op.method


def gn_cached_for(model: nn.Module, eval_size: int, options: Mapping,
                  input_shape=(1, 28, 28)) -> bool:
    """Whether the curvature_matrices stage cached its Gauss–Newton/Fisher maps for
    ``eval_size`` images (the operator's graph-size estimate against ``max_cache_mb``)."""
    import torch

    from .hessian.gauss_newton import GaussNewtonOperator

    x = torch.zeros((int(eval_size), *input_shape))
    y = torch.zeros(int(eval_size), dtype=torch.int64)
    return GaussNewtonOperator(model, x, y, "ggn", batch_size=options["batch_size"],
                               max_cache_mb=options["max_cache_mb"]).cached


def hessian_options(results_dir: str | Path) -> tuple[dict, str]:
    """The curvature stages' options as the jobs stored them in their tables' metadata
    (``hessian/<run>/*.parquet``), else the schema's defaults; and which of the two."""
    from .schema import defaults, with_defaults

    for path in sorted(Path(results_dir).glob("hessian/*/*.parquet")):
        try:
            options = table_meta(path).get("options")
        except Exception:  # noqa: BLE001 - an unreadable per-job file: look at the next
            continue
        if isinstance(options, dict):
            return with_defaults(options, "hessian"), f"{path.parent.name}'s job tables"
    return defaults("hessian"), "schema defaults"


# ----------------------------------------------------------------------------- yardsticks
def matmul_peak(size: int = 2048, repeats: int = 3) -> float:
    """fp32 matmul FLOP/s on one thread: 2·size³ over the fastest of ``repeats`` timed
    products (after one warm-up). The thread count is restored."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=gen)
        b = torch.randn(size, size, generator=gen)
        torch.mm(a, b)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return 2 * size**3 / min(times)


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def import_cost(module: str) -> tuple[float, float]:
    """(CPU-s, wall-s) of a fresh interpreter running ``import <module>``."""
    cpu0, t0 = _child_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return _child_cpu() - cpu0, time.perf_counter() - t0


def data_cost(path: str | Path) -> tuple[float, float]:
    """(CPU-s, wall-s) of loading and verifying the prepared data (``load_prepared``)."""
    from .data import load_prepared

    cpu0, t0 = time.process_time(), time.perf_counter()
    load_prepared(path)
    return time.process_time() - cpu0, time.perf_counter() - t0


def fixed_cost(data_path: str | Path | None) -> dict[str, dict[str, float]]:
    """Per stage of ``STAGES``: the CPU- and wall-seconds of importing its first stage module
    in a fresh interpreter (``import_cpu_s``, ``import_wall_s``) and of loading the prepared
    data (``data_cpu_s``, ``data_wall_s``; NaN without ``data_path``), with their sums
    ``cpu_s`` and ``wall_s``."""
    data = data_cost(data_path) if data_path is not None else (math.nan, math.nan)
    out = {}
    for stage, modules in STAGES.items():
        cpu, wall = import_cost(f"landscape.stages.{modules[0]}")
        out[stage] = {"import_cpu_s": cpu, "import_wall_s": wall, "data_cpu_s": data[0],
                      "data_wall_s": data[1], "cpu_s": cpu + (data[0] if data_path else 0.0),
                      "wall_s": wall + (data[1] if data_path else 0.0)}
    return out


def connectivity_jobs(results_dir: str | Path) -> pd.DataFrame:
    """One row per connectivity job and path method, from the metadata of the job's own
    connectivity table (``results/connectivity/<pair>/connectivity.parquet``): ``pair``,
    ``method``, ``seconds`` (wall-seconds of that method inside the job: its path built, REPAIR
    measured or the bend trained, and its points evaluated) and, on the Bézier row,
    ``bezier_images`` (images the bend's training steps passed; NaN where not recorded)."""
    import re

    from .registry import by_module

    pattern = re.sub(r"\{[^}]+\}", "*", by_module("connectivity").output("", "connectivity"))
    rows = []
    for path in sorted(Path(results_dir).glob(pattern.lstrip("/"))):
        meta = table_meta(path)
        for method, sec in (meta.get("seconds") or {}).items():
            rows.append({"pair": path.parent.name, "method": method, "seconds": float(sec),
                         "bezier_images": float(meta.get("bezier_images", math.nan))
                         if method == "bezier" else math.nan})
    return pd.DataFrame(rows, columns=["pair", "method", "seconds", "bezier_images"])


# ----------------------------------------------------------------------------- speed targets
# The kernels the study's speed is judged by: FLOPs their work needs per second as a fraction of
# the one-thread fp32 matmul peak measured by the same command, and the fraction each should
# reach (the project's targets; small convolutions and per-point overheads make the matmul peak
# unreachable, training at B = 128 most of all)
RATE_TARGETS = {"slices": 0.50, "robustness": 0.50, "path evaluation": 0.50,
                "training steps (B = 128)": 0.30, "curvature": 0.45}
# path methods whose seconds hold only path evaluation (the matchings run before them; REPAIR
# and the Bézier bend add work of their own)
PATH_EVALUATION_METHODS = ("linear", "aligned", "activation")
RATE_COLUMNS = {
    "kernel": "what is measured (RATE_TARGETS)",
    "scope": "the work and the seconds it is taken over",
    "gflop": "GFLOP that work needs (matmuls and convolutions)",
    "seconds": "seconds it took: CPU-seconds of the stage's jobs (cpu_s_used), or wall-seconds "
               "timed inside the one-thread jobs (training loop, path methods)",
    "gflop_per_s": "gflop / seconds",
    "of_peak": "gflop_per_s as a fraction of the one-thread fp32 matmul peak",
    "count": "exact, or lower bound (some work not counted: the rate is at least this)",
    "target": "the fraction of peak the kernel should reach",
    "met": "yes / no; – where the study has no such work",
}


def kernel_rates(report: pd.DataFrame, tables: Mapping[str, pd.DataFrame | None],
                 per_image: Mapping[str, Mapping[str, float]], models: Mapping[str, str],
                 peak: float) -> pd.DataFrame:
    """One row per kernel of ``RATE_TARGETS`` (columns ``RATE_COLUMNS``). Slices, robustness
    and curvature (the hessian family) are their stage's rows of ``report``; path evaluation is
    the connectivity jobs' linear, aligned and activation paths (points × splits × images forward
    over their seconds, ``connectivity_jobs``); training is the optimiser steps of the runs with
    batch size 128 over their training loops' seconds (``runs.train_seconds``)."""
    stage = report.set_index("stage")
    rows = []

    def add(kernel, scope, gflop, seconds, count="exact"):
        rate = gflop / seconds if seconds > 0 and math.isfinite(gflop) else math.nan
        frac = rate / (peak / 1e9)
        target = RATE_TARGETS[kernel]
        rows.append({"kernel": kernel, "scope": scope, "gflop": gflop, "seconds": seconds,
                     "gflop_per_s": rate, "of_peak": frac, "count": count, "target": target,
                     "met": "–" if not math.isfinite(frac) else "yes" if frac >= target
                     else "no"})

    for kernel, name in (("slices", "slices"), ("robustness", "robustness"),
                         ("curvature", "hessian")):
        r = stage.loc[name] if name in stage.index else None
        if r is None or not r["jobs"]:
            add(kernel, f"{name} stage: no jobs", math.nan, 0.0, "not counted")
        else:
            add(kernel, f"{name} stage: {int(r['jobs'])} jobs, CPU-s", float(r["gflop"]),
                float(r["cpu_s_used"]), r["count"])
    paths, jobs = tables.get("connectivity"), tables.get("connectivity_jobs")
    if paths is None or jobs is None or not len(paths) or not len(jobs):
        add("path evaluation", "no connectivity jobs", math.nan, 0.0, "not counted")
    else:
        sel = paths[paths["method"].isin(PATH_EVALUATION_METHODS)]
        passes = sel.groupby(["pair", "method", "run_a"], as_index=False)["eval_size"].sum()
        df = passes.merge(jobs[["pair", "method", "seconds"]], on=["pair", "method"])
        flop = sum(p * per_image[models[r]]["forward"]
                   for p, r in zip(df["eval_size"], df["run_a"], strict=True))
        add("path evaluation", f"{len(df)} paths ({', '.join(sorted(set(df['method'])))}), "
            "wall-s in the jobs", flop / 1e9, float(df["seconds"].sum()))
    runs, training = tables.get("runs"), tables.get("training")
    steps = (train_steps(runs, training) if runs is not None and training is not None
             else pd.DataFrame(columns=["batch_size"]))
    b128 = steps[steps["batch_size"] == 128]
    if not len(b128):
        add("training steps (B = 128)", "no run with batch size 128", math.nan, 0.0,
            "not counted")
    else:
        flop = sum(i * per_image[models[r]]["fwd_bwd"]
                   for i, r in zip(b128["images"], b128["run"], strict=True))
        add("training steps (B = 128)", f"{len(b128)} runs' optimiser steps, "
            "runs.train_seconds", flop / 1e9, float(b128["train_seconds"].sum()))
    return pd.DataFrame(rows, columns=list(RATE_COLUMNS))


# ----------------------------------------------------------------------------- the report
def unit_flops(units: pd.DataFrame, per_image: Mapping[str, Mapping[str, float]]) -> pd.Series:
    """FLOPs of each unit: passes × FLOPs per image of its model and kind (NaN: not counted)."""
    return pd.Series([p * per_image[m][k] if math.isfinite(p) else math.nan
                      for p, m, k in zip(units["passes"], units["model"], units["kind"],
                                         strict=True)], units.index, dtype=float)


def count_status(bounds) -> str:
    """How far a sum of units with these bounds is a full count."""
    b = set(bounds)
    low = bool(b & {"lower bound", "not counted"})
    high = "upper bound" in b
    return "approx." if low and high else "lower bound" if low else \
        "upper bound" if high else "exact"


def report_frame(bench: pd.DataFrame, units: pd.DataFrame, flops: pd.Series, peak: float,
                 fixed: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """One row per stage plus a ``total`` row, with the columns of ``REPORT_COLUMNS``.

    ``bench``: ``read_benchmarks``; ``units``/``flops``: ``work_units`` and ``unit_flops``;
    ``peak``: FLOP/s (``matmul_peak``); ``fixed``: ``fixed_cost`` (per-job CPU-s ``cpu_s``)."""
    rows = []
    for r in bench.itertuples():
        sel = units["stage"] == r.stage
        gflop = float(flops[sel].sum(min_count=1)) / 1e9 if sel.any() else math.nan
        fix = fixed.get(r.stage, {}).get("cpu_s", math.nan)
        data = fixed.get(r.stage, {}).get("data_cpu_s", math.nan)
        forked = int(getattr(r, "forked", 0))
        fixed_cpu = (r.jobs - forked) * fix + (forked * data if forked else 0.0)
        rows.append({"stage": r.stage, "jobs": int(r.jobs), "forked": forked, "cpu_s": r.cpu_s,
                     "tail_s": r.tail_s, "cpu_s_used": r.cpu_s + r.tail_s, "wall_s": r.wall_s,
                     "gflop": gflop, "count": count_status(units.loc[sel, "bound"])
                     if sel.any() else "not counted",
                     "fixed_s_per_job": fixed_cpu / r.jobs if r.jobs else fix,
                     "fixed_cpu_s": fixed_cpu})
    df = pd.DataFrame(rows)
    total = {"stage": "total", "jobs": int(df["jobs"].sum()), "forked": int(df["forked"].sum()),
             "cpu_s": df["cpu_s"].sum(),
             "tail_s": df["tail_s"].sum(), "cpu_s_used": df["cpu_s_used"].sum(),
             "wall_s": df["wall_s"].sum(), "gflop": df["gflop"].sum(min_count=1),
             "count": count_status(units["bound"]),
             "fixed_s_per_job": df["fixed_cpu_s"].sum() / max(df["jobs"].sum(), 1),
             "fixed_cpu_s": df["fixed_cpu_s"].sum()}
    df = pd.concat([df, pd.DataFrame([total])], ignore_index=True)
    cpu = df["cpu_s_used"].where(df["cpu_s_used"] > 0)
    df["gflop_per_cpu_s"] = df["gflop"] / cpu
    df["of_peak"] = df["gflop_per_cpu_s"] / (peak / 1e9)
    df["fixed_share"] = df["fixed_cpu_s"] / cpu
    return df[list(REPORT_COLUMNS)]


def where_the_time_goes(report: pd.DataFrame, peak: float) -> str:
    """One line: the stage with the most CPU-seconds, its share and how far from peak."""
    stages = report[report["stage"] != "total"]
    total = float(report.loc[report["stage"] == "total", "cpu_s_used"].iloc[0])
    if stages.empty or not total > 0:
        return "where the time goes: no CPU time recorded"
    top = stages.loc[stages["cpu_s_used"].idxmax()]
    rate = (f"{top['gflop_per_cpu_s']:.2f} GFLOP per CPU-s, {top['of_peak']:.1%} of the "
            f"one-thread matmul peak ({peak / 1e9:.1f} GFLOP/s)"
            if math.isfinite(top["gflop_per_cpu_s"]) else "no FLOP count")
    line = (f"where the time goes: {top['stage']} uses {top['cpu_s_used']:.0f} of {total:.0f} "
            f"CPU-s ({top['cpu_s_used'] / total:.0%}) at {rate}; per-job fixed cost is "
            f"{top['fixed_share']:.0%} of its CPU time")
    if (stages["of_peak"] > 1).any():
        line += ("\nwarning: a stage ran above the measured peak: either the peak was measured "
                 "low (the machine was busy while this command ran: rerun it on an idle "
                 "machine before reading of_peak), or the stage's kernels beat a 2048² torch.mm "
                 "(oneDNN's channels-last convolutions can come within a few percent of the "
                 "core's limit; the matmul is a yardstick, not that limit)")
    return line


def _fmt(col: str, v) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if col in ("jobs", "forked"):
        return f"{int(v)}"
    if col in ("of_peak", "fixed_share", "target"):
        return f"{v:.1%}" if col != "target" else f"≥ {v:.0%}"
    if col in ("cpu_s", "tail_s", "cpu_s_used", "wall_s", "gflop", "seconds"):
        return f"{v:,.1f}"
    return f"{v:.2f}"


def _units_view(units: pd.DataFrame, flops: pd.Series) -> pd.DataFrame:
    u = units.assign(gflop=flops / 1e9)
    u["kind"] = u["kind"].map(lambda k: KINDS.get(k, k))
    return u


def _numeric(cell: str) -> bool:
    for part in cell.split(" / "):
        try:
            float(part.replace(",", "").removesuffix("%").removesuffix(" M"))
        except ValueError:
            if part != "–":
                return False
    return True


def _grid(header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    """A table: Markdown, or plain text with numeric columns right-aligned."""
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return out + ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    right = [all(_numeric(r[i]) for r in rows) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(cells, widths, right, strict=True)).rstrip()

    return [line(header)] + [line(r) for r in rows]


def format_report(report: pd.DataFrame, units: pd.DataFrame, flops: pd.Series, peak: float,
                  per_image: Mapping[str, Mapping[str, float]], fixed: Mapping, notes: list[str],
                  markdown: bool = False, rates: pd.DataFrame | None = None) -> str:
    """The report as text (``markdown``: Markdown tables): the stage table, the one-line
    summary, the kernels' rates against their targets (``rates``: ``kernel_rates``), the units
    of work with their counts, FLOPs per image, the fixed costs and notes."""
    h = (lambda s: f"## {s}\n") if markdown else (lambda s: f"{s}:")
    out = [h("cost per stage") if markdown else "cost per stage"]
    out += _grid(list(REPORT_COLUMNS), [[_fmt(c, r[c]) for c in REPORT_COLUMNS]
                                        for _, r in report.iterrows()], markdown)
    out += ["", where_the_time_goes(report, peak), ""]
    if rates is not None:
        out.append(h("kernel rates against their targets (fraction of the one-thread matmul "
                     "peak)"))
        out += _grid(list(RATE_COLUMNS), [[_fmt(c, r[c]) for c in RATE_COLUMNS]
                                          for _, r in rates.iterrows()], markdown)
        out.append("")
    out.append(h("units of work (passes: images through the model; count: how far it is a full "
                 "count)"))
    u = _units_view(units, flops)
    out += _grid(["stage", "item", "model", "kind", "passes", "GFLOP", "count", "note"],
                 [[r.stage, r.item, r.model, r.kind,
                   f"{r.passes:,.0f}" if math.isfinite(r.passes) else "–",
                   _fmt("gflop", r.gflop), r.bound, r.note] for r in u.itertuples()], markdown)
    out += ["", h("FLOPs per image (FlopCounterMode: matmuls and convolutions, multiply-add = 2)")]
    out += _grid(["model", *KINDS.values()],
                 [[m, *(f"{f[k] / 1e6:.3f} M" for k in KINDS)] for m, f in per_image.items()],
                 markdown)
    out += ["", h("fixed cost per job (CPU-s / wall-s)")]
    out += _grid(["stage", "import (fresh interpreter)", "load + verify data", "total CPU-s"],
                 [[s, f"{f['import_cpu_s']:.2f} / {f['import_wall_s']:.2f}",
                   f"{f['data_cpu_s']:.2f} / {f['data_wall_s']:.2f}", f"{f['cpu_s']:.2f}"]
                  for s, f in fixed.items()], markdown)
    out += ["", h("notes")] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def cost_report(results_dir: str | Path, *, measure_fixed: bool = True,
                peak_repeats: int = 3) -> dict:
    """Everything ``python -m landscape cost`` prints, for ``results_dir`` (a finished study):
    ``report``, ``units``, ``flops``, ``per_image``, ``peak``, ``fixed``, ``notes``."""
    import torch

    from .models import build_model

    results_dir = Path(results_dir)
    bench = read_benchmarks(results_dir / "benchmarks")
    tables_dir = results_dir / "tables"
    if not tables_dir.is_dir():
        raise UserError(f"no tables folder {tables_dir}: give the results folder of a finished "
                        "study")
    tables = read_tables(tables_dir, TABLES)
    tables["connectivity_jobs"] = connectivity_jobs(results_dir)
    runs = tables["runs"]
    if runs is None or runs.empty:
        raise UserError(f"{tables_dir / 'runs.parquet'} is missing or empty: the cost model "
                        "needs the study's runs")
    keys, specs, source = run_models(results_dir, runs)
    models = dict(keys)  # connectivity rows take run_a's model
    units = work_units(tables, models)
    hopts, hsource = hessian_options(results_dir)
    hvp_size = int(tables["hessian_eigs"]["eval_size"].max()) if tables["hessian_eigs"] is not \
        None and len(tables["hessian_eigs"]) else int(hopts["eval_size"])
    per_image, methods, gn_cached = {}, {}, {}
    for key, (name, options) in specs.items():
        torch.manual_seed(0)
        model = build_model(name, **options)
        methods[key] = hvp_method_for(model, hvp_size, hopts)
        gn_cached[key] = gn_cached_for(model, hvp_size, hopts)
        per_image[key] = model_flops(model, hvp_method=methods[key], gn_cached=gn_cached[key])
    flops = unit_flops(units, {**per_image, "": dict.fromkeys(KINDS, math.nan)})
    peak = matmul_peak(repeats=peak_repeats)
    data = results_dir / "data" / "fashion_mnist.pt"
    fixed = fixed_cost(data if data.is_file() else None) if measure_fixed else {}
    notes = [
        f"time: Snakemake benchmark files in {results_dir / 'benchmarks'}; wall_s sums the jobs, "
        "not the study's elapsed time. Snakemake samples cpu_time (every 0.5 s for 15 s, then "
        "every 30 s), so cpu_s misses each job's tail after its last sample; cpu_s_used adds "
        "that tail as one busy core (an estimate: the sampler's own delays shift the samples)",
        "FLOPs: torch FlopCounterMode on one unit of the run's model; element-wise work "
        "(activations, pooling, loss, optimiser updates) is not counted, so even exact counts "
        "are of matmul and convolution work only",
        f"models from {source}; HVP method "
        + ", ".join(f"{k}: {m}" for k, m in methods.items())
        + "; Gauss–Newton/Fisher maps " + ", ".join(
            f"{k}: {'cached' if c else 'recomputed'}" for k, c in gn_cached.items())
        + f" (hvp_method {hopts['hvp_method']!r}, batch {hopts['batch_size']}, max_cache_mb "
          f"{hopts['max_cache_mb']}, from {hsource}; evaluation set {hvp_size} images)",
        f"peak: fp32 2048×2048 matmul on one thread, fastest of {peak_repeats}: "
        f"{peak / 1e9:.1f} GFLOP/s (measured now: a busy machine reads low)",
    ]
    if not data.is_file():
        notes.append(f"no prepared data at {data}: fixed cost without the data load")
    missing = bench[bench["cpu_missing"] > 0]
    for r in missing.itertuples():
        notes.append(f"{r.stage}: {r.cpu_missing} benchmark rows without cpu_time, left out "
                     "of cpu_s")
    others = other_benchmark_folders(results_dir / "benchmarks")
    if others:
        notes.append(f"benchmark folders of no costed stage: {', '.join(others)}")
    for r in units[units["bound"] != "exact"].itertuples():
        notes.append(f"{r.stage}: {r.item}: {r.bound}" + (f" ({r.note})" if r.note else ""))
    report = report_frame(bench, units, flops, peak, fixed)
    return {"report": report, "units": units, "flops": flops, "per_image": per_image,
            "peak": peak, "fixed": fixed, "notes": notes, "summary":
            where_the_time_goes(report, peak),
            "rates": kernel_rates(report, tables, per_image, models, peak)}

