"""The stage registry: every measurement declares itself once, in its own module.

A measurement is a module of ``landscape/stages/`` with a literal ``STAGE = {...}`` dict (read
here with ``ast``, so the workflow learns the whole registry without importing torch) and a
function ``measure(job) -> {table: DataFrame}`` that the generic runner
(``landscape/stages/_runner.py``) calls. ``workflow/rules/measure.smk`` defines the computing
rule, the gather rule and the targets of each measurement by looping over ``measurements()``;
the findings page, the skip records, the docs and the SLURM groups read the same list. Adding a
measurement is one stage module plus the schema module of its tables; nothing else is edited.

``STAGE`` keys (only ``tables`` is required):

* ``per``: the job key. ``run`` (one job per run; the default), ``run_shard`` (per run and
  shard of ``shards``), ``pair`` (per connectivity pair), ``spawn`` (per run and spawn step) or
  ``study`` (one job reading gathered tables, writing study tables directly).
* ``section``: the config section (dotted: a sub-section) given to the job as ``--params``
  (null: none); ``keys``:
  the keys of it the job depends on (dotted keys reach into sub-sections; default: all) and
  ``drop``: keys left out. A change to any other key reruns nothing of this stage.
* ``runs``: a config key holding seeds (``slices.seeds``) that selects the runs measured
  (default: every run); ``enabled``: a boolean config key that switches the stage on;
  ``shards``: the config key holding the shard count (``per: run_shard``).
* ``inputs``: what a job reads: ``data``, ``checkpoint``, ``snapshots`` (the run's),
  ``checkpoint_a``/``checkpoint_b`` (the pair's runs), ``<stage>.<file>`` (a file output of
  another stage for the same run) or ``table:<name>`` (a gathered table). ``"<input> if <value>
  in <config key>"`` makes an input conditional: read (and waited for) only when the list at
  the key holds the value, e.g. ``"hessian.eigvecs if hessian in slices.planes"``.
* ``tables``: the tables one job writes (``landscape/schemas/`` declares their columns);
  ``files``: other outputs, key → file name (e.g. a slice plan).
* ``rule``: the rule name (default: the module name); ``group``: the SLURM group of the
  run's jobs (``geometry``: one SLURM job per run); ``resources``: SLURM sizing
  (``mem_mb``, ``runtime`` in minutes), measured with scripts/resources_from_benchmarks.py.
* ``findings``: ``"<module>:<function>"`` entries (module relative to the package, e.g.
  ``report.findings:finding_matrices``): each takes the dict of the study's tables and returns
  ``Finding`` rows; the findings page calls them, in stage order, when the stage's tables exist.
* ``checks``: ``"<module>:<function>"`` entries: cross-key config rules of this stage that
  the schema cannot express (e.g. ``slicespec:check_config``: grid sizes, ranges, seeds of
  runs that exist). Each takes ``(config, runs)`` (the run table) and raises ``ConfigError``
  with one line; ``check_config`` below calls every stage's, once each, before any job runs.
* ``order``: position in the study's stage order (figures, findings; default 100).
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

STAGES_DIR = Path(__file__).resolve().parent / "stages"
PER = ("run", "run_shard", "pair", "spawn", "study")
# The job-key part of a per-job path, per kind of job key (Snakemake wildcards).
JOB_DIR = {"run": "{run}", "run_shard": "{run}/shard{shard}of{shards}", "pair": "{pair}",
           "spawn": "{run}/step{spawn_step}", "study": ""}
# Per-run inputs (relative to the results folder).
RUN_INPUTS = {"data": "data/fashion_mnist.pt", "checkpoint": "runs/{run}/checkpoint.pt",
              "snapshots": "runs/{run}/snapshots.pt"}
_KEYS = {"per", "section", "keys", "drop", "runs", "enabled", "shards", "inputs", "tables",
         "files", "rule", "group", "resources", "order", "help", "findings",
         "checks"}


class RegistryError(ValueError):
    """A stage module's STAGE declaration is malformed."""


@dataclass(frozen=True)
class Measurement:
    """One stage's declaration (see the module docstring for each field)."""

    module: str  # module name in landscape/stages/
    tables: tuple[str, ...]
    per: str = "run"
    section: str | None = None
    keys: tuple[str, ...] | None = None
    drop: tuple[str, ...] = ()
    runs: str | None = None
    enabled: str | None = None
    shards: str | None = None
    inputs: tuple[str, ...] = ()
    conditions: dict = field(default_factory=dict)  # input → (value, config key)
    files: dict = field(default_factory=dict)
    rule: str = ""
    group: str | None = None
    resources: dict = field(default_factory=dict)
    findings: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    order: int = 100

    @property
    def name(self) -> str:
        """The rule name (``rule``, default the module name)."""
        return self.rule or self.module

    @property
    def command(self) -> str:
        """The ``python -m landscape`` subcommand."""
        return self.module.replace("_", "-")

    @property
    def job_dir(self) -> str:
        return JOB_DIR[self.per]

    def output(self, results: str, table: str) -> str:
        """Path pattern of one job's ``table`` (a study-level stage writes the study table)."""
        if self.per == "study":
            return f"{results}/tables/{table}.parquet"
        return f"{results}/{self.module}/{self.job_dir}/{table}.parquet"

    def file(self, results: str, key: str) -> str:
        return f"{results}/{self.module}/{self.job_dir}/{self.files[key]}"

    def log(self, results: str) -> str:
        return f"{results}/logs/{self.module}/{self.job_dir or self.module}.log"

    def benchmark(self, results: str) -> str:
        return f"{results}/benchmarks/{self.module}/{self.job_dir or self.module}.tsv"


def _literal_stage(path: Path) -> dict | None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "STAGE"):
            try:
                return ast.literal_eval(node.value)
            except ValueError as exc:
                raise RegistryError(f"{path}: STAGE must be a literal dict ({exc})") from None
    return None


def _parse(module: str, raw: dict, path: Path) -> Measurement:
    where = f"{path}: STAGE"
    if not isinstance(raw, dict):
        raise RegistryError(f"{where} must be a dict, got {type(raw).__name__}")
    unknown = set(raw) - _KEYS
    if unknown:
        raise RegistryError(f"{where} has unknown key(s) {sorted(unknown)}; allowed: "
                            f"{sorted(_KEYS)}")
    if not raw.get("tables"):
        raise RegistryError(f"{where}['tables'] is required: the tables one job writes")
    per = raw.get("per", "run")
    if per not in PER:
        raise RegistryError(f"{where}['per'] = {per!r} is not allowed: expected one of {PER}")
    for kind in ("findings", "checks"):
        bad = [f for f in raw.get(kind, ()) if f.count(":") != 1]
        if bad:
            raise RegistryError(f"{where}['{kind}'] has {bad}: expected '<module>:<function>'")
    if per == "run_shard" and not raw.get("shards"):
        raise RegistryError(f"{where}: per 'run_shard' needs 'shards' (the config key of the "
                            "shard count)")
    names, conditions = [], {}
    for entry in raw.get("inputs", ()):
        inp, sep, cond = entry.partition(" if ")
        if sep:
            value, sep2, key = cond.partition(" in ")
            if not sep2 or not value or not key:
                raise RegistryError(f"{where}['inputs'] has {entry!r}: a condition reads "
                                    "'<input> if <value> in <config key>'")
            conditions[inp] = (value, key)
        names.append(inp)
    for inp in names:
        ok = (inp in RUN_INPUTS or inp.startswith("table:") or "." in inp
              or (per == "pair" and inp in ("checkpoint_a", "checkpoint_b")))
        if not ok:
            raise RegistryError(f"{where}['inputs'] has {inp!r}: expected one of "
                                f"{sorted(RUN_INPUTS)}, checkpoint_a/checkpoint_b (per pair), "
                                "'<stage>.<file>' or 'table:<name>'")
    tup = lambda k: tuple(raw[k]) if raw.get(k) is not None else None  # noqa: E731
    return Measurement(module=module, tables=tuple(raw["tables"]), per=per,
                       section=raw.get("section"), keys=tup("keys"), drop=tup("drop") or (),
                       runs=raw.get("runs"), enabled=raw.get("enabled"),
                       shards=raw.get("shards"), inputs=tuple(names), conditions=conditions,
                       files=dict(raw.get("files", {})), rule=raw.get("rule", ""),
                       group=raw.get("group"), resources=dict(raw.get("resources", {})),
                       findings=tuple(raw.get("findings", ())),
                       checks=tuple(raw.get("checks", ())), order=int(raw.get("order", 100)))


@cache
def measurements() -> tuple[Measurement, ...]:
    """Every declared measurement, in study order (``order``, then module name)."""
    found = []
    for path in sorted(STAGES_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        raw = _literal_stage(path)
        if raw is not None:
            found.append(_parse(path.stem, raw, path))
    names = [m.name for m in found]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise RegistryError(f"two stages declare the rule name(s) {sorted(dup)}")
    return tuple(sorted(found, key=lambda m: (m.order, m.module)))


def by_module(module: str) -> Measurement:
    for m in measurements():
        if m.module == module:
            return m
    raise KeyError(f"no measurement {module!r} in landscape/stages/")


def lookup(config: dict, dotted: str):
    """``config['a']['b']`` for ``'a.b'``."""
    value = config
    for part in dotted.split("."):
        value = value[part]
    return value


def params(m: Measurement, config: dict) -> dict:
    """The part of ``m.section`` the stage's jobs depend on (its ``--params``)."""
    if m.section is None:
        return {}
    section = lookup(config, m.section)
    if m.keys is None:
        return {k: v for k, v in section.items() if k not in m.drop}
    out: dict = {}
    for key in m.keys:
        head, *rest = key.split(".")
        if rest:
            out.setdefault(head, {})[".".join(rest)] = lookup(section, key)
        else:
            out[key] = section[key]
    return out


def enabled(m: Measurement, config: dict) -> bool:
    return bool(lookup(config, m.enabled)) if m.enabled else True


def jobs(m: Measurement, config: dict, runs, pairs, spawns, seed_runs) -> list[dict]:
    """The wildcards of every job of ``m`` in this study. ``runs``: the run ids; ``pairs``: the
    pair ids; ``spawns``: (run, step) tuples; ``seed_runs(key)``: the runs whose seed is listed
    at config key ``key``."""
    if not enabled(m, config):
        return []
    chosen = seed_runs(m.runs) if m.runs else list(runs)
    if m.per == "run":
        return [{"run": r} for r in chosen]
    if m.per == "run_shard":
        n = int(lookup(config, m.shards))
        return [{"run": r, "shard": str(i), "shards": str(n)} for r in chosen for i in range(n)]
    if m.per == "pair":
        return [{"pair": p} for p in pairs]
    if m.per == "spawn":
        return [{"run": r, "spawn_step": str(s)} for r, s in spawns]
    return [{}]  # study: one job


def wanted(m: Measurement, inp: str, config: dict | None) -> bool:
    """Whether the study reads input ``inp`` of ``m`` (a conditional one only when the config
    list at its key holds its value; every input when ``config`` is None)."""
    if config is None or inp not in m.conditions:
        return True
    value, key = m.conditions[inp]
    return value in lookup(config, key)


def inputs(m: Measurement, results: str, config: dict | None = None) -> dict[str, str]:
    """Input name → path pattern (wildcards of the job key) of the inputs this study reads
    (``wanted``); pair checkpoints are looked up by the workflow (their run is a column of the
    pair table, not a wildcard)."""
    out = {}
    for inp in m.inputs:
        if not wanted(m, inp, config):
            continue
        if inp in RUN_INPUTS:
            out[inp] = f"{results}/{RUN_INPUTS[inp]}"
        elif inp.startswith("table:"):
            out[inp] = f"{results}/tables/{inp[len('table:'):]}.parquet"
        elif "." in inp:
            stage, key = inp.split(".", 1)
            out[inp] = by_module(stage).file(results, key)
    return out


def tables() -> dict[str, Measurement]:
    """Table name → the measurement that writes it."""
    return {t: m for m in measurements() for t in m.tables}


SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"


@cache
def schema_modules() -> dict[str, str]:
    """Table name → the module of ``landscape/schemas/`` that registers it (``register("name",
    ...)`` calls, read with ``ast``: the workflow learns it without importing anything)."""
    found = {}
    for path in sorted(SCHEMAS_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                found[node.args[0].value] = f"schemas.{path.stem}"
    return found


@dataclass(frozen=True)
class Plot:
    """One figure rule, declared in its plot stage's ``PLOTS = [{...}]`` (read with ``ast``):
    ``tables`` (CLI flag → gathered table), ``figures`` (CLI flag → [file under figures/,
    caption under workflow/report/, report category]), optionally ``per_run`` (CLI flag → [file
    pattern with {run}, caption, category, subcategory], one figure per run of the measurement
    ``runs_of``, whose ids go to the flag ``run_ids``), ``rule`` (default: the module name) and
    ``order`` (position on the findings page)."""

    module: str
    rule: str
    tables: dict
    figures: dict
    per_run: dict = field(default_factory=dict)
    runs_of: str | None = None
    run_ids: str | None = None
    order: int = 100

    @property
    def command(self) -> str:
        return self.module.replace("_", "-")


_PLOT_KEYS = {"rule", "tables", "figures", "per_run", "runs_of", "run_ids", "order"}


@cache
def plots() -> tuple[Plot, ...]:
    """Every declared figure rule, in findings-page order."""
    found = []
    for path in sorted(STAGES_DIR.glob("plot_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and getattr(node.targets[0], "id", None) == "PLOTS"):
                for raw in ast.literal_eval(node.value):
                    unknown = set(raw) - _PLOT_KEYS
                    if unknown or not raw.get("tables") or not raw.get("figures"):
                        raise RegistryError(f"{path}: PLOTS entry {raw.get('rule', path.stem)}: "
                                            f"needs tables and figures; unknown {sorted(unknown)}")
                    found.append(Plot(module=path.stem, rule=raw.get("rule", path.stem),
                                      tables=dict(raw["tables"]), figures=dict(raw["figures"]),
                                      per_run=dict(raw.get("per_run", {})),
                                      runs_of=raw.get("runs_of"), run_ids=raw.get("run_ids"),
                                      order=int(raw.get("order", 100))))
    return tuple(sorted(found, key=lambda p: (p.order, p.rule)))


def check_config(config: dict, runs) -> None:
    """Every stage's cross-key config checks (STAGE ``checks``), each function once, for the
    stages whose config section is present; raise ``ConfigError`` at the first violation."""
    done = set()
    for m in measurements():
        if m.section is not None and m.section.split(".")[0] not in config:
            continue
        for ref in m.checks:
            if ref not in done:
                done.add(ref)
                module, function = ref.split(":")
                getattr(importlib.import_module(f"{__package__}.{module}"), function)(config, runs)


def finding_modules() -> list[str]:
    """The modules (relative to the package) that hold the registered findings functions."""
    return sorted({f.split(":")[0] for m in measurements() for f in m.findings})
