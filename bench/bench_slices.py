"""Benchmark of the slices stage's evaluation engine, all baselines measured in one run.

On one model (the default study's ``cnn`` width 16, or ``--checkpoint``), one evaluation set
(``--eval-size`` training images) and one 2-D grid (``--grid``² points, filter-normalised random
plane), it prints points per second of:

* ``ours``: ``landscape.evaluator.PointEvaluator`` (θ + α·d₁ + β·d₂ written in place, data in
  memory, ``evaluate()`` under inference mode, channels-last layout, batch ``--batch-size``);
* ``bare forward``: the limit, one forward pass over the same data per point, same layout and
  batch size, nothing else (goal: ours ≥ 0.9 of it);
* ``loss-landscapes random_plane``: the ``loss_landscapes`` package (3.x) with its ``Loss``
  metric over the same tensors, the model as the user has it (NCHW);
* ``naive loop``: per point, ``copy.deepcopy`` of the model, ``load_state_dict`` of the point,
  a ``DataLoader`` of 128 (goal: ours ≥ 2× it);
* ``vmap K``: ``torch.func.functional_call`` + ``vmap`` over K points per forward pass (the
  alternative the issue asks to consider);

plus a batch-size × layout sweep of ours, the FLOPs of one point (conv/linear, counted by
``torch.utils.flop_counter``), the achieved FLOP/s and its fraction of this machine's float32
matmul peak (a 2048² ``torch.mm`` timed in the same run, same threads).

Run:  python bench/bench_slices.py            (≈ 1-2 min on one core)
      python bench/bench_slices.py --grid 5 --quick
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from landscape.allocator import keep_freed_memory
from landscape.data import eval_subset, load_prepared, prepare
from landscape.directions import random_direction
from landscape.evaluate import evaluate
from landscape.evaluator import PointEvaluator, use_channels_last
from landscape.models import build_model
from landscape.params import detached, parameters
from landscape.slices import grid


def timed(fn, repeats: int) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls (after one warm-up)."""
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def load_data(path: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if Path(path).is_file():
        train, _, _ = load_prepared(path)
    else:
        from landscape.data import Split

        blob = prepare(train_size=max(size, 10), test_size=10)
        train = Split(blob["train"]["images"], blob["train"]["labels"])
    return eval_subset(train, min(size, len(train.labels)), 0).tensors()


def make_model(args):
    if args.checkpoint:
        from landscape.checkpoints import load_model

        return load_model(args.checkpoint)[0]
    torch.manual_seed(0)
    return build_model("cnn", width=args.width, hidden=64).eval()


def ours_rate(model, x, y, d1, d2, coords, batch_size) -> float:
    """Points per second of the PointEvaluator over ``coords``."""
    with PointEvaluator(model, {"train": (x, y)}, batch_size) as ev:
        a, b = ev.adopt(d1), ev.adopt(d2)

        def run():
            for al, be in coords:
                ev.at(terms=[(a, al), (b, be)])

        return len(coords) / timed(run, 2)


def bare_rate(model, x, batch_size, repeats) -> float:
    """Forward passes per second over the whole set (no loss, no parameter writes)."""
    def run():
        with torch.inference_mode():
            for i in range(0, x.shape[0], batch_size):
                model(x[i:i + batch_size])

    return 1.0 / timed(run, repeats)


def naive_rate(model, x, y, d1, d2, coords) -> float:
    """Per point: deepcopy the model, load θ + αd₁ + βd₂, DataLoader of 128 (the usual script)."""
    from torch.utils.data import DataLoader, TensorDataset

    names = [n for n, _ in model.named_parameters()]
    theta = detached(parameters(model))
    loader = DataLoader(TensorDataset(x, y), batch_size=128)

    def run():
        for al, be in coords:
            m = copy.deepcopy(model)
            state = m.state_dict()
            for n, t, u, v in zip(names, theta, d1, d2, strict=True):
                state[n] = t + al * u + be * v
            m.load_state_dict(state)
            m.eval()
            total, correct = 0.0, 0
            with torch.no_grad():
                for xb, yb in loader:
                    out = m(xb)
                    total += F.cross_entropy(out, yb, reduction="sum").item()
                    correct += (out.argmax(1) == yb).sum().item()

    return len(coords) / timed(run, 1)


def loss_landscapes_rate(model, x, y, steps) -> float:
    import loss_landscapes
    from loss_landscapes.metrics import Loss

    metric = Loss(torch.nn.CrossEntropyLoss(), x, y)

    def run():
        loss_landscapes.random_plane(model, metric, distance=1.0, steps=steps,
                                     normalization="filter", deepcopy_model=True)

    return steps * steps / timed(run, 1)


def vmap_rate(model, x, y, d1, d2, coords, k, batch_size) -> float:
    """K points per forward pass with functional_call + vmap (loss and accuracy per point)."""
    from torch.func import functional_call, vmap

    names = [n for n, _ in model.named_parameters()]
    theta = detached(parameters(model))
    fwd = vmap(lambda p, xb: functional_call(model, p, (xb,)), in_dims=(0, None))

    def run():
        with torch.inference_mode():
            for s in range(0, len(coords), k):
                chunk = coords[s:s + k]
                al = torch.tensor([c[0] for c in chunk])
                be = torch.tensor([c[1] for c in chunk])
                params = {}
                for n, t, u, v in zip(names, theta, d1, d2, strict=True):
                    shape = (-1,) + (1,) * t.dim()
                    params[n] = t + al.view(shape) * u + be.view(shape) * v
                total = torch.zeros(len(chunk), dtype=torch.float64)
                correct = torch.zeros(len(chunk), dtype=torch.int64)
                for i in range(0, x.shape[0], batch_size):
                    out = fwd(params, x[i:i + batch_size])  # [K, B, 10]
                    yb = y[i:i + batch_size]
                    total += F.cross_entropy(out.transpose(1, 2), yb.expand(len(chunk), -1),
                                             reduction="none").sum(1).double()
                    correct += (out.argmax(2) == yb).sum(1)

    return len(coords) / timed(run, 1)


def matmul_peak(repeats: int) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048**3 / timed(lambda: torch.mm(a, b), repeats)


def forward_flops(model, x, batch_size) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            model(x[i:i + batch_size])
    return counter.get_total_flops()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="results/data/fashion_mnist.pt",
                   help="prepared data (falls back to the local Fashion-MNIST IDX files)")
    p.add_argument("--checkpoint", default=None, help="a trained checkpoint (default: fresh cnn)")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--eval-size", type=int, default=1024)
    p.add_argument("--grid", type=int, default=7, help="points per axis of the plane")
    p.add_argument("--batch-size", type=int, default=64, help="batch size of ours and bare")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="skip the sweep and the vmap variants")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as every stage does (landscape/allocator.py)

    x, y = load_data(args.data, args.eval_size)
    model = make_model(args)
    n_params = sum(t.numel() for t in parameters(model))
    w = detached(parameters(model))
    d1, d2 = random_direction(w, 1), random_direction(w, 2)
    g = grid(-1.0, 1.0, args.grid)
    coords = [(float(a), float(b)) for a in g for b in g]
    what = f"checkpoint {args.checkpoint}" if args.checkpoint else f"cnn width {args.width}"
    print(f"model: {what} ({n_params:,} parameters); eval set: {x.shape[0]} training images; grid "
          f"{args.grid}×{args.grid} = {len(coords)} points; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")

    nchw = copy.deepcopy(model)
    fast = copy.deepcopy(model)
    (xc,) = use_channels_last(fast, x)
    bs = args.batch_size

    if not args.quick:
        print("\nbatch-size sweep of ours (points/s; one point = loss + accuracy over the set):")
        print(f"  {'batch':>6} {'NCHW':>8} {'channels-last':>14}")
        for b in (32, 64, 128, 256, 1024):
            r1 = ours_rate(nchw, x, y, d1, d2, coords[:6], b)
            r2 = ours_rate(fast, xc, y, d1, d2, coords[:6], b)
            print(f"  {b:>6} {r1:>8.2f} {r2:>14.2f}")

    peak = matmul_peak(3)
    ours = ours_rate(fast, xc, y, d1, d2, coords, bs)
    bare = bare_rate(fast, xc, bs, 5)
    bare_nchw = bare_rate(nchw, x, 128, 3)
    naive = naive_rate(nchw, x, y, d1, d2, coords)
    ll = loss_landscapes_rate(copy.deepcopy(nchw), x, y, args.grid)
    vm = {} if args.quick else {k: vmap_rate(nchw, x, y, d1, d2, coords, k, bs) for k in (4, 8)}
    flops = forward_flops(fast, xc, bs)

    # check that ours computes what it claims: the origin equals evaluate() on the model
    with PointEvaluator(fast, {"train": (xc, y)}, bs) as ev:
        assert ev.at()["train"] == evaluate(copy.deepcopy(fast), xc, y, bs)

    print(f"\n{'method':<44} {'points/s':>9} {'ours ÷ it':>10}")
    rows = [(f"ours (in place, channels-last, batch {bs})", ours),
            (f"bare forward pass (channels-last, batch {bs})", bare),
            ("bare forward pass (NCHW, batch 128)", bare_nchw),
            ("loss-landscapes random_plane (NCHW)", ll),
            ("naive loop (deepcopy + DataLoader 128)", naive)]
    rows += [(f"vmap over {k} points (NCHW, batch {bs})", r) for k, r in vm.items()]
    for name, r in rows:
        print(f"{name:<44} {r:>9.2f} {ours / r:>10.2f}")
    achieved = flops * ours
    print(f"\nours / bare forward = {ours / bare:.3f}   (goal ≥ 0.9)")
    print(f"ours / naive loop   = {ours / naive:.2f}×  (goal ≥ 2×)")
    print(f"ours / loss-landscapes random_plane = {ours / ll:.2f}×")
    print(f"FLOPs per point (forward, conv + linear): {flops / 1e9:.3f} GFLOP; achieved "
          f"{achieved / 1e9:.1f} GFLOP/s; matmul peak {peak / 1e9:.1f} GFLOP/s "
          f"({torch.get_num_threads()} thread(s)); fraction of peak {achieved / peak:.3f}")


if __name__ == "__main__":
    main()
