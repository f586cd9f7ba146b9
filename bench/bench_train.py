"""Benchmark: throughput of the training stage against a bare PyTorch loop.

Same model, data, batch size, epochs and thread count, measured in one process, alternating
(stage, bare) several times; prints samples/s and the ratio stage/bare (goal >= 0.95).

The bare loop is what one would write by hand: shuffle indices, slice resident tensors, step,
and evaluate train and test once per epoch. The stage does the same work plus what the pipeline
needs: divergence checks, trajectory snapshots, per-epoch resumable state, checkpoint and tables.

    python bench/bench_train.py [--train-size 10000] [--batch-size 128] [--epochs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from landscape.allocator import keep_freed_memory  # noqa: E402
from landscape.data import eval_subset, prepare  # noqa: E402
from landscape.evaluate import evaluate  # noqa: E402
from landscape.models import build_model  # noqa: E402
from landscape.train import TrainConfig, epoch_order, train_run  # noqa: E402


def bare_loop(cfg: TrainConfig, x, y, xt, yt, channels_last: bool) -> tuple[float, float]:
    """(total seconds, seconds spent in optimisation steps)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, **cfg.model_options)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        xt = xt.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    t0 = time.perf_counter()
    optim = 0.0
    evaluate(model, x, y, cfg.eval_batch_size)  # metrics at initialisation, as the stage records
    evaluate(model, xt, yt, cfg.eval_batch_size)
    for epoch in range(cfg.epochs):
        model.train()
        t1 = time.perf_counter()
        order = epoch_order(len(y), cfg.seed, epoch, "cpu")
        for i in range(0, len(y), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        optim += time.perf_counter() - t1
        evaluate(model, x, y, cfg.eval_batch_size)
        evaluate(model, xt, yt, cfg.eval_batch_size)
    return time.perf_counter() - t0, optim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as every stage does (landscape/allocator.py)

    blob = prepare(train_size=args.train_size, test_size=args.test_size)
    from landscape.data import Split

    train = Split(blob["train"]["images"], blob["train"]["labels"])
    test = eval_subset(Split(blob["test"]["images"], blob["test"]["labels"]), None, 0)
    x, y = train.tensors()
    xt, yt = test.tensors()
    cfg = TrainConfig.from_config(dict(
        model="cnn", optimizer="sgd", lr=0.05, batch_size=args.batch_size,
                      weight_decay=0.0, seed=1, epochs=args.epochs,
                      model_options={"width": args.width, "hidden": 64},
                      snapshot_steps=[10, 30, 100]))
    timings: dict[str, tuple[list, list]] = {k: ([], []) for k in
                                             ("bare NCHW", "bare channels-last", "stage")}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            summary = train_run(cfg, train, test, tmp, device="cpu", progress=False)
            timings["stage"][0].append(time.perf_counter() - t0)
            timings["stage"][1].append(summary["train_seconds"])
        for name, cl in (("bare NCHW", False), ("bare channels-last", True)):
            total, optim = bare_loop(cfg, x, y, xt, yt, cl)
            timings[name][0].append(total)
            timings[name][1].append(optim)
    samples = args.train_size * args.epochs
    med = {k: (statistics.median(t), statistics.median(o)) for k, (t, o) in timings.items()}
    print(f"model cnn(width={args.width}), {args.train_size} train / {args.test_size} test images, "
          f"batch {args.batch_size}, {args.epochs} epochs, {args.threads} thread(s), "
          f"median of {args.repeats}")
    print(f"{'':34s}{'optim s':>9s}{'samples/s':>11s}{'total s':>9s}")
    labels = {"bare NCHW": "bare PyTorch loop (NCHW)",
              "bare channels-last": "bare PyTorch loop (channels-last)",
              "stage": "landscape train stage"}
    for k, (t, o) in med.items():
        print(f"{labels[k]:34s}{o:9.2f}{samples / o:11.0f}{t:9.2f}")
    best = min(med["bare NCHW"][1], med["bare channels-last"][1])
    print(f"training throughput ratio stage / best bare loop = {best / med['stage'][1]:.3f} "
          "(goal >= 0.95)")
    print(f"training throughput ratio stage / plain NCHW loop = "
          f"{med['bare NCHW'][1] / med['stage'][1]:.3f}")
    best_total = min(med["bare NCHW"][0], med["bare channels-last"][0])
    print(f"end-to-end ratio stage / best bare loop = {best_total / med['stage'][0]:.3f} "
          "(both evaluate train+test at init and every epoch;\n"
          "    the stage also saves snapshots, resumable state, checkpoint and tables)")


if __name__ == "__main__":
    main()
