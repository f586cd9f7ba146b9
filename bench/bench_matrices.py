"""Benchmark: our Gauss–Newton, empirical-Fisher and Hessian products against curvlinops', on the
default study's CNN, the same samples, one machine, one thread.

curvlinops (``pip install curvlinops-for-pytorch``) is the maintained library of these operators
(Dangel et al.); the design card asks to use it where it is as fast as our own code. This prints,
per matrix: seconds per matrix-vector product of each (median of --repeats, after one warm-up
product), the ratio curvlinops / ours, and the relative difference of the two products on the
same random vector (they compute the same matrix: it must be float32 rounding). Products in
mini-batches of --batch-size, model in eval mode, mean cross-entropy, as the curvature stages.

    PYTHONPATH=<where curvlinops is> python bench/bench_matrices.py [--samples 512]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from landscape.hessian.gauss_newton import GaussNewtonOperator  # noqa: E402
from landscape.hessian.operator import HessianOperator  # noqa: E402
from landscape.models import build_model  # noqa: E402


def timed(fn, v, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn(v)  # warm-up (graph caches, lazy decompositions)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(v)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import curvlinops
    except ImportError:
        sys.exit("curvlinops is not installed: pip install curvlinops-for-pytorch")
    torch.manual_seed(0)
    model = build_model("cnn").eval()
    x = torch.randn(args.samples, 1, 28, 28)
    y = torch.randint(0, 10, (args.samples,))
    params = [p for p in model.parameters() if p.requires_grad]
    data = [(x[i:i + args.batch_size], y[i:i + args.batch_size])
            for i in range(0, args.samples, args.batch_size)]
    loss = nn.CrossEntropyLoss(reduction="mean")
    theirs = {
        "hessian": curvlinops.HessianLinearOperator(model, loss, params, data,
                                                    check_deterministic=False),
        "ggn": curvlinops.GGNLinearOperator(model, loss, params, data,
                                            check_deterministic=False),
        "ef": curvlinops.EFLinearOperator(model, loss, params, data, check_deterministic=False),
    }
    ours = {"hessian": HessianOperator(model, x, y, batch_size=args.batch_size),
            "ggn": GaussNewtonOperator(model, x, y, "ggn", batch_size=args.batch_size),
            "ef": GaussNewtonOperator(model, x, y, "ef", batch_size=args.batch_size)}
    dim = ours["ggn"].dim
    v = torch.randn(dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    print(f"curvlinops {getattr(curvlinops, '__version__', '?')}, torch {torch.__version__}, "
          f"{args.samples} samples in batches of {args.batch_size}, {dim} parameters, "
          f"{args.threads} thread(s); HVP method of ours: {ours['hessian'].method}")
    print(f"{'matrix':8s} {'ours s/mv':>10s} {'curvlinops s/mv':>16s} {'ratio':>7s} "
          f"{'rel. diff':>10s}")
    for name in ("hessian", "ggn", "ef"):
        t_ours, a = timed(ours[name].matvec, v, args.repeats)
        t_theirs, b = timed(lambda u, op=theirs[name]: op @ u.to(torch.float32), v, args.repeats)
        diff = float((a - b.to(a)).norm() / a.norm())
        print(f"{name:8s} {t_ours:10.4f} {t_theirs:16.4f} {t_theirs / t_ours:7.2f} {diff:10.2e}")
    # ours: the cached maps of each mini-batch against recomputing them at every product
    print(f"{'matrix':8s} {'cached s/mv':>12s} {'recomputed s/mv':>16s} {'ratio':>7s} "
          f"{'rel. diff':>10s}")
    for name in ("ggn", "ef"):
        slow = GaussNewtonOperator(model, x, y, name, batch_size=args.batch_size, max_cache_mb=0)
        t_cached, a = timed(ours[name].matvec, v, args.repeats)
        t_slow, b = timed(slow.matvec, v, args.repeats)
        diff = float((a - b).norm() / a.norm())
        print(f"{name:8s} {t_cached:12.4f} {t_slow:16.4f} {t_slow / t_cached:7.2f} {diff:10.2e}")


if __name__ == "__main__":
    main()
