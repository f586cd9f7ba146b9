"""Stage: robustness of one trained run to weight perturbations, and its flatness measures.

Writes two tables for the run: ``robustness`` (loss and accuracy under Gaussian weight noise,
every mode × σ × draw × split, σ = 0 included) and ``flatness`` (one row: ε-sharpness, adaptive
sharpness worst and average case, PAC-Bayes σ and 1/σ² plain and magnitude-aware, ‖θ‖ and the
distance from initialisation). Every perturbed evaluation is written into the model's own
parameters (``landscape.evaluator.PointEvaluator``; no model copies) and the weights are restored
bitwise. A diverged run is skipped: both tables are written empty with the reason.
"""

from __future__ import annotations

import time

import pandas as pd

from ..checkpoints import load_snapshots
from ..evaluator import PointEvaluator, use_channels_last
from ..io import IntegrityError
from ..models import count_parameters, has_batchnorm
from ..params import detached, from_state, norm, parameters, sub
from ..robustness import (
    adaptive_sharpness,
    adaptive_sharpness_average,
    epsilon_sharpness,
    pacbayes_flatness,
    robustness_curve,
)
from ..schemas import robustness as _tables  # noqa: F401  registers the tables written here

HELP = ("loss and accuracy of one run under Gaussian weight noise (absolute and relative), and "
        "its flatness measures: ε-sharpness, adaptive sharpness, PAC-Bayes σ, norms")
# `correlations` belongs to the generalisation stage; `enabled` only adds or removes jobs.
STAGE = {
    "order": 40,
    "section": "robustness",
    "drop": ["enabled", "correlations"],
    "enabled": "robustness.enabled",
    "inputs": ["data", "checkpoint", "snapshots"],
    "tables": ["robustness", "flatness"],
    "group": "geometry",
    "resources": {"mem_mb": 1600, "runtime": 6},
}


def _initial_weights(path, model, run: str):
    snaps = load_snapshots(path)
    if snaps["meta"].get("run") != run:
        raise IntegrityError(f"{path}: snapshots of run {snaps['meta'].get('run')!r}, not of "
                             f"{run!r}; delete it and rerun the run's training job.")
    if not snaps["step"] or snaps["step"][0] != 0:
        raise IntegrityError(f"{path}: the first snapshot is at step {snaps['step'][:1]}, not 0 "
                             "(the initialisation); delete it and rerun the run's training job.")
    return [t.to(p.device) for t, p in zip(from_state(snaps["states"][0], model),
                                           parameters(model), strict=True)]


def measure(job) -> dict[str, pd.DataFrame]:
    cfg = job.params
    sh, pb = cfg["sharpness"], cfg["pacbayes"]
    start = time.perf_counter()
    dev = job.device
    model, meta = job.model()
    run_id = meta["run"]
    theta0 = _initial_weights(job.inputs["snapshots"], model, run_id)

    seed = cfg["subset_seed"]
    tr, tr_name = job.subset("train", cfg["train_size"], seed)
    te, te_name = job.subset("test", cfg["test_size"], seed)
    sh_set, sh_name = job.subset("train", sh["eval_size"], seed)
    (x_tr, y_tr), (x_te, y_te), (x_sh, y_sh) = tr.tensors(dev), te.tensors(dev), sh_set.tensors(dev)
    if cfg["channels_last"]:
        x_tr, x_te, x_sh = use_channels_last(model, x_tr, x_te, x_sh)
    recompute = bool(cfg["recompute_bn"]) and has_batchnorm(model)
    bs = int(cfg["batch_size"])
    progress = job.progress
    timings = {}

    # weight noise and PAC-Bayes: points written in place, BatchNorm re-estimated per point
    t0 = time.perf_counter()
    with PointEvaluator(model, {"train": (x_tr, y_tr), "test": (x_te, y_te)}, bs,
                        bn_data=x_tr if recompute else None) as ev:
        curves = [robustness_curve(ev, [0.0, *cfg["sigmas"][mode]], modes=[mode],
                                   draws=cfg["draws"], seed=cfg["seed"], progress=progress)
                  for mode in cfg["modes"]]
        timings["noise"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        pac = {aware: pacbayes_flatness(ev, "train", magnitude_aware=aware,
                                        deviation=pb["deviation"], draws=pb["draws"],
                                        seed=cfg["seed"], lo=pb["lo"], hi=pb["hi"],
                                        rtol=pb["rtol"], max_iter=pb["max_iter"])
               for aware in (False, True)}
        timings["pacbayes"] = time.perf_counter() - t0

    # sharpness: projected ascent on the training subset, model in eval mode (outside the
    # evaluator above: each measure opens its own and restores θ bitwise)
    t0 = time.perf_counter()
    ascent = dict(steps=sh["steps"], step_size=sh["step_size"], seed=cfg["seed"], batch_size=bs)
    eps = epsilon_sharpness(model, x_sh, y_sh, epsilon=sh["epsilon"], **ascent)
    worst = adaptive_sharpness(model, x_sh, y_sh, rho=sh["rho"], **ascent)
    average = adaptive_sharpness_average(model, x_sh, y_sh, rho=sh["rho"],
                                         draws=sh["average_draws"], seed=cfg["seed"],
                                         batch_size=bs)
    timings["sharpness"] = time.perf_counter() - t0

    theta = detached(parameters(model))
    noise = _noise_table(curves, run_id, {"train": (tr_name, len(tr)), "test": (te_name, len(te))},
                         recompute)
    seconds = time.perf_counter() - start
    flat = {
        "run": run_id, "eval_set": sh_name, "eval_size": len(sh_set),
        "base_loss": eps["base_loss"], "epsilon": sh["epsilon"], "eps_sharpness": eps["value"],
        "rho": sh["rho"], "adaptive_worst": worst["value"],
        "adaptive_average": average["value"], "adaptive_average_se": average["se"],
        "ascent_steps": sh["steps"],
        "ascent_inside_box": bool(eps["inside_box"] and worst["inside_box"]),
        "ascent_evaluations": eps["evaluations"] + worst["evaluations"],
        "average_draws": sh["average_draws"],
        "pacbayes_eval_set": tr_name, "pacbayes_eval_size": len(tr),
        "deviation": pb["deviation"], "pacbayes_draws": pb["draws"],
        "pacbayes_sigma": pac[False]["sigma"], "pacbayes_flatness": pac[False]["flatness"],
        "pacbayes_converged": bool(pac[False]["bracketed"] and pac[False]["converged"]),
        "pacbayes_mag_sigma": pac[True]["sigma"], "pacbayes_mag_flatness": pac[True]["flatness"],
        "pacbayes_mag_converged": bool(pac[True]["bracketed"] and pac[True]["converged"]),
        "pacbayes_evaluations": 1 + pb["draws"] * pac[False]["evaluations"],
        "pacbayes_mag_evaluations": 1 + pb["draws"] * pac[True]["evaluations"],
        "weight_norm": norm(theta), "dist_init": norm(sub(theta, theta0)),
        "n_params": count_parameters(model), "bn_recomputed": recompute, "seconds": seconds,
    }
    job.meta = {"options": cfg, "seconds": timings}
    _report(run_id, noise, flat, timings, seconds)
    return {"robustness": noise, "flatness": pd.DataFrame([flat])}


def _noise_table(curves, run_id: str, eval_sets: dict, recompute: bool) -> pd.DataFrame:
    df = pd.concat(curves, ignore_index=True)
    df.insert(0, "run", run_id)
    df["eval_set"] = df["split"].map({k: v[0] for k, v in eval_sets.items()})
    df["eval_size"] = df["split"].map({k: v[1] for k, v in eval_sets.items()})
    df["bn_recomputed"] = recompute
    return df


def _report(run_id: str, noise, flat: dict, timings: dict, seconds: float) -> None:
    test = noise[noise["split"] == "test"].groupby(["mode", "sigma"])["accuracy"].mean()
    for mode in test.index.get_level_values(0).unique():
        curve = ", ".join(f"{s:g}: {a:.3f}" for s, a in test[mode].items())
        print(f"{run_id}: {mode} noise, mean test accuracy by σ: {curve}")
    print(f"{run_id}: ε-sharpness {flat['eps_sharpness']:.4g} % (ε = {flat['epsilon']:g}), "
          f"adaptive worst {flat['adaptive_worst']:.4g}, average {flat['adaptive_average']:.4g} "
          f"nats (ρ = {flat['rho']:g}); PAC-Bayes σ {flat['pacbayes_sigma']:.4g}, "
          f"magnitude-aware σ {flat['pacbayes_mag_sigma']:.4g}; ‖θ‖ {flat['weight_norm']:.4g}, "
          f"‖θ − θ₀‖ {flat['dist_init']:.4g}")
    print(f"{run_id}: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
          + f"; stage total {seconds:.1f} s")
