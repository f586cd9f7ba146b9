"""Turning a validated config into the study's runs, and the code each stage depends on.

Snakemake does not notice edits to imported Python code, so every rule declares the
``landscape`` source files its stage imports (transitively) as inputs: editing
``landscape/hessian.py`` reruns exactly the rules whose stages import it, and what follows.
"""

from __future__ import annotations

import ast
import itertools
import os
import sys
from functools import cache
from pathlib import Path

from .train import run_id

PACKAGE_DIR = Path(__file__).resolve().parent


def study_runs(config: dict) -> list[str]:
    """Run ids of every combination of the study grid, in a stable order."""
    s = config["study"]
    combos = itertools.product(s["model"], s["optimizer"], s["lr"], s["batch_size"],
                               s.get("weight_decay", [0.0]), s["seed"])
    return [run_id(m, o, float(lr), int(bs), float(wd), int(seed))
            for m, o, lr, bs, wd, seed in combos]


def train_params(config: dict, model: str) -> dict:
    """The config slice a training job of ``model`` depends on."""
    return {**config["train"], "model_options": config["models"].get(model, {})}


def _module_file(module: str) -> Path | None:
    rel = module.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*rel)
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text())
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("landscape")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            elif node.module and node.module.startswith("landscape"):
                target = node.module
            else:
                continue
            found.add(target)
            for a in node.names:  # `from . import x` may import submodules
                found.add(f"{target}.{a.name}")
    return found


@cache
def sources(*modules: str) -> tuple[str, ...]:
    """Absolute paths of the landscape source files that ``modules`` import, transitively.

    ``modules`` are names relative to the package, e.g. ``"stages.train"``.
    """
    todo = [f"landscape.{m}" for m in modules]
    seen: dict[str, Path] = {}
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        path = _module_file(mod)
        if path is None:
            continue
        seen[mod] = path
        todo.extend(_imports(path, mod) - set(seen))
    skip = {PACKAGE_DIR / "__init__.py"}
    return tuple(sorted(str(p) for p in set(seen.values()) - skip))


def use_this_python() -> None:
    """Put this interpreter's folder first on PATH, so `python -m landscape` in rules runs it."""
    here = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != here:
        os.environ["PATH"] = os.pathsep.join([here, os.environ.get("PATH", "")])
