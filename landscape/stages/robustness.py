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

from ..checkpoints import load_model, load_snapshots
from ..data import load_prepared, named_eval_subset
from ..evaluate import resolve_device
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
from ..tables import write_table
from ._common import section, skip_reason, write_skipped

NAME = "robustness"
HELP = ("loss and accuracy of one run under Gaussian weight noise (absolute and relative), and "
        "its flatness measures: ε-sharpness, adaptive sharpness, PAC-Bayes σ, norms")


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="prepared data (.pt)")
    p.add_argument("--checkpoint", required=True, help="the run's checkpoint.pt")
    p.add_argument("--snapshots", required=True,
                   help="the run's snapshots.pt (its step-0 entry is the initialisation)")
    p.add_argument("--params", required=True, help="JSON of the config's `robustness` section")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out-noise", required=True, help="output robustness rows (.parquet)")
    p.add_argument("--out-flatness", required=True, help="output flatness row (.parquet)")
    p.add_argument("--no-progress", action="store_true")


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


def run(args) -> None:
    cfg = section(args.params, "robustness")
    sh, pb = cfg["sharpness"], cfg["pacbayes"]
    outputs = {"robustness": args.out_noise, "flatness": args.out_flatness}
    start = time.perf_counter()
    dev = resolve_device(args.device)
    model, meta = load_model(args.checkpoint, dev)
    reason = skip_reason(meta)
    if reason:
        write_skipped(outputs, NAME, meta["run"], reason)
        return
    run_id = meta["run"]
    theta0 = _initial_weights(args.snapshots, model, run_id)

    train, test, _ = load_prepared(args.data)
    seed = cfg["subset_seed"]
    tr, tr_name = named_eval_subset(train, "train", cfg["train_size"], seed)
    te, te_name = named_eval_subset(test, "test", cfg["test_size"], seed)
    sh_set, sh_name = named_eval_subset(train, "train", sh["eval_size"], seed)
    (x_tr, y_tr), (x_te, y_te), (x_sh, y_sh) = tr.tensors(dev), te.tensors(dev), sh_set.tensors(dev)
    if cfg["channels_last"]:
        x_tr, x_te, x_sh = use_channels_last(model, x_tr, x_te, x_sh)
    recompute = bool(cfg["recompute_bn"]) and has_batchnorm(model)
    bs = int(cfg["batch_size"])
    progress = not args.no_progress
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
        "average_draws": sh["average_draws"],
        "pacbayes_eval_set": tr_name, "pacbayes_eval_size": len(tr),
        "deviation": pb["deviation"], "pacbayes_draws": pb["draws"],
        "pacbayes_sigma": pac[False]["sigma"], "pacbayes_flatness": pac[False]["flatness"],
        "pacbayes_converged": bool(pac[False]["bracketed"] and pac[False]["converged"]),
        "pacbayes_mag_sigma": pac[True]["sigma"], "pacbayes_mag_flatness": pac[True]["flatness"],
        "pacbayes_mag_converged": bool(pac[True]["bracketed"] and pac[True]["converged"]),
        "weight_norm": norm(theta), "dist_init": norm(sub(theta, theta0)),
        "n_params": count_parameters(model), "bn_recomputed": recompute, "seconds": seconds,
    }
    options = {"options": cfg, "seconds": timings}
    write_table(noise, "robustness", outputs["robustness"], extra_meta=options)
    write_table(pd.DataFrame([flat]), "flatness", outputs["flatness"], extra_meta=options)
    _report(run_id, noise, flat, timings, seconds)


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
