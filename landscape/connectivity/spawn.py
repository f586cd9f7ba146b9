"""Spawning: train children of a run from its snapshot at step k with different data orders.

Frankle, Dziugaite, Roy & Carbin (2020), "Linear Mode Connectivity and the Lottery Ticket
Hypothesis", ICML, Sec. 3 ("instability analysis"): copy the network at step k, train each copy
to the end of the original budget with different SGD noise (here: the data order), and measure
the barrier on the linear path between the children (``landscape.connectivity.paths``). A run is
*stable* from step k when the children are linearly connected.

Choices, made explicit:

* Training config: the run's own ``TrainConfig`` (optimiser, learning rate and its per-epoch
  schedule ``lr_at``, batch size, weight decay, momentum, epochs, layout), reusing
  ``landscape.train``'s ``make_optimizer``, ``lr_at`` and ``epoch_order``, with the same loop
  body as ``train_run``. The budget is ``epochs × ⌈n / batch_size⌉`` steps over the same
  training set (``x``, ``y`` must be the run's training tensors). Children train to where the
  run *ended* (``end_step``): its budget, or earlier when ``train.stop_at_loss`` stopped it at
  an epoch end (Frankle et al. train children for the run's own length). They do not check the
  target themselves, so both children train the same number of steps as the run.
* Data order: child i draws every epoch's order from ``epoch_order(n, order_seed_i, epoch)``
  with its own ``order_seed_i`` (``child_order_seeds``). A child spawned at step k inside an
  epoch e = k // s (s steps per epoch) continues with batches k mod s … s − 1 of *its own*
  permutation of epoch e, i.e. it skips as many batches as the run had taken, so every child
  trains exactly the remaining budget; the samples it sees in that partial epoch differ from the
  run's. Later epochs use the child's full permutations.
* Optimiser state: fresh at the spawn point (SGD momentum buffers / Adam moments are zero).
  Snapshots store weights only. So a child reproduces the run's final weights bitwise only when
  the run's optimiser carries no state across steps: plain SGD with momentum 0 and
  ``order_seed = cfg.seed``. It does not for SGD with momentum (the buffer restarts at zero) nor
  for Adam (both moment estimates and the bias-correction step count restart), so even a child
  with the run's own data order ends elsewhere; the barrier between two children then includes
  the effect of that restart, the same for both.
* A child spawned at the final step trains 0 steps and equals the snapshot bitwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from ..directions import derived_seed
from ..evaluate import resolve_device
from ..models import build_model
from ..train import (
    TrainConfig,
    epoch_order,
    lr_at,
    make_optimizer,
    set_deterministic,
    steps_per_epoch,
    train_step,
)


def child_order_seeds(run_seed: int, spawn_seed: int, n_children: int = 2) -> list[int]:
    """Data-order seeds (in [0, 2³¹)) of ``n_children`` children of the run with seed
    ``run_seed`` under the spawn seed ``spawn_seed``: ``derived_seed(run_seed,
    'spawn:<spawn_seed>:child<i>') mod 2³¹``. Independent of the spawn step, so the children
    spawned at different k of one run share their seeds."""
    if n_children < 1:
        raise ValueError(f"n_children = {n_children} is not allowed: expected ≥ 1")
    return [derived_seed(int(run_seed), f"spawn:{int(spawn_seed)}:child{i}") % 2**31
            for i in range(n_children)]


def pick_snapshot(snapshots: Mapping, step: int) -> dict[str, torch.Tensor]:
    """The state dict at ``step`` from a snapshots blob (``landscape.checkpoints.load_snapshots``:
    keys ``step`` and ``states``). Raises ValueError listing the available steps."""
    steps = [int(s) for s in snapshots["step"]]
    if int(step) not in steps:
        raise ValueError(f"no snapshot at step {step}; the run has snapshots at steps {steps}")
    return snapshots["states"][steps.index(int(step))]


def budget(cfg: TrainConfig, n: int) -> int:
    """Total optimisation steps of a run on ``n`` training samples (its ``train.epochs``; a
    run stopped by ``train.stop_at_loss`` ends earlier: its snapshots' last step)."""
    return cfg.epochs * steps_per_epoch(n, cfg.batch_size)


def train_child(cfg: TrainConfig, state: Mapping[str, torch.Tensor], step: int, x: torch.Tensor,
                y: torch.Tensor, order_seed: int, device: str = "auto",
                progress: bool = False, end_step: int | None = None) -> dict:
    """Train one child from ``state`` (the run's weights after ``step`` steps) to the step
    where the run ended, ``end_step`` (None: the run's budget ``budget(cfg, n)``), with data
    orders from ``order_seed`` (module docstring for the choices).

    ``x`` [N, 1, 28, 28] float, ``y`` [N] int64: the run's training set. Returns a dict:
    ``state`` (final state dict, CPU tensors), ``steps`` (optimisation steps trained),
    ``order_seed``, ``status`` ('ok', or 'diverged' when a loss or, at an epoch end, a weight
    became non-finite; training then stops) and ``final_loss`` (mean training-batch loss of
    the last epoch it trained, NaN if none). Deterministic given its arguments (it calls
    ``landscape.train.set_deterministic`` on CUDA).
    """
    from tqdm.auto import tqdm

    dev = resolve_device(device)
    if dev.type == "cuda":  # CPU kernels are deterministic already; the switch costs seconds
        set_deterministic(dev)  # (torch imports its compiler stack to set it)
    n = int(x.shape[0])
    per_epoch = steps_per_epoch(n, cfg.batch_size)
    full = cfg.epochs * per_epoch
    total = full if end_step is None else int(end_step)
    if not 0 <= total <= full:
        raise ValueError(f"end step {end_step} is not allowed: expected 0 ≤ end step ≤ {full} "
                         f"(the run's budget: {cfg.epochs} epochs × {per_epoch} steps)")
    if not 0 <= int(step) <= total:
        raise ValueError(f"spawn step {step} is not allowed: expected 0 ≤ step ≤ {total} "
                         + (f"(the run's budget: {cfg.epochs} epochs × {per_epoch} steps)"
                            if total == full else "(the step where the run ended)"))
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    x = x.to(dev).contiguous(memory_format=layout)
    y = y.to(dev)
    with torch.random.fork_rng(devices=[]):  # building draws an initialisation; keep global RNG
        model = build_model(cfg.model, **cfg.model_options)
    model = model.to(dev, memory_format=layout)
    model.load_state_dict(dict(state))
    opt = make_optimizer(cfg, model.parameters())
    first_epoch, skip = divmod(int(step), per_epoch)
    trained, status = 0, "ok"
    running, count = torch.zeros((), dtype=torch.float64, device=dev), 0
    bar = tqdm(total=total - int(step), desc=f"child {order_seed}", unit="step",
               disable=not progress, mininterval=2.0)
    for epoch in range(first_epoch, math.ceil(total / per_epoch)):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, epoch)
        model.train()
        order = epoch_order(n, int(order_seed), epoch, dev)
        running.zero_()
        count = 0
        for bi in range(skip if epoch == first_epoch else 0,
                        min(per_epoch, total - epoch * per_epoch)):
            loss = train_step(model, opt, x, y,
                              order[bi * cfg.batch_size:(bi + 1) * cfg.batch_size])
            if loss is None:
                status = "diverged"
                break
            trained += 1
            running += loss
            count += 1
            bar.update()
        if status == "ok" and not all(bool(torch.isfinite(t).all()) for t in
                                      model.state_dict().values() if t.is_floating_point()):
            status = "diverged"  # finite losses, but a step wrote inf/NaN into the weights
        if status == "diverged":
            break
    bar.close()
    model.eval()
    final = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"state": final, "steps": trained, "order_seed": int(order_seed), "status": status,
            "final_loss": float(running) / count if count else math.nan}


def spawn_children(cfg: TrainConfig, state: Mapping[str, torch.Tensor], step: int,
                   x: torch.Tensor, y: torch.Tensor, spawn_seed: int = 0, n_children: int = 2,
                   order_seeds: Sequence[int] | None = None, device: str = "auto",
                   progress: bool = False, end_step: int | None = None) -> list[dict]:
    """Children of the run ``cfg`` spawned from ``state`` at ``step`` (Frankle et al., 2020),
    each trained to ``end_step`` (the step where the run ended; None: its budget).

    Data-order seeds are ``order_seeds`` if given, else ``child_order_seeds(cfg.seed,
    spawn_seed, n_children)``. Returns one dict per child as ``train_child`` (``state``,
    ``steps``, ``order_seed``, ``status``, ``final_loss``) plus ``child`` (0-based index) and
    ``spawn_step``.
    """
    seeds = list(order_seeds) if order_seeds is not None else \
        child_order_seeds(cfg.seed, spawn_seed, n_children)
    out = []
    for i, s in enumerate(seeds):
        res = train_child(cfg, state, step, x, y, s, device=device, progress=progress,
                          end_step=end_step)
        out.append({"child": i, "spawn_step": int(step), **res})
    return out
