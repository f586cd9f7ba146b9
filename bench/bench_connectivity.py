"""Benchmark of the mode-connectivity library (landscape.connectivity), baselines in the same run.

Prints three ratios, each against a baseline measured in this process with the same model,
data, batch size, layout and thread count:

Timings are interleaved (every round runs each method once) and ratios use each method's
fastest round, the one least disturbed by other processes on shared cores; medians are shown in
parentheses.

* path points: ``evaluate_path`` over a linear path and a Bézier curve between two ``cnn``
  (width 16) networks (each point written in place through ``PointEvaluator``, loss + accuracy
  on ``--eval-size`` images) ÷ a bare forward pass over the same images per point
  (goal ≥ 0.9);
* Bézier training: samples/s of ``train_bezier`` ÷ samples/s of a bare SGD-with-momentum
  training loop of the same model (channels-last, batch ``--batch-size``, same data order;
  goal ≥ 0.8);
* weight matching: seconds per pair of ``align`` (spec, Algorithm 1, applying the permutation)
  for ``cnn`` and ``simple_cnn`` (goal < 1 s), plus ``cnn_bn`` and ``mlp``, on pairs of
  independently initialised networks;
* activation matching and REPAIR (``cnn``, ``--eval-size`` images): seconds of
  ``align_activations`` (forward passes of both networks, correlations, assignments) and of one
  REPAIRed path point (corrections measured layer by layer, then the evaluation) ÷ one plain
  path point (no goal: REPAIR costs about one extra forward pass over the images per point).

Data: Fashion-MNIST through ``landscape.data.prepare`` when the IDX files are installed, else
synthetic tensors of the same shape (the timings do not depend on the pixel values).

Run:  python bench/bench_connectivity.py            (≈ 1 min on one core)
      python bench/bench_connectivity.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from landscape.allocator import keep_freed_memory  # noqa: E402
from landscape.connectivity import (  # noqa: E402
    BezierPath,
    LinearPath,
    Repair,
    align,
    align_activations,
    evaluate_path,
    train_bezier,
)
from landscape.evaluator import use_channels_last  # noqa: E402
from landscape.models import build_model  # noqa: E402
from landscape.train import epoch_order  # noqa: E402


def race(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Wall-clock seconds of each ``fns[name]()``, ``repeats`` rounds after one warm-up round;
    in every round the functions run one after the other, so that all of them see the same
    machine load (this machine's cores are shared)."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats + 1):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            if r:
                out[k].append(time.perf_counter() - t)
    return out


def best(times: dict[str, list[float]]) -> dict[str, float]:
    """Fastest round of each: the least disturbed by other processes (ratios use these)."""
    return {k: min(v) for k, v in times.items()}


def median(times: dict[str, list[float]]) -> dict[str, float]:
    return {k: statistics.median(v) for k, v in times.items()}


def load_data(size: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(x [size, 1, 28, 28], y [size], description)."""
    try:
        from landscape.data import Split, prepare

        blob = prepare(train_size=size, test_size=10)
        x, y = Split(blob["train"]["images"], blob["train"]["labels"]).tensors()
        return x, y, "Fashion-MNIST"
    except Exception as exc:  # noqa: BLE001 - no local data: synthetic of the same shape
        g = torch.Generator().manual_seed(0)
        x = torch.randn(size, 1, 28, 28, generator=g)
        y = torch.randint(0, 10, (size,), generator=g)
        return x, y, f"synthetic ({type(exc).__name__})"


def model_pair(name: str, **options) -> tuple[dict, dict]:
    states = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        states.append(build_model(name, **options).state_dict())
    return states[0], states[1]


def bench_paths(args, x, y) -> float:
    sa, sb = model_pair("cnn", width=args.width, hidden=64)
    model = build_model("cnn", width=args.width, hidden=64).eval()
    model.load_state_dict(sa)
    (xc,) = use_channels_last(model, x)
    ts = np.linspace(0.0, 1.0, args.points)
    bs = args.eval_batch_size
    data = {"train": (xc, y)}
    bend = {k: 0.5 * (sa[k] + sb[k]) + 0.01 for k in sa}
    linear = LinearPath.from_states(model, sa, sb)
    bezier = BezierPath.from_states(model, sa, bend, sb)

    def bare():
        with torch.inference_mode():
            for _ in ts:
                for i in range(0, xc.shape[0], bs):
                    model(xc[i:i + bs])

    times = race({"bare": bare,
                  "linear": lambda: evaluate_path(model, linear, ts, data, bs),
                  "bezier": lambda: evaluate_path(model, bezier, ts, data, bs)}, args.repeats)
    t, tm = best(times), median(times)
    n = len(ts)
    print(f"\npath points: cnn width {args.width}, {x.shape[0]} images, batch {bs}, "
          f"{n} points per call, channels-last; best (median) of {args.repeats} rounds")
    print(f"  {'method':<42} {'points/s':>16} {'÷ bare':>14}")
    for label, k in (("bare forward pass per point", "bare"),
                     ("evaluate_path, linear (loss + accuracy)", "linear"),
                     ("evaluate_path, Bézier (loss + accuracy)", "bezier")):
        print(f"  {label:<42} {n / t[k]:>7.2f} ({n / tm[k]:>6.2f}) "
              f"{t['bare'] / t[k]:>6.3f} ({tm['bare'] / tm[k]:.3f})")
    return t["bare"] / max(t["linear"], t["bezier"])


def bare_train(model, x, y, epochs, batch_size, lr, momentum, seed) -> float:
    """Seconds of a hand-written SGD loop (the same data order as train_bezier)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    n = x.shape[0]
    model.train()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = epoch_order(n, seed, epoch, x.device)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def bench_bezier(args, x, y) -> float:
    opts = {"width": args.width, "hidden": 64}
    sa, sb = model_pair("cnn", **opts)
    def bare():
        model = build_model("cnn", **opts)
        model.load_state_dict(sa)
        (xc,) = use_channels_last(model, x)
        bare_train(model, xc, y, 1, args.batch_size, 0.01, 0.9, seed=0)

    def bezier():
        model = build_model("cnn", **opts)
        model.load_state_dict(sa)
        train_bezier(model, sa, sb, x, y, epochs=1, lr=0.01, momentum=0.9,
                     batch_size=args.batch_size, seed=0, channels_last=True)

    times = race({"bare": bare, "bezier": bezier}, args.repeats)
    t, tm = best(times), median(times)
    n = x.shape[0]
    print(f"\nBézier training: cnn width {args.width}, {n} images, batch {args.batch_size}, "
          f"1 epoch, channels-last; best (median) of {args.repeats} rounds, each including "
          "model set-up")
    print(f"  {'method':<42} {'samples/s':>16} {'÷ bare':>14}")
    for label, k in (("bare SGD training loop", "bare"), ("train_bezier (whole call)", "bezier")):
        print(f"  {label:<42} {n / t[k]:>7.0f} ({n / tm[k]:>6.0f}) "
              f"{t['bare'] / t[k]:>6.3f} ({tm['bare'] / tm[k]:.3f})")
    return t["bare"] / t["bezier"]


def bench_matching(args) -> dict[str, float]:
    cases = [("cnn", {}), ("simple_cnn", {}), ("cnn_bn", {}), ("mlp", {})]
    print(f"\nweight matching (align: spec + Algorithm 1 + permute), pairs of independently "
          f"initialised networks, best of {args.repeats}:")
    print(f"  {'model':<12} {'parameters':>10} {'seconds':>8} {'sweeps':>6} {'‖A−B‖':>8} "
          f"{'‖A−P(B)‖':>9}")
    out = {}
    for name, opts in cases:
        sa, sb = model_pair(name, **opts)
        model = build_model(name, **opts)
        res = {}

        def run(model=model, sa=sa, sb=sb, res=res):
            res["info"] = align(model, sa, sb, seed=0)[1]

        t = best(race({"align": run}, args.repeats))["align"]
        info = res["info"]
        n = sum(p.numel() for p in model.parameters())
        print(f"  {name:<12} {n:>10,} {t:>8.3f} {info['iterations']:>6} "
              f"{info['distance_before']:>8.2f} {info['distance_after']:>9.2f}")
        out[name] = t
    return out


def bench_activation_repair(args, x, y) -> dict[str, float]:
    """Seconds of activation matching and of one REPAIRed point against one plain point."""
    sa, sb = model_pair("cnn", width=args.width, hidden=64)
    model = build_model("cnn", width=args.width, hidden=64).eval()
    model.load_state_dict(sa)
    (xc,) = use_channels_last(model, x)
    bs = args.eval_batch_size
    data = {"train": (xc, y)}
    path = LinearPath.from_states(model, sa, sb)
    repair = Repair.from_states(model, sa, sb, xc, batch_size=bs)
    times = race({"activation": lambda: align_activations(model, sa, sb, xc, batch_size=bs),
                  "plain": lambda: evaluate_path(model, path, [0.5], data, bs),
                  "repair": lambda: evaluate_path(model, path, [0.5], data, bs, repair=repair),
                  "endpoints": lambda: Repair.from_states(model, sa, sb, xc, batch_size=bs)},
                 args.repeats)
    t, tm = best(times), median(times)
    print(f"\nactivation matching and REPAIR: cnn width {args.width}, {x.shape[0]} images, "
          f"batch {bs}, channels-last; best (median) of {args.repeats} rounds")
    for label, k in (("align_activations (whole call)", "activation"),
                     ("REPAIR endpoint statistics (once per path)", "endpoints"),
                     ("one plain path point (evaluate_path)", "plain"),
                     ("one REPAIRed path point (evaluate_path)", "repair")):
        print(f"  {label:<44} {t[k]:>7.3f} s ({tm[k]:.3f})")
    return {**t, "ratio": t["repair"] / t["plain"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--eval-size", type=int, default=1024)
    ap.add_argument("--eval-batch-size", type=int, default=256)
    ap.add_argument("--points", type=int, default=11)
    ap.add_argument("--train-size", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smaller sets, one repeat")
    args = ap.parse_args()
    if args.quick:
        args.eval_size, args.train_size, args.repeats = 512, 2048, 1
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as every stage does (landscape/allocator.py)

    x, y, what = load_data(max(args.train_size, args.eval_size))
    print(f"data: {what}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    r_paths = bench_paths(args, x[:args.eval_size], y[:args.eval_size])
    r_bezier = bench_bezier(args, x[:args.train_size], y[:args.train_size])
    match = bench_matching(args)
    act = bench_activation_repair(args, x[:args.eval_size], y[:args.eval_size])
    print(f"\npath points / bare forward         = {r_paths:.3f}  (goal ≥ 0.9; slower of "
          "linear and Bézier)")
    print(f"Bézier training / bare training    = {r_bezier:.3f}  (goal ≥ 0.8)")
    print(f"weight matching cnn, simple_cnn    = {match['cnn']:.3f} s, {match['simple_cnn']:.3f} s "
          "per pair  (goal < 1 s)")
    print(f"activation matching cnn           = {act['activation']:.3f} s per pair; one REPAIR "
          f"point / one plain point = {act['ratio']:.2f}")


if __name__ == "__main__":
    main()
