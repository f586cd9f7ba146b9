"""Command-line entry: ``python -m landscape <stage> ...`` (also the ``landscape`` script).

Each module in ``landscape.stages`` is one stage; it defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args)``. Stages are discovered automatically.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import torch

from . import stages


def _stage_modules():
    for info in sorted(pkgutil.iter_modules(stages.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{stages.__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="landscape", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for mod in _stage_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        p.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (default: torch's choice)")
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        args.func(args)
    except (RuntimeError, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"landscape {args.stage}: error: {exc}", file=sys.stderr)
        return 1
    return 0
