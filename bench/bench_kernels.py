"""Benchmark: each main kernel's rate against the one-thread fp32 matmul peak, in one process.

The cost model (``python -m landscape cost RESULTS``) reads these rates off a finished study;
this benchmark measures them in isolation, in a minute, on the default study's model and
settings (``config.yaml`` over the schema's defaults), so a change to one kernel can be judged
without running a study. Every kernel runs through the library's own code, as its stage does:

* ``slices``: a plane point, θ + a·d₁ + b·d₂ written in place (``PointEvaluator.at``), loss and
  accuracy over the slices' train and test subsets (``slices.train_size``/``test_size``, batch
  ``slices.batch_size``, channels-last);
* ``robustness``: ``robustness_curve`` (noise drawn, written in place and evaluated) over the
  robustness subsets, one mode, a few σ and draws;
* ``path evaluation``: ``evaluate_path`` along a ``LinearPath`` between two networks over the
  connectivity subsets (``connectivity.points`` points);
* ``training steps (B = 128)``: ``landscape.train.train_step`` (SGD with momentum) on resident
  channels-last data, batches of 128;
* ``curvature``: ``HessianOperator.matvec`` on ``hessian.eval_size`` images, the product method
  the stage picks (``hessian.hvp_method``; ``auto``: the graph-size estimate).

FLOPs per unit come from ``landscape.cost.model_flops`` (``FlopCounterMode``: matmuls and
convolutions; multiply-add = 2), seconds are the process's CPU time (one thread), and each rate
is divided by the matmul peak (``landscape.cost.matmul_peak``) timed in the same process between
the kernels (the fastest of its readings). Each line shows the kernel's target
(``landscape.cost.RATE_TARGETS``). Kernels are timed in rounds (each round runs every kernel
once) and the fastest round counts, the one least disturbed by other processes.

Run:  python bench/bench_kernels.py              (≈ 1 min on one core)
      python bench/bench_kernels.py --quick      (fewer rounds and points)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from landscape.allocator import keep_freed_memory  # noqa: E402
from landscape.connectivity import LinearPath, evaluate_path  # noqa: E402
from landscape.cost import RATE_TARGETS, matmul_peak, model_flops  # noqa: E402
from landscape.data import eval_subset, load_prepared, prepare  # noqa: E402
from landscape.directions import random_direction  # noqa: E402
from landscape.evaluator import PointEvaluator, use_channels_last  # noqa: E402
from landscape.hessian.operator import HessianOperator  # noqa: E402
from landscape.models import build_model  # noqa: E402
from landscape.params import detached, parameters  # noqa: E402
from landscape.robustness.noise import robustness_curve  # noqa: E402
from landscape.schema import with_defaults  # noqa: E402
from landscape.train import train_step  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def settings() -> dict:
    """The default study's sections (config.yaml over the schema's defaults)."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    return {s: with_defaults(cfg.get(s), s)
            for s in ("slices", "robustness", "connectivity", "hessian")}


def splits(path: str, train_size: int, test_size: int):
    """Seeded subsets of the prepared data (else of the installed IDX files)."""
    if Path(path).is_file():
        train, test, _ = load_prepared(path)
    else:
        from landscape.data import Split

        blob = prepare(train_size=20000, test_size=10000)
        train = Split(blob["train"]["images"], blob["train"]["labels"])
        test = Split(blob["test"]["images"], blob["test"]["labels"])
    return (eval_subset(train, train_size, 0).tensors(),
            eval_subset(test, test_size, 0).tensors())


def model(seed: int, width: int):
    torch.manual_seed(seed)
    return build_model("cnn", width=width, hidden=64).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="results/data/fashion_mnist.pt",
                   help="prepared data (falls back to the local Fashion-MNIST IDX files)")
    p.add_argument("--width", type=int, default=16, help="cnn width (the default study's)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="2 rounds, fewer points and products")
    args = p.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()  # as every stage does (landscape/allocator.py)
    rounds = 2 if args.quick else args.rounds
    cfg = settings()
    sl, rb, cn, hs = cfg["slices"], cfg["robustness"], cfg["connectivity"], cfg["hessian"]

    net = model(0, args.width)
    hvp_data = splits(args.data, hs["eval_size"], 1)[0]
    hvp_op = HessianOperator(net, *hvp_data, batch_size=hs["batch_size"],
                             method=hs["hvp_method"], max_cache_mb=hs["max_cache_mb"])
    flops = model_flops(net, hvp_method=hvp_op.method)  # per image, the products the stage runs
    v = torch.randn(hvp_op.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    hvp_op.matvec(v)  # the graph build of a cached operator: once per operator, not timed

    fast = model(0, args.width)
    s_train, s_test = splits(args.data, sl["train_size"], sl["test_size"])
    (xs_tr, xs_te) = use_channels_last(fast, s_train[0], s_test[0])
    slice_data = {"train": (xs_tr, s_train[1]), "test": (xs_te, s_test[1])}
    w = detached(parameters(fast))
    d1, d2 = random_direction(w, 1), random_direction(w, 2)
    n_points = 4 if args.quick else 9

    r_train, r_test = splits(args.data, rb["train_size"], rb["test_size"])
    (xr_tr, xr_te) = use_channels_last(fast, r_train[0], r_test[0])
    noise_data = {"train": (xr_tr, r_train[1]), "test": (xr_te, r_test[1])}
    sigmas, draws = [rb["sigmas"]["relative"][0], rb["sigmas"]["relative"][-1]], 2

    c_train, c_test = splits(args.data, cn["train_size"], cn["test_size"])
    path_net = model(0, args.width)
    (xc_tr, xc_te) = use_channels_last(path_net, c_train[0], c_test[0])
    path_data = {"train": (xc_tr, c_train[1]), "test": (xc_te, c_test[1])}
    path = LinearPath.from_states(path_net, model(0, args.width).state_dict(),
                                  model(1, args.width).state_dict())
    ts = [i / (cn["points"] - 1) for i in range(cn["points"])][: 6 if args.quick else None]

    trainee = model(2, args.width)
    (xt,) = use_channels_last(trainee, s_train[0])
    yt = s_train[1]
    opt = torch.optim.SGD(trainee.parameters(), lr=0.01, momentum=0.9)
    steps = 8 if args.quick else 24
    order = torch.randperm(xt.shape[0], generator=torch.Generator().manual_seed(0))
    n_hvp = 3 if args.quick else 8

    def slices():
        with PointEvaluator(fast, slice_data, sl["batch_size"]) as ev:
            a, b = ev.adopt(d1), ev.adopt(d2)
            for i in range(n_points):
                ev.at(terms=[(a, 0.1 * i), (b, -0.05 * i)])
        return n_points * sum(len(y) for _, y in slice_data.values()) * flops["forward"]

    def robustness():
        with PointEvaluator(fast, noise_data, rb["batch_size"]) as ev:
            robustness_curve(ev, sigmas, modes=["relative"], draws=draws, seed=0)
        return len(sigmas) * draws * sum(len(y) for _, y in noise_data.values()) * \
            flops["forward"]

    def path_evaluation():
        evaluate_path(path_net, path, ts, path_data, cn["batch_size"])
        return len(ts) * sum(len(y) for _, y in path_data.values()) * flops["forward"]

    def training():
        trainee.train()
        for s in range(steps):
            idx = order[(s * 128) % (xt.shape[0] - 128):][:128]
            train_step(trainee, opt, xt, yt, idx)
        trainee.eval()
        return steps * 128 * flops["fwd_bwd"]

    def curvature():
        for _ in range(n_hvp):
            hvp_op.matvec(v)
        return n_hvp * len(hvp_data[1]) * flops["hvp"]

    kernels = {"slices": slices, "robustness": robustness, "path evaluation": path_evaluation,
               "training steps (B = 128)": training, "curvature": curvature}
    assert set(kernels) == set(RATE_TARGETS)
    print(f"cnn width {args.width}; torch {torch.__version__}, 1 thread; {rounds} rounds, "
          "fastest counts; settings: config.yaml")
    for fn in kernels.values():  # warm-up: allocator, kernels' first calls
        fn()
    best = dict.fromkeys(kernels, 0.0)
    peaks = [matmul_peak(repeats=3)]
    for _ in range(rounds):
        for name, fn in kernels.items():
            t0 = time.process_time()
            work = fn()  # FLOPs the call needed
            best[name] = max(best[name], work / (time.process_time() - t0))
        peaks.append(matmul_peak(repeats=3))
    hvp_op.release()
    peak = max(peaks)
    print(f"one-thread fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s (fastest of "
          f"{len(peaks)} readings, lowest {min(peaks) / 1e9:.1f}); HVP method {hvp_op.method}\n")
    print(f"{'kernel':<26} {'GFLOP/s':>8} {'of peak':>8} {'target':>7}  met")
    for name, rate in best.items():
        frac, target = rate / peak, RATE_TARGETS[name]
        print(f"{name:<26} {rate / 1e9:>8.1f} {frac:>8.1%} {target:>7.0%}  "
              f"{'yes' if frac >= target else 'no'}")


if __name__ == "__main__":
    main()
