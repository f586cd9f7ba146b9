"""Benchmark: curvature stage vs PyHessian on the same model, the same 2,048 samples, one machine.

Prints, side by side, for the top-1 and top-3 eigenvalues at the same tolerance (1e-3):
Hessian-vector products (HVPs), seconds (median of --repeats, construction included), values and
their distance to the converged values (Lanczos to residual 1e-9·‖H‖), and the speed ratio
PyHessian / ours. Also the cost of one HVP relative to one gradient over the same data for each
HVP method (the faster one is what ``hvp_method: auto`` uses).

Ours uses the ``cached`` HVP (the gradient graph of the 2,048 samples kept and reused, about
1 GB, as PyHessian's single-batch path keeps it) in mini-batches of 128; ``rev-rev`` (memory
flat in the number of samples, what ``auto`` falls back to above ``max_cache_mb``) is shown too.

Tolerances differ in meaning: PyHessian stops when its estimate changes by < tol (relative);
ours stops when every requested residual ‖Hv − λv‖ ≤ tol·‖H‖, which bounds the eigenvalue error
by ‖r‖²/gap. So both columns of errors are printed, not assumed.

PyHessian 0.1 is used as installed (``pip install pyhessian``), with ``cuda=False``; the only
shim is a counting wrapper around its ``hessian_vector_product`` (its single-batch path reuses
one gradient graph, as our ``cached`` method does). Nothing in site-packages is edited.

    python bench/bench_hessian.py [--samples 2048] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from landscape.allocator import keep_freed_memory  # noqa: E402
from landscape.checkpoints import load_model  # noqa: E402
from landscape.data import Split, eval_subset, prepare  # noqa: E402
from landscape.hessian import HessianOperator, lanczos_eigs, power_iteration  # noqa: E402
from landscape.train import TrainConfig, train_run  # noqa: E402


def trained_model(train_size: int, epochs: int, width: int, folder: Path):
    """A cnn trained briefly on a seeded subset (curvature of an untrained net is atypical)."""
    blob = prepare(train_size=train_size, test_size=1000, seed=0)
    train = Split(blob["train"]["images"], blob["train"]["labels"])
    test = Split(blob["test"]["images"], blob["test"]["labels"])
    cfg = TrainConfig.from_config(dict(
        model="cnn", optimizer="sgd", lr=0.05, batch_size=128, weight_decay=0.0,
                      seed=1, epochs=epochs, model_options={"width": width, "hidden": 64}))
    train_run(cfg, train, test, folder, device="cpu", progress=False)
    model, _ = load_model(folder / "checkpoint.pt")
    return model, train


def pyhessian_topk(model, x, y, k: int, tol: float, max_iter: int = 100):
    """PyHessian's eigenvalues(top_n=k) with HVPs counted; (values, n_hvp, seconds)."""
    import importlib

    ph = importlib.import_module("pyhessian.hessian")  # the module (the package re-exports a class)

    count = [0]
    original = ph.hessian_vector_product

    def counted(gradsH, params, v):
        count[0] += 1
        return original(gradsH, params, v)

    ph.hessian_vector_product = counted
    try:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        h = ph.hessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        vals, _ = h.eigenvalues(maxIter=max_iter, tol=tol, top_n=k)
        seconds = time.perf_counter() - t0
    finally:
        ph.hessian_vector_product = original
        model.zero_grad(set_to_none=True)
    return np.array(vals), count[0], seconds


def ours_topk(model, x, y, k: int, tol: float, batch_size, method: str = "cached"):
    """Our Lanczos top-k (operator construction included); (values, n_hvp, seconds, op)."""
    t0 = time.perf_counter()
    op = HessianOperator(model, x, y, batch_size=batch_size, method=method)
    res = lanczos_eigs(op.matvec, op.dim, k=k, smallest=False, tol=tol, max_iter=200,
                       generator=torch.Generator().manual_seed(0))
    return res.largest, res.n_hvp, time.perf_counter() - t0, op


def ours_power(model, x, y, k: int, tol: float, batch_size):
    t0 = time.perf_counter()
    op = HessianOperator(model, x, y, batch_size=batch_size, method="cached")
    res = power_iteration(op.matvec, op.dim, k=k, tol=tol, max_iter=100,
                          generator=torch.Generator().manual_seed(0))
    return res.values, res.n_hvp, time.perf_counter() - t0


def median_run(fn, repeats: int):
    runs = [fn() for _ in range(repeats)]
    secs = statistics.median(r[2] for r in runs)
    return runs[0][0], runs[0][1], secs


def hvp_vs_gradient(model, x, y, batch_size, repeats: int) -> None:
    print(f"\nCost of one HVP relative to one gradient (same {len(y)} samples, "
          f"mini-batches of {batch_size}; min of {repeats + 2}):")
    v = torch.randn(sum(p.numel() for p in model.parameters()),
                    generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def best(f, n):
        f()
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            f()
            out.append(time.perf_counter() - t0)
        return min(out)

    op = HessianOperator(model, x, y, batch_size=batch_size, method="rev-rev")
    g = best(op.loss_and_gradient, repeats + 2)
    print(f"  {'gradient':28s} {g * 1e3:8.1f} ms   1.00×")
    for method in ("cached", "rev-rev", "fwd-rev"):
        op = HessianOperator(model, x, y, batch_size=batch_size, method=method)
        t0 = time.perf_counter()
        op.matvec(v)
        first = time.perf_counter() - t0
        t = best(lambda op=op: op.matvec(v), repeats + 2)
        extra = f"   (first product, building the graph: {first * 1e3:.0f} ms)" \
            if method == "cached" else ""
        print(f"  HVP {method:24s} {t * 1e3:8.1f} ms   {t / g:.2f}×{extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2048, help="evaluation samples")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128, help="our HVP mini-batch size")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--train-size", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as every stage does (landscape/allocator.py)

    with tempfile.TemporaryDirectory() as tmp:
        model, train = trained_model(args.train_size, args.epochs, args.width, Path(tmp))
    x, y = eval_subset(train, args.samples, 0).tensors()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model cnn width {args.width}: {n_params:,} parameters; {len(y)} samples; "
          f"{args.threads} thread(s); torch {torch.__version__}")
    with torch.no_grad():
        print(f"loss at the trained weights: {float(F.cross_entropy(model(x), y)):.4f}")

    t0 = time.perf_counter()
    ref_op = HessianOperator(model, x, y, batch_size=args.batch_size, method="cached")
    ref = lanczos_eigs(ref_op.matvec, ref_op.dim, k=3, smallest=False, tol=1e-9, max_iter=300,
                       generator=torch.Generator().manual_seed(123))
    print(f"converged reference (Lanczos, residual ≤ 1e-9·‖H‖, {ref.n_hvp} HVPs, "
          f"{time.perf_counter() - t0:.1f} s): " + ", ".join(f"{v:.6f}" for v in ref.largest))
    del ref_op

    OURS = f"ours: Lanczos, cached B={args.batch_size}"
    header = (f"{'k':>2} {'method':34s} {'HVPs':>5} {'seconds':>8}  {'values':40s} "
              f"{'max |error|':>11}")
    print(f"\nTop-k eigenvalues at tol {args.tol:g} (seconds: median of {args.repeats}, "
          "construction included)")
    print(header)
    print("-" * len(header))
    summary = {}
    for k in (1, 3):
        rows = [
            ("PyHessian power iteration", median_run(
                lambda k=k: pyhessian_topk(model, x, y, k, args.tol), args.repeats)),
            (f"ours: power iteration, cached B={args.batch_size}", median_run(
                lambda k=k: ours_power(model, x, y, k, args.tol, args.batch_size),
                args.repeats)),
            (OURS, median_run(
                lambda k=k: ours_topk(model, x, y, k, args.tol, args.batch_size)[:3],
                args.repeats)),
            ("ours: Lanczos, cached, one batch", median_run(
                lambda k=k: ours_topk(model, x, y, k, args.tol, None)[:3], args.repeats)),
            (f"ours: Lanczos, rev-rev B={args.batch_size}", median_run(
                lambda k=k: ours_topk(model, x, y, k, args.tol, args.batch_size,
                                      "rev-rev")[:3], args.repeats)),
        ]
        for name, (vals, n, secs) in rows:
            vals = np.sort(np.asarray(vals, dtype=float))[::-1]
            err = np.max(np.abs(vals - ref.largest[:k]))
            shown = ", ".join(f"{v:.5f}" for v in vals)
            print(f"{k:>2} {name:34s} {n:>5} {secs:8.2f}  {shown:40s} {err:11.2e}")
            summary[(k, name)] = (n, secs, err)
        print()
    for k in (1, 3):
        pn, ps, pe = summary[(k, "PyHessian power iteration")]
        on, os_, oe = summary[(k, OURS)]
        print(f"top-{k}: PyHessian / ours = {ps / os_:.2f}× in seconds, {pn / on:.2f}× in HVPs; "
              f"max error PyHessian {pe:.2e} vs ours {oe:.2e} "
              f"({'ours at least as close' if oe <= pe else 'PyHessian closer'})")
    hvp_vs_gradient(model, x, y, args.batch_size, args.repeats)


if __name__ == "__main__":
    main()
