"""Turning a validated config into the study's runs, and the code each stage depends on.

The study is a *run table* (``run_table``): one row per training run, indexed by run id, with
its hyper-parameters as columns, built once from the config. Rules and stages look a run up by
its id (``runs.loc[run, "model"]``), the way Snakemake workflows look up samples in a sample
sheet; a run id is a key, never a string to parse back.

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

import pandas as pd

PACKAGE_DIR = Path(__file__).resolve().parent
HPARAMS = ("model", "optimizer", "rho", "lr", "batch_size", "weight_decay", "seed")
# The sharpness-aware optimisers and the study key that lists their ascent radii ρ: each radius
# is a run of its own. ρ belongs to the optimiser: plain SGD and Adam runs have ρ = 0 (SAM with
# ρ = 0 is its base SGD), so comparing optimisers compares (optimizer, ρ) together.
SAM_RADII = {"sam": "sam_rho", "asam": "asam_rho"}


def run_id(model: str, optimizer: str, lr: float, batch_size: int, weight_decay: float,
           seed: int, rho: float = 0.0) -> str:
    """The run identifier used in paths and tables (a key of the run table); a SAM or ASAM run
    names its radius after the optimiser (``cnn_sam_rho0.05_lr0.1_…``)."""
    opt = f"{optimizer}_rho{rho:g}" if optimizer in SAM_RADII else optimizer
    return f"{model}_{opt}_lr{lr:g}_bs{batch_size}_wd{weight_decay:g}_s{seed}"


def varying_with(varying) -> set[str]:
    """The hyper-parameters that vary when those in ``varying`` do: ρ varies with the optimiser
    (an SGD run, ρ = 0, pairs with a SAM run of any radius)."""
    varying = {varying} if isinstance(varying, str) else set(varying)
    return varying | ({"rho"} if "optimizer" in varying else set())


def varied_hparams(runs: pd.DataFrame, hparams=HPARAMS) -> list[str]:
    """The ``hparams`` that take more than one value over ``runs``; ρ only where an optimiser
    has several radii (with one radius per optimiser, the optimiser says it all)."""
    varied = [h for h in hparams if h in runs and runs[h].nunique(dropna=False) > 1]
    if "rho" in varied and "optimizer" in varied and \
            runs.groupby("optimizer")["rho"].nunique().max() == 1:
        varied.remove("rho")
    return varied


def fixed_with(varying) -> list[str]:
    """The hyper-parameters held fixed when those in ``varying`` vary (``varying_with``)."""
    return [h for h in HPARAMS if h not in varying_with(varying)]


def run_table(config: dict) -> pd.DataFrame:
    """One row per run of the study grid (index ``run``; columns ``HPARAMS``), stable order.

    ``config`` is a validated config (``landscape.config.validate``): every study key is present.
    """
    s = config["study"]
    opts = [(o, float(rho)) for o in s["optimizer"]
            for rho in (s[SAM_RADII[o]] if o in SAM_RADII else [0.0])]
    combos = itertools.product(s["model"], opts, s["lr"], s["batch_size"], s["weight_decay"],
                               s["seed"])
    rows = [{"model": m, "optimizer": o, "rho": rho, "lr": float(lr), "batch_size": int(bs),
             "weight_decay": float(wd), "seed": int(seed)}
            for m, (o, rho), lr, bs, wd, seed in combos]
    df = pd.DataFrame(rows, columns=list(HPARAMS))
    df.index = pd.Index([run_id(**r) for r in rows], name="run")
    if df.index.has_duplicates:
        dup = df.index[df.index.duplicated()][0]
        raise ValueError(f"study: two runs share the id {dup!r} (values equal after formatting)")
    return df


def study_runs(config: dict) -> list[str]:
    """Run ids of every combination of the study grid, in a stable order."""
    return list(run_table(config).index)


def run_hparams(runs: pd.DataFrame, run: str) -> dict:
    """The hyper-parameters of ``run`` as plain Python values; ConfigError names unknown runs."""
    if run not in runs.index:
        from .errors import ConfigError

        raise ConfigError(f"run {run!r} is not in the study (it has {len(runs)} runs, e.g. "
                       f"{list(runs.index[:3])})")
    row = runs.loc[run]
    return {"model": str(row["model"]), "optimizer": str(row["optimizer"]),
            "rho": float(row["rho"]), "lr": float(row["lr"]), "batch_size": int(row["batch_size"]),
            "weight_decay": float(row["weight_decay"]), "seed": int(row["seed"])}


def train_params(config: dict, runs: pd.DataFrame, run: str) -> dict:
    """Everything a training job of ``run`` depends on: its hyper-parameters, the ``train``
    section and its model's options (so editing ``models.cnn_bn`` reruns only cnn_bn runs). A
    SAM radius is a hyper-parameter (``rho``): adding one to ``study.sam_rho`` adds its runs."""
    hp = run_hparams(runs, run)
    return {**hp, **config["train"], "model_options": config["models"].get(hp["model"], {})}


def runs_with_seeds(runs: pd.DataFrame, seeds, key: str = "seeds") -> list[str]:
    """Run ids whose seed is in ``seeds`` (``None``: the first seed of the study), in order.
    Raises ValueError naming the config ``key`` and the seeds that are not in the study."""
    study_seeds = list(dict.fromkeys(int(s) for s in runs["seed"]))
    chosen = study_seeds[:1] if seeds is None else [int(s) for s in seeds]
    bad = [s for s in chosen if s not in study_seeds]
    if bad:
        raise ValueError(f"{key} = {bad} is not allowed: expected seeds of the study "
                         f"{study_seeds}")
    return list(runs.index[runs["seed"].isin(chosen)])


def _module_file(module: str) -> Path | None:
    rel = module.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*rel)
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


@cache
def _imports(path: Path, module: str) -> frozenset[str]:
    """The landscape modules that ``module`` (at ``path``) imports; parsed once per process
    (every rule asks for its stage's sources at each Snakemake start)."""
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
    return frozenset(found)


def sources(*modules: str) -> tuple[str, ...]:
    """Paths of the landscape source files that ``modules`` import, transitively.

    ``modules`` are names relative to the package, e.g. ``"stages.train"``. Every import counts
    (function-local ones too) and so does every package ``__init__.py`` above an imported module
    (Python runs it first); the package root's, which holds only the version, is left out.
    Paths are relative to
    the working directory when the package lies inside it (a checkout: Snakemake's records then
    survive moving or copying the project folder), absolute otherwise (an installed package).
    """
    return tuple(sorted(_workdir_relative(p) for p in _source_files(modules)))


@cache
def _source_files(modules: tuple[str, ...]) -> frozenset[Path]:
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
        # importing a.b.c runs a/b/__init__.py first: a package's own imports count too
        parts = mod.split(".")
        todo.extend(".".join(parts[:i]) for i in range(2, len(parts)))
    return frozenset(seen.values()) - {PACKAGE_DIR / "__init__.py"}


def _workdir_relative(path: Path) -> str:
    here = Path.cwd().resolve()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)


def use_this_python() -> None:
    """Put this interpreter's folder first on PATH, so `python -m landscape` in rules runs it."""
    here = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != here:
        os.environ["PATH"] = os.pathsep.join([here, os.environ.get("PATH", "")])
