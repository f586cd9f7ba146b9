"""Benchmark: do slice shards really speed up one run's grid? (`slices.shards`, issue "Scale").

One run of a tiny study (the default study's ``cnn``, trained briefly) is prepared with
Snakemake in a temporary folder up to its slice plan. Then the run's ``slice_shard`` jobs are
timed exactly as the workflow runs them (the shell commands come from ``snakemake -n -p``, so
any option the rule passes is included):

* ``1 shard, 1 thread``: one process, ``--threads 1`` (the baseline: one core);
* ``1 shard, 2 threads``: one process, ``--threads 2`` (intra-op parallelism instead);
* ``2 shards, 1 thread each``: two processes at once, one per core (``--cores 2``).

It prints wall times (process start to last exit; best of ``--repeats``), the evaluation time
each process reports, the speed-up ``1 shard / 2 shards`` (goal ≥ 1.8× on two free cores) and
the balance of the shards, and checks that the gathered sharded rows equal the unsharded rows
bitwise.

Run:  python bench/bench_shards.py                 (≈ 2-3 min on 2 cores)
      python bench/bench_shards.py --points-2d 9   (quick)
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
TABLES = ("slice_1d", "slice_2d", "trajectory_projection")


def snakemake(workdir: Path, config: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile",
                          str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir),
                          "--configfile", str(config), *args], env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        sys.exit(f"snakemake {' '.join(args)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out.stdout + out.stderr


def write_config(path: Path, results: Path, args, shards: int) -> Path:
    cfg = yaml.safe_load((REPO / "tests" / "smoke.yaml").read_text())
    cfg["results_dir"] = str(results)
    cfg["data"].update(train_size=args.train_images, test_size=1000)
    cfg["study"].update(batch_size=[128])
    cfg["models"] = {"cnn": {"width": 16, "hidden": 64}}  # the default study's model
    cfg["train"].update(epochs=1)
    for stage in ("connectivity", "robustness"):  # other stages: not needed here
        if stage in cfg:
            cfg[stage] = {"enabled": False}
    cfg["slices"].update(shards=shards, train_size=args.eval_size, test_size=args.eval_size,
                         points_1d=21, points_2d=args.points_2d)
    path.write_text(yaml.safe_dump(cfg))
    return path


def shard_commands(workdir: Path, config: Path, results: Path, run: str, shards: int):
    """The shell commands of the run's slice_shard jobs, as the workflow would run them."""
    targets = [str(results / "runs" / run / "slices" / f"shard{i}of{shards}" / "slice_2d.parquet")
               for i in range(shards)]
    text = snakemake(workdir, config, "-n", "-p", "--forcerun", "slice_shard", "--cores", "2",
                     *targets)
    key = "python -m landscape slices "
    cmds = [line[line.index(key):].strip() for line in text.splitlines()
            if key in line and "--shard" in line]
    cmds = list(dict.fromkeys(cmds))
    assert len(cmds) == shards, text[-3000:]
    return cmds


def timed_parallel(cmds: list[str], env: dict) -> tuple[float, list[float], list[float]]:
    """All commands started at once: wall seconds until the last has finished, and each one's
    wall and CPU seconds (user + system, its child processes included)."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["bash", "-c", f"set -euo pipefail; {c}"], env=env)
             for c in cmds]
    wall, cpu = [0.0] * len(procs), [0.0] * len(procs)
    pending = dict(enumerate(procs))
    while pending:
        for i, p in list(pending.items()):
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == 0:
                continue
            p.returncode = os.waitstatus_to_exitcode(status)
            if p.returncode != 0:
                sys.exit(f"command failed ({p.returncode}): {cmds[i]}")
            wall[i], cpu[i] = time.perf_counter() - t0, ru.ru_utime + ru.ru_stime
            del pending[i]
        time.sleep(0.02)
    return max(wall), wall, cpu


def eval_seconds(log: Path) -> float:
    """Evaluation seconds the stage reports in its log (`N points in X s`), NaN if absent."""
    m = re.search(r"points in ([0-9.]+) s", log.read_text(errors="replace")) if log.exists() \
        else None
    return float(m.group(1)) if m else float("nan")


def with_threads(cmd: str, threads: int) -> str:
    return re.sub(r"--threads \d+", f"--threads {threads}", cmd)


def log_of(cmd: str) -> Path:
    return Path(shlex.split(re.search(r"> (\S+) 2>&1", cmd).group(1))[0])


def rows(paths: list[Path], name: str):
    import pandas as pd

    from landscape.tables import read_table

    df = pd.concat([read_table(p, name) for p in paths], ignore_index=True)
    keys = [c for c in ("run", "direction", "plane", "direction_index", "snapshot", "alpha",
                        "beta", "split") if c in df.columns]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points-2d", type=int, default=15, help="grid points per axis (odd)")
    p.add_argument("--eval-size", type=int, default=1024, help="images per split per point")
    p.add_argument("--train-images", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=2, help="best of this many timings")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--workdir", type=Path, help="reuse (or create) this folder instead")
    args = p.parse_args(argv)

    tmp = args.workdir or Path(tempfile.mkdtemp(prefix="bench_shards_"))
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config.yaml", tmp / "config.yaml")  # the Snakefile's base config
    results = tmp / "results"
    one = write_config(tmp / "shards1.yaml", results, args, 1)
    two = write_config(tmp / "shards2.yaml", results, args, 2)
    run = "cnn_sgd_lr0.05_bs128_wd0_s1"
    plan = results / "runs" / run / "slices" / "plan.pt"
    t = time.perf_counter()
    snakemake(tmp, one, "--cores", "2", str(plan))
    print(f"prepared data, one trained run and its slice plan in {time.perf_counter() - t:.0f} s"
          f" ({tmp})")

    env = {**os.environ, "PYTHONPATH": str(REPO),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    base = shard_commands(tmp, one, results, run, 1)
    sharded = shard_commands(tmp, two, results, run, 2)
    for cmd in base + sharded:
        for out in re.findall(r"--out-\S+ (\S+)", cmd):
            Path(out).parent.mkdir(parents=True, exist_ok=True)
        log_of(cmd).parent.mkdir(parents=True, exist_ok=True)

    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    variants = {
        "1 shard, 1 thread": [with_threads(base[0], 1)],
        "1 shard, 2 threads": [with_threads(base[0], 2)],
        "2 shards, 1 thread each": [with_threads(c, 1) for c in sharded],
    }
    best: dict[str, dict] = {}
    for r in range(args.repeats):
        for name, cmds in variants.items():
            wall, each, cpu = timed_parallel(cmds, env)
            evals = [eval_seconds(log_of(c)) for c in cmds]
            if name not in best or wall < best[name]["wall"]:
                best[name] = {"wall": wall, "each": each, "cpu": cpu, "eval": evals}
            print(f"  repeat {r + 1}: {name:<24} {wall:6.1f} s wall  (per process "
                  f"{', '.join(f'{e:.1f}' for e in each)} s wall, "
                  f"{', '.join(f'{c:.1f}' for c in cpu)} s CPU; evaluation "
                  f"{', '.join(f'{e:.1f}' for e in evals)} s)", flush=True)

    # bitwise: the gathered shards equal the unsharded grid
    out_dir = results / "runs" / run / "slices"
    for table in TABLES:
        a = rows([out_dir / "shard0of1" / f"{table}.parquet"], table)
        b = rows([out_dir / f"shard{i}of2" / f"{table}.parquet" for i in range(2)], table)
        if not a.equals(b):
            sys.exit(f"{table}: the sharded rows differ from the unsharded rows")

    n_points = sum(len(rows([out_dir / "shard0of1" / f"{t}.parquet"], t)) for t in TABLES) // 2
    one, thr, two = (best[k] for k in variants)
    print(f"\none run's grid: {n_points} points × (train + test) × {args.eval_size} images, "
          f"cnn width 16; {os.cpu_count()} CPUs; best of {args.repeats}; load average before: "
          f"{load_before}")
    print(f"{'variant':<26} {'wall s':>7} {'CPU s':>7} {'eval s':>7}")
    for name, b in best.items():
        print(f"{name:<26} {b['wall']:>7.1f} {max(b['cpu']):>7.1f} {max(b['eval']):>7.1f}"
              + ("   (per shard: " + " / ".join(f"{w:.1f}" for w in b["each"]) + " s wall, "
                 + " / ".join(f"{e:.1f}" for e in b["eval"]) + " s eval)"
                 if len(b["each"]) > 1 else ""))
    speedup = one["wall"] / two["wall"]
    print(f"speed-up of 2 shards over 1 shard: {speedup:.2f}x wall (goal >= 1.8x); "
          f"evaluation only {max(one['eval']) / max(two['eval']):.2f}x; "
          f"CPU-time bound (two free cores) {max(one['cpu']) / max(two['cpu']):.2f}x; "
          f"2 shards vs 1 shard with 2 threads: {thr['wall'] / two['wall']:.2f}x")
    print(f"shard balance (evaluation seconds, slower / faster): "
          f"{max(two['eval']) / min(two['eval']):.2f}; CPU overhead of sharding "
          f"{sum(two['cpu']) / max(one['cpu']) - 1:+.1%}")
    print("sharded rows equal the unsharded rows bitwise: yes")
    if not (args.keep or args.workdir):
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
