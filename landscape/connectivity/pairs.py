"""Which pairs of runs are compared and which snapshots are spawned from: tables built from the
validated config and the run table (``landscape.study.run_table``), looked up by id in the rules.

* ``pair_table``: one row per pair (index ``pair`` = ``"<run_a>__<run_b>"``, columns ``run_a``,
  ``run_b``). ``connectivity.pairs`` lists them, or (null) every two runs of the study that agree
  in every hyper-parameter except those in ``connectivity.vary`` (default: the seed), in run-table
  order.
* ``spawn_table``: one row per (run, spawn step) (index ``spawn`` = ``"<run>__step<k>"``, columns
  ``run``, ``step``, ``spec`` as written in the config, ``epoch`` = k / steps per epoch).
* ``check_config``: the cross-key rules of the ``connectivity`` section (runs in the study, pairs
  of one architecture, spawn steps that are snapshot steps), as one-line ``ConfigError``.

A run's snapshots (``landscape.train.train_run``) are at step 0, at ``train.snapshot_steps``
inside epoch 1 and at every epoch end e·⌈N/B⌉ (N training images, B the batch size).
"""

from __future__ import annotations

import itertools
import json
import math
import re

import pandas as pd

from ..study import fixed_with

FASHION_MNIST_TRAIN = 60_000
SEP = "__"


def pair_id(run_a: str, run_b: str) -> str:
    """The pair's key in paths and tables (a key of ``pair_table``, never parsed back)."""
    return f"{run_a}{SEP}{run_b}"


def spawn_id(run: str, step: int) -> str:
    return f"{run}{SEP}step{int(step)}"


def _error(message: str):
    from ..errors import ConfigError

    return ConfigError(f"config error: {message}")


def _show(value) -> str:
    return json.dumps(value)


def _known_run(runs: pd.DataFrame, run, key: str) -> str:
    if run not in runs.index:
        raise _error(f"{key} = {_show(run)} is not allowed: expected a run of the study "
                     f"({len(runs)} runs, e.g. {_show(list(runs.index[:2]))})")
    return run


def pair_table(config: dict, runs: pd.DataFrame) -> pd.DataFrame:
    """Pairs of runs compared by the connectivity stage (empty when it is disabled).

    ``config``: a validated config; ``runs``: its run table. Raises ConfigError for a pair that
    names a run not in the study or two runs of different models.
    """
    cfg = config["connectivity"]
    rows = []
    if cfg["enabled"] and cfg["pairs"] is not None:
        for i, pair in enumerate(cfg["pairs"]):
            a, b = (_known_run(runs, r, f"connectivity.pairs[{i}][{j}]")
                    for j, r in enumerate(pair))
            ma, mb = runs.loc[a, "model"], runs.loc[b, "model"]
            if ma != mb:
                raise _error(f"connectivity.pairs[{i}] = {_show(list(pair))} is not allowed: "
                             f"expected two runs of the same architecture ({a} is {ma}, {b} is "
                             f"{mb})")
            rows.append((a, b))
    elif cfg["enabled"]:
        same = fixed_with(cfg["vary"])
        for _, group in runs.groupby(same, sort=False):
            rows.extend(itertools.combinations(list(group.index), 2))
        order = {r: i for i, r in enumerate(runs.index)}
        rows.sort(key=lambda p: (order[p[0]], order[p[1]]))
    df = pd.DataFrame(rows, columns=["run_a", "run_b"])
    df.index = pd.Index([pair_id(a, b) for a, b in rows], name="pair")
    if df.index.has_duplicates:
        dup = df.index[df.index.duplicated()][0]
        raise _error(f"connectivity.pairs lists the pair {dup!r} twice")
    return df


def steps_per_epoch(config: dict, batch_size: int) -> int:
    """Optimiser steps per epoch of a run with ``batch_size`` on the study's training set."""
    n = config["data"]["train_size"] or FASHION_MNIST_TRAIN
    return math.ceil(n / int(batch_size))


def snapshot_steps(config: dict, batch_size: int) -> list[int]:
    """Steps at which a run with ``batch_size`` saves a snapshot (``train_run``)."""
    per_epoch = steps_per_epoch(config, batch_size)
    inside = sorted(s for s in config["train"]["snapshot_steps"] if 0 < s < per_epoch)
    return [0, *inside, *(per_epoch * e for e in range(1, config["train"]["epochs"] + 1))]


def resolve_step(config: dict, batch_size: int, spec, key: str) -> int:
    """The optimiser step meant by a ``connectivity.spawn.steps`` entry (an int, 'epoch<e>' or
    'end'); ConfigError unless the run saved a snapshot there."""
    per_epoch = steps_per_epoch(config, batch_size)
    epochs = config["train"]["epochs"]
    allowed = snapshot_steps(config, batch_size)
    if isinstance(spec, str):
        m = re.fullmatch(r"epoch([1-9][0-9]*)", spec)
        e = epochs if spec == "end" else int(m.group(1)) if m else None
        if e is None or e > epochs:
            raise _error(f"{key} = {_show(spec)} is not allowed: expected 'end' or 'epoch<e>' "
                         f"with 1 ≤ e ≤ train.epochs = {epochs}")
        return e * per_epoch
    if int(spec) not in allowed:
        raise _error(f"{key} = {_show(spec)} is not allowed: expected a snapshot step of the "
                     f"run (batch size {batch_size}, {per_epoch} steps per epoch): "
                     f"{allowed}, 'epoch1'…'epoch{epochs}' or 'end'")
    return int(spec)


def spawn_table(config: dict, runs: pd.DataFrame) -> pd.DataFrame:
    """(run, spawn step) jobs of the spawning experiment (empty when it is disabled)."""
    cfg = config["connectivity"]
    rows = []
    if cfg["enabled"] and cfg["spawn"]["enabled"]:
        chosen = cfg["spawn"]["runs"]
        chosen = list(runs.index[:1]) if chosen is None else [
            _known_run(runs, r, f"connectivity.spawn.runs[{i}]") for i, r in enumerate(chosen)]
        for run in chosen:
            bs = int(runs.loc[run, "batch_size"])
            seen: dict[int, object] = {}
            for i, spec in enumerate(cfg["spawn"]["steps"]):
                key = f"connectivity.spawn.steps[{i}]"
                step = resolve_step(config, bs, spec, key)
                if step in seen:
                    raise _error(f"{key} = {_show(spec)} is not allowed: it is step {step} of "
                                 f"run {run}, like {_show(seen[step])}")
                seen[step] = spec
                rows.append({"run": run, "step": step, "spec": str(spec),
                             "epoch": step / steps_per_epoch(config, bs)})
    df = pd.DataFrame(rows, columns=["run", "step", "spec", "epoch"])
    df.index = pd.Index([spawn_id(r["run"], r["step"]) for r in rows], name="spawn")
    return df


def check_config(config: dict, runs: pd.DataFrame) -> None:
    """Validate the ``connectivity`` section against the study (ConfigError, one line)."""
    if "connectivity" in config:
        pair_table(config, runs)
        spawn_table(config, runs)
