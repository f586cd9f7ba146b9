"""Benchmark of the robustness measures (landscape.robustness), all baselines measured in one run.

On one model (the default study's ``cnn`` width 16, or ``--checkpoint``) and one evaluation set
(``--eval-size`` images of Fashion-MNIST shape: the prepared data when ``--data`` exists, else
seeded synthetic uint8 images, which time the same; without a checkpoint the labels are the fresh
network's own predictions, so its clean accuracy is 1), it prints:

* weight-noise points per second of
  - ``ours``: ``PointEvaluator.at(terms=[(u, σ)])`` — θ + σ·u written in place, loss + accuracy
    over the set under inference mode, channels-last layout, batch ``--batch-size``;
  - ``ours, end to end``: ``robustness_curve`` (noise draws, σ = 0 once, the DataFrame);
  - ``bare forward``: the limit, one forward pass over the same data per perturbation, same
    layout and batch size, nothing else (goal: ours ≥ 0.9 of it); timed interleaved with ours,
    point by point, medians compared;
  - ``naive loop``: per point ``copy.deepcopy`` of the model, add the noise, ``evaluate``;
* seconds per call of ε-sharpness and worst-case adaptive sharpness (``--steps`` gradient steps
  on ``--sharp-size`` images), average-case adaptive sharpness (``--draws`` draws) and PAC-Bayes
  flatness (``--draws`` draws per σ), each also in units of one gradient pass (for the ascents)
  or one evaluation (for the sampling measures) over the same images.

Run:  python bench/bench_robustness.py             (≈ 1 min on one core)
      python bench/bench_robustness.py --quick     (fewer points, smaller sets)
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from landscape.allocator import keep_freed_memory  # noqa: E402
from landscape.data import Split, eval_subset, load_prepared  # noqa: E402
from landscape.evaluate import evaluate  # noqa: E402
from landscape.evaluator import PointEvaluator, use_channels_last  # noqa: E402
from landscape.models import build_model  # noqa: E402
from landscape.params import bitwise_equal, detached, parameters  # noqa: E402
from landscape.robustness import (  # noqa: E402
    adaptive_sharpness,
    adaptive_sharpness_average,
    epsilon_sharpness,
    loss_and_grad,
    noise_direction,
    noise_seed,
    pacbayes_flatness,
    robustness_curve,
)


def timed(fn, repeats: int) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls (after one warm-up)."""
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def once(fn) -> tuple[float, object]:
    t = time.perf_counter()
    res = fn()
    return time.perf_counter() - t, res


def load_data(path: str, size: int) -> tuple[tuple[torch.Tensor, torch.Tensor], str]:
    if Path(path).is_file():
        train, _, _ = load_prepared(path)
        what = f"{size} Fashion-MNIST training images"
    else:
        g = torch.Generator().manual_seed(0)
        train = Split(torch.randint(0, 256, (size, 28, 28), generator=g, dtype=torch.uint8),
                      torch.arange(size) % 10)
        what = f"{size} synthetic uint8 images (no {path})"
    return eval_subset(train, min(size, len(train)), 0).tensors(), what


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="results/data/fashion_mnist.pt")
    p.add_argument("--checkpoint", default=None, help="a trained checkpoint (default: fresh cnn)")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--eval-size", type=int, default=1024)
    p.add_argument("--sharp-size", type=int, default=512, help="images for the sharpness calls")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="ascent steps of the sharpness calls")
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.eval_size, args.sharp_size, args.draws, args.steps = 512, 256, 3, 5
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as every stage does (landscape/allocator.py)

    (x, y), what = load_data(args.data, args.eval_size)
    if args.checkpoint:
        from landscape.checkpoints import load_model

        model = load_model(args.checkpoint)[0].eval()
    else:
        torch.manual_seed(0)
        model = build_model("cnn", width=args.width, hidden=64).eval()
    if not args.checkpoint:
        # a fresh network has chance accuracy and nothing for noise to destroy: label the images
        # with its own predictions (clean accuracy 1), so the searches have their usual work
        with torch.no_grad():
            y = model(x).argmax(1)
    nchw = copy.deepcopy(model)
    (x,) = use_channels_last(model, x)
    bs = args.batch_size
    n_params = sum(t.numel() for t in parameters(model))
    print(f"model: {args.checkpoint or f'cnn width {args.width}'} ({n_params:,} parameters); "
          f"eval set: {what}; batch {bs}, channels-last; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")

    theta = detached(parameters(model))
    sigmas = [0.01, 0.03, 0.1] if args.quick else [0.003, 0.01, 0.03, 0.1, 0.3]
    points = [(m, d, s) for m in ("absolute", "relative") for d in range(2) for s in sigmas]
    units = {(m, d): noise_direction(theta, 1.0, m, noise_seed(0, d))
             for m in ("absolute", "relative") for d in range(2)}

    def bare():
        with torch.inference_mode():
            for i in range(0, x.shape[0], bs):
                model(x[i:i + bs])

    # -------- weight noise: ours vs a bare forward pass per perturbation, interleaved point by
    # point so that load from other processes hits both alike; wall-clock medians and process
    # CPU time (one thread: the time this process actually ran, whatever else the cores did)
    n_curve = len(points) + 1  # the curve evaluates σ = 0 once, then every perturbed point
    wall = {"ours": [], "bare": [], "curve": [], "bare_curve": []}
    cpu = {k: 0.0 for k in wall}

    def clocked(key, fn):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall[key].append(time.perf_counter() - w)
        cpu[key] += time.process_time() - c

    with PointEvaluator(model, {"train": (x, y)}, bs) as ev:
        adopted = {k: ev.adopt(v) for k, v in units.items()}
        ev.at(terms=[(adopted[points[0][:2]], points[0][2])])
        bare()
        for _ in range(3):
            for m, d, s in points:
                clocked("ours", lambda m=m, d=d, s=s: ev.at(terms=[(adopted[m, d], s)]))
                clocked("bare", bare)
        # end to end: the whole curve against as many bare passes, alternated, three rounds
        for _ in range(3):
            clocked("curve", lambda: robustness_curve(ev, [0.0, *sigmas], draws=2, seed=0))
            clocked("bare_curve", lambda: [bare() for _ in range(n_curve)])
        assert ev.at()["train"] == evaluate(copy.deepcopy(model), x, y, bs)
    t_ours, t_bare = statistics.median(wall["ours"]), statistics.median(wall["bare"])
    t_curve = statistics.median(wall["curve"]) / n_curve
    cpu_ratio = cpu["bare"] / cpu["ours"]
    cpu_ratio_e2e = cpu["bare_curve"] / cpu["curve"]
    wall_ratio_e2e = min(wall["bare_curve"]) / min(wall["curve"])

    def naive():
        for m, d, s in points[:4]:
            mm = copy.deepcopy(nchw)
            with torch.no_grad():
                for q, u in zip(parameters(mm), units[m, d], strict=True):
                    q.add_(u, alpha=s)
            evaluate(mm, x.contiguous(), y, 128)

    t_naive = timed(naive, 1) / 4
    assert bitwise_equal(parameters(model), theta)

    print(f"\nweight noise ({len(points)} perturbed points):")
    print(f"  {'method':<46} {'points/s':>9} {'ours ÷ it':>10}")
    for name, t in [(f"ours (PointEvaluator.at, in place, batch {bs})", t_ours),
                    ("ours, end to end (robustness_curve)", t_curve),
                    (f"bare forward pass (batch {bs})", t_bare),
                    ("naive loop (deepcopy + add + evaluate, NCHW)", t_naive)]:
        print(f"  {name:<46} {1 / t:>9.2f} {t / t_ours:>10.2f}")
    print(f"  ours / bare forward = {t_bare / t_ours:.3f} (wall, medians), {cpu_ratio:.3f} (CPU "
          "time)   (goal ≥ 0.9)")
    print(f"  end to end, robustness_curve / as many bare passes = {wall_ratio_e2e:.3f} (wall, "
          f"best of 3), {cpu_ratio_e2e:.3f} (CPU time)")

    # -------- sharpness and PAC-Bayes: seconds per call
    xs, ys = x[:args.sharp_size], y[:args.sharp_size]
    t_grad = timed(lambda: loss_and_grad(model, parameters(model), xs, ys, 256), 3)
    t_eval = timed(lambda: evaluate(model, xs, ys, 256), 3)
    rows = []
    t, r = once(lambda: epsilon_sharpness(model, xs, ys, 1e-3, steps=args.steps))
    rows.append((f"ε-sharpness (ε = 1e-3, {args.steps} steps)", t, t / t_grad, "gradients",
                 f"value {r['value']:.4g} %, inside box {r['inside_box']}"))
    t, r = once(lambda: adaptive_sharpness(model, xs, ys, 0.01, steps=args.steps))
    rows.append((f"adaptive sharpness, worst (ρ = 0.01, {args.steps} steps)", t, t / t_grad,
                 "gradients", f"value {r['value']:.4g} nats"))
    t, r = once(lambda: adaptive_sharpness_average(model, xs, ys, 0.01, draws=args.draws))
    rows.append((f"adaptive sharpness, average ({args.draws} draws)", t, t / t_eval,
                 "evaluations", f"value {r['value']:.4g} nats"))
    with PointEvaluator(model, {"train": (xs, ys)}, 256) as ev:
        t, r = once(lambda: pacbayes_flatness(ev, "train", True, draws=args.draws, rtol=0.05))
    rows.append((f"PAC-Bayes mag. flatness ({args.draws} draws/σ)", t, t / t_eval,
                 "evaluations", f"σ {r['sigma']:.4g} after {r['evaluations']} σ-evaluations"))
    print(f"\nper call on {xs.shape[0]} images (one gradient pass {t_grad * 1e3:.1f} ms, one "
          f"evaluation {t_eval * 1e3:.1f} ms):")
    for name, t, cost, unit, note in rows:
        print(f"  {name:<48} {t:>7.2f} s  = {cost:>6.1f} {unit:<11}  {note}")
    assert bitwise_equal(parameters(model), theta)


if __name__ == "__main__":
    main()
