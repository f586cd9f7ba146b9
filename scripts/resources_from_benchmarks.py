#!/usr/bin/env python3
"""Suggest SLURM resources per rule from Snakemake benchmark files (measured, not guessed).

Every heavy rule declares ``benchmark: {results_dir}/benchmarks/<stage>/<wildcards>.tsv``;
Snakemake writes one TSV per job with ``s`` (wall seconds), ``max_rss`` (MiB), ``cpu_time`` and
more. This script maps each TSV back to its rule (from the ``benchmark:`` patterns in
workflow/rules/*.smk), takes the worst job per rule and prints what to put under
``set-resources:`` in workflow/profiles/slurm/config.yaml::

    python scripts/resources_from_benchmarks.py results/benchmarks [more benchmark dirs ...]
    python scripts/resources_from_benchmarks.py results/benchmarks --yaml   # profile snippet

Suggestions: ``mem_mb`` = peak RSS × ``--mem-factor`` (default 1.5) + 256 MiB (Python, CUDA
context, page cache of the inputs), rounded up to 100 MiB, at least ``--min-mem``;
``runtime`` (minutes) = longest wall time × ``--time-factor`` (default 3: shared nodes, slower
cores), rounded up, at least ``--min-runtime``; ``cpus_per_task`` = the rule's CPU use
(cpu_time / s) rounded up, at least 1.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RULE_RE = re.compile(r"^rule\s+(\w+)\s*:", re.M)
BENCH_RE = re.compile(r"^\s+benchmark:\s*\n\s+f?[\"']([^\"']+)[\"']", re.M)


def _pattern(rule: str, path: str) -> tuple[str, re.Pattern, int]:
    tail = path.split("benchmarks/", 1)[-1]
    parts = re.split(r"\{\{?\w+\}?\}", tail)
    regex = "[^/]+".join(re.escape(p) for p in parts)
    return rule, re.compile(f"^{regex}$"), sum(map(len, parts))


def rule_patterns(rules_dir: Path) -> list[tuple[str, re.Pattern, int]]:
    """(rule, regex over the path below ``benchmarks/``, literal length) for every rule with a
    ``benchmark:`` written in a .smk file and every measurement of the stage registry (whose
    rules measure.smk makes in a loop: ``Measurement.benchmark``); the most literal pattern
    wins when several match."""
    from landscape import registry

    out = [_pattern(m.name, m.benchmark("")) for m in registry.measurements()]
    for smk in sorted(rules_dir.glob("*.smk")):
        text = smk.read_text()
        starts = [(m.start(), m.group(1)) for m in RULE_RE.finditer(text)] + [(len(text), "")]
        for (a, rule), (b, _) in zip(starts, starts[1:], strict=False):
            m = BENCH_RE.search(text[a:b])
            if m:
                out.append(_pattern(rule, m.group(1)))
    return sorted(out, key=lambda t: -t[2])


def read_benchmarks(dirs: list[Path], patterns) -> dict[str, list[dict]]:
    """Rows of every benchmark file by rule. A job the fork server ran (local runs:
    landscape/forkserver.py) has the thin client's ``max_rss`` and ``cpu_time`` in its
    benchmark file; the server's accounting (forkserver.tsv) has the job's own, which replace
    them (the same matching as ``landscape cost``)."""
    from landscape.cost import forked_execution, read_accounting
    from landscape.forkclient import ACCOUNTING_FILE

    by_rule: dict[str, list[dict]] = {}
    for d in dirs:
        accounted = read_accounting(d)
        for tsv in sorted(d.rglob("*.tsv")):
            rel = tsv.relative_to(d).as_posix()
            if rel == ACCOUNTING_FILE:
                continue
            rule = next((r for r, rx, _ in patterns if rx.match(rel)), None)
            if rule is None:
                print(f"# {tsv}: no rule's benchmark pattern matches; skipped", file=sys.stderr)
                continue
            acc = forked_execution(accounted, d, tsv)
            with tsv.open() as fh:
                for row in csv.DictReader(fh, delimiter="\t"):
                    rec = {k: _num(v) for k, v in row.items()} | {"file": str(tsv)}
                    if acc is not None:
                        rec |= {"max_rss": acc["max_rss_mb"], "cpu_time": acc["cpu_s"]}
                    by_rule.setdefault(rule, []).append(rec)
    return by_rule


def _num(v: str):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def suggest(rows: list[dict], args) -> dict:
    secs = [r["s"] for r in rows if isinstance(r.get("s"), float)]
    rss = [r["max_rss"] for r in rows if isinstance(r.get("max_rss"), float)]
    load = [r["cpu_time"] / r["s"] for r in rows
            if isinstance(r.get("cpu_time"), float) and isinstance(r.get("s"), float) and r["s"]]
    mem = max(args.min_mem, math.ceil((max(rss, default=0) * args.mem_factor + 256) / 100) * 100)
    runtime = max(args.min_runtime, math.ceil(max(secs, default=0) * args.time_factor / 60))
    cpus = max(1, math.ceil(max(load, default=1.0) - 0.15))  # 1.1 cores is one core plus noise
    return {"jobs": len(rows), "max_s": max(secs, default=float("nan")),
            "mean_s": sum(secs) / len(secs) if secs else float("nan"),
            "max_rss": max(rss, default=float("nan")),
            "cpu_load": max(load, default=float("nan")),
            "mem_mb": mem, "runtime": runtime, "cpus_per_task": cpus}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+", type=Path, help="benchmark folders (results/benchmarks)")
    p.add_argument("--rules", type=Path, default=REPO / "workflow" / "rules",
                   help="folder of the workflow's .smk files (for the benchmark patterns)")
    p.add_argument("--mem-factor", type=float, default=1.5)
    p.add_argument("--time-factor", type=float, default=3.0)
    p.add_argument("--min-mem", type=int, default=1000, help="MiB")
    p.add_argument("--min-runtime", type=int, default=5, help="minutes")
    p.add_argument("--yaml", action="store_true", help="print a set-resources: snippet")
    args = p.parse_args(argv)
    patterns = rule_patterns(args.rules)
    missing = [d for d in args.dirs if not d.is_dir()]
    if missing:
        p.error(f"not a folder: {', '.join(map(str, missing))}")
    by_rule = read_benchmarks(args.dirs, patterns)
    if not by_rule:
        print("no benchmark files found", file=sys.stderr)
        return 1
    result = {rule: suggest(rows, args) for rule, rows in sorted(by_rule.items())}
    if args.yaml:
        print(f"# from {sum(s['jobs'] for s in result.values())} benchmark files in "
              f"{', '.join(map(str, args.dirs))}")
        print("set-resources:")
        for rule, s in result.items():
            print(f"  {rule}:  # {s['jobs']} jobs, longest {s['max_s']:.1f} s, "
                  f"peak RSS {s['max_rss']:.0f} MiB")
            for key in ("mem_mb", "runtime", "cpus_per_task"):
                print(f"    {key}: {s[key]}")
        return 0
    print(f"{'rule':<16} {'jobs':>4} {'max s':>8} {'mean s':>8} {'max_rss MiB':>11} "
          f"{'cpu load':>8} | {'mem_mb':>6} {'runtime':>7} {'cpus':>4}")
    for rule, s in result.items():
        print(f"{rule:<16} {s['jobs']:>4} {s['max_s']:>8.1f} {s['mean_s']:>8.1f} "
              f"{s['max_rss']:>11.0f} {s['cpu_load']:>8.2f} | {s['mem_mb']:>6} "
              f"{s['runtime']:>7} {s['cpus_per_task']:>4}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
