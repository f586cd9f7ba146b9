"""Benchmark: glibc's default malloc settings against the ones every stage uses.

``landscape/allocator.py`` keeps freed blocks in the process (``mallopt``) instead of mapping and
unmapping every activation. Each measurement runs in a fresh process, once with
``LANDSCAPE_MALLOC=system`` (the C library's defaults: the baseline) and once with the project's
setting, alternating, best of ``--repeats``:

* evaluation: forward passes of the default study's CNN over 1,024 images in batches of 64
  (what a slice, path or noise point costs);
* training: SGD steps of the same CNN on batches of 128 (forward, backward, update);
* two at once: the evaluation in two processes started together, one per core (what
  ``slices.shards: 2`` does); the ratio to one process alone shows how much they slow each other.

Prints milliseconds per pass/step, CPU seconds in the kernel, and the ratios default/kept.

    python bench/bench_allocator.py [--repeats 3] [--seconds 4]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

WORK = textwrap.dedent("""
    import resource, sys, time, torch
    torch.set_num_threads(1)
    from landscape.allocator import keep_freed_memory
    keep_freed_memory()
    from torch.nn import functional as F
    from landscape.evaluate import evaluate
    from landscape.models import build_model
    from landscape.evaluator import use_channels_last
    kind, seconds = sys.argv[1], float(sys.argv[2])
    torch.manual_seed(0)
    model = build_model("cnn", width=16, hidden=64)
    x, y = torch.randn(1024, 1, 28, 28), torch.randint(0, 10, (1024,))
    if kind == "eval":
        x, = use_channels_last(model, x)
        def work():
            evaluate(model, x, y, 64)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        model.train()
        def work():
            for i in range(0, 1024, 128):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x[i:i + 128]), y[i:i + 128]).backward()
                opt.step()
    work()
    r0, t0, n = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        work()
        n += 1
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print((time.perf_counter() - t0) / n, (r1.ru_stime - r0.ru_stime) / n)
""")


def measure(kind: str, malloc: str, seconds: float, copies: int = 1) -> tuple[float, float]:
    """Seconds per unit of work and kernel CPU seconds per unit (the slowest of ``copies``
    processes started together)."""
    env = {**os.environ, "LANDSCAPE_MALLOC": malloc, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WORK, kind, str(seconds)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    results = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            sys.exit(f"{kind} with LANDSCAPE_MALLOC={malloc} failed ({p.returncode})")
        results.append(tuple(float(v) for v in out.split()))
    return max(results)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="best of this many")
    p.add_argument("--seconds", type=float, default=4.0, help="timed seconds per measurement")
    args = p.parse_args(argv)
    cases = {"evaluation, 1,024 images": ("eval", 1), "training, 8 steps of 128": ("train", 1),
             "evaluation, two processes at once": ("eval", 2)}
    best: dict[tuple[str, str], tuple[float, float]] = {}
    for _ in range(args.repeats):
        for name, (kind, copies) in cases.items():
            for malloc in ("system", "keep"):
                got = measure(kind, malloc, args.seconds, copies)
                if (name, malloc) not in best or got < best[(name, malloc)]:
                    best[(name, malloc)] = got
    print(f"{os.cpu_count()} CPUs, 1 torch thread per process, best of {args.repeats}; "
          f"load average before the last repeat: {os.getloadavg()[0]:.1f}")
    print(f"{'work':<36} {'glibc default':>14} {'kept (ours)':>12} {'ratio':>6}   kernel CPU "
          "default / kept")
    for name in cases:
        (d, ds), (k, ks) = best[(name, "system")], best[(name, "keep")]
        print(f"{name:<36} {d * 1e3:>11.1f} ms {k * 1e3:>9.1f} ms {d / k:>5.2f}x   "
              f"{ds * 1e3:.1f} / {ks * 1e3:.1f} ms")
    for malloc, label in (("system", "glibc default"), ("keep", "kept (ours)")):
        one = best[("evaluation, 1,024 images", malloc)][0]
        two = best[("evaluation, two processes at once", malloc)][0]
        print(f"two processes at once vs one alone, {label}: each {two / one:.2f}x slower "
              f"(1.00 = no interference; bounds what 2 shards can gain: {2 * one / two:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
