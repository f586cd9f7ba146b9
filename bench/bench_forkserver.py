"""Benchmark: what the fork server saves a whole study (landscape/forkserver.py).

The smoke study (tests/smoke.yaml: 42 jobs, most of them short, so per-job fixed cost weighs
heavily) runs twice from scratch in temporary copies of the repository, with ``--cores 2``:

* ``fresh``: every job a fresh interpreter (``LANDSCAPE_NO_FORK_SERVER=1``: the baseline);
* ``forked``: every job forked from the server Snakemake's ``onstart`` starts.

It prints wall time and CPU time (all processes, the server included) of each, the ratios
``fresh / forked``, the jobs the server ran (its accounting), and checks that every gathered
table and every figure is the same bit for bit (timing columns aside).

Run:  python bench/bench_forkserver.py        (≈ 2 min on 2 cores)
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from landscape.forkserver import ACCOUNTING_FILE, ENV_OFF, ENV_SOCKET  # noqa: E402
from landscape.tables import read_table  # noqa: E402
from tests.test_workflow import copy_repo  # noqa: E402  the tests' copy of the repository

TIME_COLUMNS = {"wall_time", "train_seconds", "seconds"}


def run(repo: Path, forked: bool) -> tuple[float, float]:
    """(wall-s, CPU-s of every process) of the smoke study from scratch in ``repo``."""
    env = {**os.environ, "PYTHONPATH": str(repo), "SLURM_CONF": "/dev/null"}
    env.pop(ENV_SOCKET, None)
    env.pop(ENV_OFF, None)
    if not forked:
        env[ENV_OFF] = "1"
    before, t0 = os.times(), time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile",
                          "tests/smoke.yaml"], cwd=repo, env=env, capture_output=True, text=True)
    wall, after = time.perf_counter() - t0, os.times()
    if out.returncode != 0:
        sys.exit(f"the smoke study failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    cpu = (after.children_user - before.children_user) + \
        (after.children_system - before.children_system)
    return wall, cpu


def same_outputs(a: Path, b: Path) -> list[str]:
    """Tables (timing columns aside) and figures that differ between two results folders."""
    differ = []
    for path in sorted((b / "tables").glob("*.parquet")):
        x, y = read_table(a / "tables" / path.name), read_table(path)
        keep = [c for c in y.columns if c not in TIME_COLUMNS]
        if len(x) != len(y) or any(not x[c].equals(y[c]) for c in keep):
            differ.append(path.name)
    for path in sorted((b / "figures").glob("*.png")):
        if (a / "figures" / path.name).read_bytes() != path.read_bytes():
            differ.append(path.name)
    return differ


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="bench-forkserver-"))
    try:
        times = {}
        for name in ("fresh", "forked"):
            times[name] = run(copy_repo(base / name), forked=name == "forked")
            print(f"{name:>7}: {times[name][0]:6.1f} s wall, {times[name][1]:6.1f} CPU-s",
                  flush=True)
        res = {n: base / n / "results" / "smoke" for n in times}
        with (res["forked"] / "benchmarks" / ACCOUNTING_FILE).open() as fh:
            jobs = list(csv.DictReader(fh, delimiter="\t"))
        print(f"forked jobs: {len(jobs)} (the fresh run's: "
              f"{(res['fresh'] / 'benchmarks' / ACCOUNTING_FILE).exists() and 'some' or 'none'})")
        print(f"ratio fresh / forked: wall {times['fresh'][0] / times['forked'][0]:.2f}×, "
              f"CPU {times['fresh'][1] / times['forked'][1]:.2f}×")
        differ = same_outputs(res["fresh"], res["forked"])
        n = len(list((res["forked"] / "tables").glob("*.parquet")))
        m = len(list((res["forked"] / "figures").glob("*.png")))
        print(f"outputs: {n} tables and {m} figures compared, "
              + (f"DIFFER: {differ}" if differ else "all identical"))
        return 1 if differ else 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
