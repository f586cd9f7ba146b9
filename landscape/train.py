"""Training one run of the study: deterministic, resumable, divergence-aware.

``train_run(cfg, train, test, out_dir)`` trains ``cfg.model`` with ``cfg.optimizer`` and writes
into ``out_dir``:

- ``checkpoint.pt``: final state dict + metadata (config, seed, versions, data fingerprint, status)
- ``snapshots.pt``: parameter states at step 0, at ``cfg.snapshot_steps`` inside epoch 1, and at
  the end of every epoch (for trajectory PCA, spawning and sharpness over training), and under
  ``dense`` the states at ``cfg.sharpness_snapshots`` more steps, log-spaced over the budget
  (``dense_steps``), for the sharpness trajectory only
- ``metrics.parquet``: one row per epoch (epoch 0 = initialisation)
- ``run.parquet``: one row summarising the run (status, final metrics, generalisation gap)

A resumable ``state.pt`` (model, optimiser, RNG states, epoch, metrics and snapshots so far) is
written atomically after each epoch and removed when the run completes; a killed run started again
resumes from it and ends bit-identical to an uninterrupted run. Shuffling uses a generator seeded
by (seed, epoch), so the data order does not depend on how many epochs ran in this process.
A non-finite loss stops training; the run is recorded with status ``diverged``.

With ``cfg.stop_at_loss`` set (Jiang et al. 2020 stop every run at one training cross-entropy so
that runs are compared at equal fit), training stops at the end of the first epoch whose
``train_loss`` (whole training set, eval mode: the metrics row) is ≤ it; ``cfg.epochs`` is then
a budget. The checkpoint, snapshots and metrics end at that epoch; the run's summary and the
checkpoint's metadata say why it stopped (``stop_reason``: target, budget, epochs or diverged)
and after how many epochs and steps. The learning-rate schedule (``lr_at``) is always laid out
over the budget ``cfg.epochs``, so a run's learning rates do not depend on when it stops.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from .checkpoints import library_versions, save_checkpoint
from .data import Split
from .evaluate import evaluate, resolve_device
from .io import IntegrityError, load_verified, save_verified
from .models import build_model, count_parameters
from .sam import SAM, frozen_batchnorm_statistics
from .schemas import training as _tables  # noqa: F401  registers the tables written here
from .study import HPARAMS, SAM_RADII, run_id
from .tables import write_table

OPTIMIZERS = ("sgd", "adam", "sam", "asam")
SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """One run's hyper-parameters plus the config's ``train`` section and its model's options.

    No field has a default here: the config schema is the one place defaults are written. Build
    it from a (possibly partial) ``train`` section with ``TrainConfig.from_config``.
    """

    model: str
    optimizer: str
    rho: float  # SAM/ASAM ascent radius (study.sam_rho, study.asam_rho); 0 for sgd and adam
    lr: float
    batch_size: int
    weight_decay: float
    seed: int
    epochs: int
    stop_at_loss: float | None
    momentum: float
    schedule: str
    model_options: dict
    snapshot_steps: list[int]
    sharpness_snapshots: int
    eval_batch_size: int
    channels_last: bool

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer {self.optimizer!r}. "
                             f"Supported optimizers are {list(OPTIMIZERS)}.")
        if (self.optimizer in SAM_RADII) != (self.rho > 0) or not self.rho >= 0:
            raise ValueError(f"rho = {self.rho!r} is not allowed for optimizer "
                             f"{self.optimizer!r}: expected > 0 for sam and asam, 0 otherwise")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Unknown schedule {self.schedule!r}. "
                             f"Supported schedules are {list(SCHEDULES)}.")
        if self.stop_at_loss is not None and not self.stop_at_loss > 0:
            raise ValueError(f"stop_at_loss = {self.stop_at_loss!r} is not allowed: expected a "
                             "training loss > 0 or None")

    @classmethod
    def from_config(cls, params: dict) -> TrainConfig:
        """From a run's hyper-parameters and a (partial) ``train`` section: missing keys take
        the schema's defaults; ``model_options`` defaults to the schema's for the model."""
        from .schema import defaults, with_defaults

        p = with_defaults({k: v for k, v in params.items() if k not in HPARAMS
                           and k != "model_options"}, "train")
        options = params.get("model_options")
        if options is None:
            options = defaults("models", params["model"])
        hp = {k: params[k] for k in HPARAMS if k != "rho"}
        opt = params["optimizer"]
        # without a radius: the schema's first for sam/asam (study.sam_rho), none otherwise
        hp["rho"] = float(params["rho"]) if "rho" in params else (
            float(defaults("study")[SAM_RADII[opt]][0]) if opt in SAM_RADII else 0.0)
        return cls(**hp, **p, model_options=dict(options))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]




def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor | None:
    """One optimiser step on the mini-batch ``x[idx], y[idx]`` (mean cross-entropy): its loss,
    detached, or None when the loss is non-finite (then no step is taken). The one training step
    of the project: runs (``train_run``) and spawned children (``connectivity.spawn``). With a
    ``landscape.sam.SAM`` optimiser it is SAM's two-pass step (the loss of the first pass)."""
    loss = F.cross_entropy(model(x[idx]), y[idx])
    if not torch.isfinite(loss):
        return None
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if isinstance(opt, SAM):  # the second pass at the perturbed weights (landscape.sam)
        opt.first_step()
        opt.zero_grad(set_to_none=True)
        with frozen_batchnorm_statistics(model):
            F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.second_step()
    else:
        opt.step()
    return loss.detach()

def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps in one epoch of ``n`` samples in batches of ``batch_size`` (the last
    batch holds the remainder): the one place this is computed for training, spawning and
    Bézier training (``connectivity.pairs.steps_per_epoch`` is its config-level twin)."""
    return math.ceil(n / batch_size)


def images_in_steps(start: int, count: int, n: int, batch_size: int) -> int:
    """Images in optimiser steps start, …, start + count − 1 of epochs of ``n`` images in
    batches of ``batch_size`` (the last batch of an epoch holds the remainder)."""
    per_epoch = steps_per_epoch(n, batch_size)

    def before(step: int) -> int:
        return (step // per_epoch) * n + (step % per_epoch) * batch_size

    return before(int(start) + int(count)) - before(int(start))


def dense_steps(total: int, count: int, exclude=()) -> list[int]:
    """``count`` distinct optimiser steps in [1, ``total``], none in ``exclude``, as evenly
    spaced in log(step) as whole steps allow (all of them when there are fewer): the rounded
    geometric sequence from 1 to ``total``, refined until it holds ``count`` free steps, then
    thinned evenly by index. Where the run saves its dense snapshots (``sharpness_snapshots``)."""
    skip = set(exclude)
    free = [s for s in range(1, total + 1) if s not in skip]
    if count >= len(free):
        return free
    if count <= 0:
        return []
    m = count
    while True:
        steps = sorted({int(round(t)) for t in np.geomspace(1, total, m)} - skip)
        if len(steps) >= count:
            break
        m += max(1, m // 8)
    return [steps[i] for i in np.round(np.linspace(0, len(steps) - 1, count)).astype(int)]


def hparam_columns(cfg: TrainConfig) -> dict:
    return {"run": run_id(cfg.model, cfg.optimizer, cfg.lr, cfg.batch_size, cfg.weight_decay,
                          cfg.seed, cfg.rho),
            "model": cfg.model, "optimizer": cfg.optimizer, "rho": cfg.rho, "lr": cfg.lr,
            "batch_size": cfg.batch_size, "weight_decay": cfg.weight_decay, "seed": cfg.seed}


def make_optimizer(cfg: TrainConfig, params):
    """SGD (with ``momentum``), Adam, or SAM/ASAM around that SGD (``landscape.sam``)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    params = list(params)
    sgd = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return sgd
    return SAM(params, sgd, rho=cfg.rho, adaptive=cfg.optimizer == "asam")


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate used during (0-based) ``epoch``."""
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
    return cfg.lr


def target_reached(cfg: TrainConfig, rows: list[dict]) -> bool:
    """True when the last metrics row is an epoch end (epoch ≥ 1) whose training loss is at or
    below ``cfg.stop_at_loss`` (never when it is None): training stops there."""
    return (cfg.stop_at_loss is not None and bool(rows) and rows[-1]["epoch"] >= 1
            and rows[-1]["train_loss"] <= cfg.stop_at_loss)


def stop_reason(cfg: TrainConfig, status: str, rows: list[dict]) -> str:
    """Why a finished run stopped: ``diverged``; ``target`` (its training loss reached
    ``cfg.stop_at_loss``); ``budget`` (stop_at_loss set, but ``cfg.epochs`` ran out first);
    ``epochs`` (no stop_at_loss: the fixed number of epochs)."""
    if status != "ok":
        return "diverged"
    if cfg.stop_at_loss is None:
        return "epochs"
    return "target" if target_reached(cfg, rows) else "budget"


def epoch_order(n: int, seed: int, epoch: int, device) -> torch.Tensor:
    """The shuffled sample order of ``epoch`` (depends only on seed and epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).to(device)


def set_deterministic(device: torch.device) -> None:
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False


def finite_state(state: dict) -> bool:
    """True when every floating-point tensor of a state dict is finite."""
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())


def finite_parameters(model: torch.nn.Module) -> bool:
    """True when every parameter and floating-point buffer of ``model`` is finite."""
    return finite_state(model.state_dict())


def _cpu_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _optimizer_state_to_cpu(state: dict) -> dict:
    return copy.deepcopy(
        {k: ({i: {n: (t.cpu() if torch.is_tensor(t) else t) for n, t in s.items()}
              for i, s in v.items()} if k == "state" else v) for k, v in state.items()})


def train_run(cfg: TrainConfig, train: Split, test: Split, out_dir: str | Path,
              fingerprint: str = "", device: str = "auto", progress: bool = True,
              stop_after_epochs: int | None = None) -> dict:
    """Train one run and write its outputs into ``out_dir``; return the run summary row.

    ``stop_after_epochs`` ends the process early after saving the resumable state (for tests of
    interruption); the outputs are then not written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    set_deterministic(dev)
    hp = hparam_columns(cfg)
    x_train, y_train = train.tensors(dev)
    x_test, y_test = test.tensors(dev)
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    # channels-last runs these small CNNs about 1.8x faster on CPU (max-pool/ReLU in NCHW are
    # slow); values match NCHW to float rounding, and each layout is deterministic on its own
    x_train = x_train.contiguous(memory_format=layout)
    x_test = x_test.contiguous(memory_format=layout)
    n = x_train.shape[0]
    per_epoch = steps_per_epoch(n, cfg.batch_size)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, **cfg.model_options).to(dev, memory_format=layout)
    opt = make_optimizer(cfg, model.parameters())
    rows: list[dict] = []
    snaps: dict = {"step": [], "epoch": [], "states": [],
                   "dense": {"step": [], "epoch": [], "states": []}}
    start_epoch, step, wall = 0, 0, 0.0
    status, diverged_step = "ok", -1

    state_path = out / "state.pt"
    if state_path.exists():
        try:
            st = load_verified(state_path, "resume state")
        except IntegrityError as exc:
            print(f"ignoring unusable resume state: {exc}")
            st = None
        same = st is not None and st["config_digest"] == cfg.digest()
        if same and st["fingerprint"] == fingerprint:
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            torch.set_rng_state(st["torch_rng"])
            rows, snaps = st["rows"], st["snapshots"]
            start_epoch, step, wall = st["epoch"], st["step"], st["wall"]
            print(f"resuming {hp['run']} from epoch {start_epoch} (step {step})")
        elif st is not None:
            print("resume state belongs to another config or data; starting afresh")

    def snapshot(epoch_frac: float, into: dict | None = None) -> None:
        into = snaps if into is None else into
        into["step"].append(step)
        into["epoch"].append(float(epoch_frac))
        into["states"].append(_cpu_state(model))

    def record(epoch: int) -> None:
        tl, ta = evaluate(model, x_train, y_train, cfg.eval_batch_size)
        vl, va = evaluate(model, x_test, y_test, cfg.eval_batch_size)
        rows.append({**hp, "epoch": epoch, "step": step, "train_loss": tl, "train_acc": ta,
                     "test_loss": vl, "test_acc": va,
                     "lr_now": lr_at(cfg, max(epoch - 1, 0)), "wall_time": wall})

    if start_epoch == 0 and not rows:
        record(0)
        snapshot(0.0)
    snapshot_steps = set(s for s in cfg.snapshot_steps if 0 < s < per_epoch)
    budget = cfg.epochs * per_epoch
    dense = set(dense_steps(budget, cfg.sharpness_snapshots,
                            snapshot_steps | set(range(per_epoch, budget + 1, per_epoch))))
    bar = tqdm(total=cfg.epochs * per_epoch, initial=step, desc=hp["run"], unit="step",
               disable=not progress, mininterval=2.0)
    for epoch in range(start_epoch, cfg.epochs):
        if target_reached(cfg, rows):  # the previous epoch (possibly before a resume) reached it
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, epoch)
        model.train()
        order = epoch_order(n, cfg.seed, epoch, dev)
        t0 = time.perf_counter()
        running = torch.zeros((), dtype=torch.float64, device=dev)
        for b in range(per_epoch):
            loss = train_step(model, opt, x_train, y_train,
                              order[b * cfg.batch_size:(b + 1) * cfg.batch_size])
            if loss is None:
                status, diverged_step = "diverged", step
                break
            step += 1
            bar.update()
            running += loss
            if (epoch == 0 and step in snapshot_steps) or step in dense:
                wall += time.perf_counter() - t0
                snapshot(step / per_epoch, None if step in snapshot_steps else snaps["dense"])
                t0 = time.perf_counter()
        wall += time.perf_counter() - t0
        if status == "ok" and not finite_parameters(model):
            # every forward loss before a step was finite, but a step (the last one, say) wrote
            # inf/NaN into the weights
            status, diverged_step = "diverged", step
        if status == "ok":
            record(epoch + 1)
            if not (math.isfinite(rows[-1]["train_loss"]) and math.isfinite(rows[-1]["test_loss"])):
                rows.pop()  # finite weights whose evaluation overflows: diverged as well
                status, diverged_step = "diverged", step
        if status == "diverged":
            print(f"{hp['run']}: loss or weights became non-finite at step {step}; "
                  "stopping (diverged)")
            break
        snapshot(epoch + 1)
        bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}",
                        loss=f"{float(running) / per_epoch:.4f}",
                        test_acc=f"{rows[-1]['test_acc']:.4f}")
        save_verified(state_path, {
            "config_digest": cfg.digest(), "fingerprint": fingerprint, "epoch": epoch + 1,
            "step": step, "wall": wall, "model": _cpu_state(model),
            "optimizer": _optimizer_state_to_cpu(opt.state_dict()),
            "torch_rng": torch.get_rng_state(), "rows": rows, "snapshots": snaps})
        if stop_after_epochs is not None and epoch + 1 >= stop_after_epochs:
            bar.close()
            return {}
    bar.close()

    final = rows[-1]
    reason = stop_reason(cfg, status, rows)
    if reason == "target":
        print(f"{hp['run']}: training loss {final['train_loss']:.4g} ≤ stop_at_loss "
              f"{cfg.stop_at_loss:g} after epoch {final['epoch']} of {cfg.epochs}; stopping")
    elif reason == "budget":
        print(f"{hp['run']}: training loss {final['train_loss']:.4g} still above stop_at_loss "
              f"{cfg.stop_at_loss:g} after the budget of {cfg.epochs} epochs")
    summary = {**hp, "status": status, "diverged_step": diverged_step,
               "stop_at_loss": math.nan if cfg.stop_at_loss is None else float(cfg.stop_at_loss),
               "stop_reason": reason, "epochs": final["epoch"],
               "n_params": count_parameters(model),
               "train_loss": final["train_loss"], "train_acc": final["train_acc"],
               "test_loss": final["test_loss"], "test_acc": final["test_acc"],
               "gap_loss": final["test_loss"] - final["train_loss"],
               "gap_error": (1 - final["test_acc"]) - (1 - final["train_acc"]),
               "train_seconds": wall, "train_size": len(train), "test_size": len(test),
               "data_fingerprint": fingerprint}
    meta = {"config": cfg.as_dict(), "run": hp["run"], "seed": cfg.seed, "status": status,
            "diverged_step": diverged_step, "stop_reason": reason, "epochs": final["epoch"],
            "steps": final["step"], "versions": library_versions(),
            "data_fingerprint": fingerprint, "device": str(dev)}
    save_verified(out / "snapshots.pt", {"kind": "snapshots", "meta": meta, **snaps})
    save_checkpoint(out / "checkpoint.pt", model.state_dict(), meta)
    write_table(pd.DataFrame(rows), "training", out / "metrics.parquet")
    write_table(pd.DataFrame([summary]), "runs", out / "run.parquet")
    state_path.unlink(missing_ok=True)
    return summary
