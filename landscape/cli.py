"""Command-line entry: ``python -m landscape <stage> ...`` (also the ``landscape`` script).

Each module in ``landscape.stages`` is one stage; it defines ``HELP`` and either a registered
measurement (``STAGE`` and ``measure(job)``: ``landscape.registry``; its command line and run are
``landscape/stages/_runner.py``'s) or ``add_arguments(parser)`` and ``run(args)``. Only the
requested stage's module is imported, so a job pays for the imports its stage needs and no more.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback

from . import stages
from .allocator import keep_freed_memory
from .errors import UserError


def stage_names() -> dict[str, str]:
    """Command name → module name of every stage."""
    return {info.name.replace("_", "-"): info.name
            for info in pkgutil.iter_modules(stages.__path__) if not info.name.startswith("_")}


def _load(module: str):
    return importlib.import_module(f"{stages.__name__}.{module}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser for every stage, or for stage ``only`` (which imports only that module)."""
    parser = argparse.ArgumentParser(prog="landscape", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, module in sorted(stage_names().items()):
        if only is not None and name != only:
            continue
        mod = _load(module)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        p.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (default: torch's choice)")
        if hasattr(mod, "STAGE"):  # a registered measurement: the generic runner
            from functools import partial

            from .stages import _runner

            _runner.add_arguments(p, mod)
            p.set_defaults(func=partial(_runner.run, mod))
        else:
            mod.add_arguments(p)
            p.set_defaults(func=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the program itself (not a call from Python): a fork server may run it
        from .forkclient import submit

        argv = sys.argv[1:]
        rc = submit(argv)
        if rc is not None:
            return rc
    only = argv[0] if argv and argv[0] in stage_names() else None
    args = build_parser(only).parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        keep_freed_memory()  # before the stage allocates: see landscape/allocator.py
        args.func(args)
    except (UserError, FileNotFoundError, FloatingPointError) as exc:
        # config, data, corrupt files, non-finite numbers: the message says what to fix
        print(f"landscape {args.stage}: error: {exc}", file=sys.stderr)
        return 1
    except Exception:  # a bug: keep the whole traceback in the job's log
        traceback.print_exc()
        print(f"landscape {args.stage}: unexpected error (traceback above)", file=sys.stderr)
        return 2
    return 0
