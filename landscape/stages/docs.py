"""Stage: the reference documentation, generated from the code: docs/config.md (every config key,
from the schema), docs/tables.md (every table's columns, from ``landscape.schemas``) and
docs/stages.md (every measurement of the stage registry, ``landscape.registry``)."""

from __future__ import annotations

import json
from pathlib import Path

NAME = "docs"
HELP = "print or write (docs/) the config-key, table-schema and stage reference"
DOCS = {"config": "config.md", "tables": "tables.md", "stages": "stages.md"}
HEADERS = {
    "config": "# Configuration keys\n\nGenerated from `landscape/config.schema.yaml` by "
              "`python -m landscape docs write`; do not edit. Every key is validated before any "
              "job runs; unknown keys are errors. Defaults are filled in when a key is left "
              "out.\n\n",
    "tables": "# Tables\n\nGenerated from `landscape/schemas/` by `python -m landscape docs "
              "write`; do not edit. Every stage writes Parquet with exactly these columns and "
              "types; each file stores its table name and a content checksum in its metadata, "
              "verified on read. Row keys (unique, the sort order of gathered tables) are listed "
              "under each table.\n\n",
    "stages": "# Measurements\n\nGenerated from the stage registry (`STAGE = {...}` in "
              "`landscape/stages/*.py`, read by `landscape/registry.py`) by `python -m landscape "
              "docs write`; do not edit. Each row is one computing rule of "
              "`workflow/rules/measure.smk` (plus its `gather_<stage>` rule), in study order; a "
              "job gets only the config keys listed, so a change to any other key reruns "
              "nothing of it. Any stage runs without Snakemake: `python -m landscape <command> "
              "--in NAME=PATH … --out TABLE=PATH … [--job KEY=VALUE …] --params JSON`.\n\n",
}


def add_arguments(p) -> None:
    p.add_argument("what", choices=[*DOCS, "write"],
                   help="print one reference, or write all of them into --docs")
    p.add_argument("--docs", default="docs", help="folder the reference is written to")
    p.add_argument("--schema", default=None, help="config schema (default: the package's)")


def config_markdown(schema: dict) -> str:
    lines = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]

    def allowed(s: dict) -> str:
        if "items" in s:
            return "list of " + allowed(s["items"]) if allowed(s["items"]) else "list"
        parts = []
        if "enum" in s:
            parts.append(" / ".join(map(str, s["enum"])))
        for k, sym in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤")):
            if k in s:
                parts.append(f"{sym} {s[k]}")
        return ", ".join(parts)

    def walk(node: dict, prefix: str) -> None:
        for key, sub in node.get("properties", {}).items():
            path = f"{prefix}{key}"
            typ = sub.get("type", "")
            typ = " or ".join(typ) if isinstance(typ, list) else typ
            if typ == "object" and sub.get("properties"):
                walk(sub, f"{path}.")
                continue
            default = (json.dumps(sub["default"], ensure_ascii=False) if "default" in sub
                       else ("required" if key in node.get("required", []) else ""))
            lines.append(f"| `{path}` | {typ} | `{default}` | {allowed(sub)} | "
                         f"{sub.get('description', '')} |")

    walk(schema, "")
    return "\n".join(lines)


def _input(m, name: str) -> str:
    if name in m.conditions:
        value, key = m.conditions[name]
        return f"`{name}` (when `{key}` holds {value})"
    return f"`{name}`"


def stages_markdown() -> str:
    from ..registry import measurements, plots

    per = {"run": "run", "run_shard": "run × shard", "pair": "pair of runs",
           "spawn": "run × spawn step", "study": "study"}
    lines = ["| rule | command | one job per | reads | writes | config keys | SLURM | findings |",
             "|---|---|---|---|---|---|---|---|"]
    for m in measurements():
        keys = ("—" if m.section is None else
                f"`{m.section}`" + (": " + ", ".join(m.keys) if m.keys else "")
                + (f" (not {', '.join(m.drop)})" if m.drop else ""))
        extra = [f"runs: `{m.runs}`"] if m.runs else []
        extra += [f"on when `{m.enabled}`"] if m.enabled else []
        slurm = ", ".join([f"group {m.group}"] * bool(m.group)
                          + [f"{k} {v}" for k, v in m.resources.items()]) or "local"
        lines.append(f"| `{m.name}` | `{m.command}` | {per[m.per]} | "
                     f"{', '.join(_input(m, i) for i in m.inputs)} | "
                     f"{', '.join(f'`{t}`' for t in (*m.tables, *m.files.values()))} | "
                     f"{'; '.join([keys, *extra])} | {slurm} | "
                     f"{', '.join(f'`{f}`' for f in m.findings) or '—'} |")
    lines += ["", "## Figures", "",
              "One rule per entry of a plot stage's `PLOTS` (`landscape/stages/plot_*.py`), in "
              "findings-page order; a figure is drawn when every table it reads is made.", "",
              "| rule | command | reads | draws |", "|---|---|---|---|"]
    for p in plots():
        figs = [f"`{name}`" for name, _, _ in p.figures.values()]
        figs += [f"`{pattern}` per run of `{p.runs_of}`" for pattern, *_ in p.per_run.values()]
        lines.append(f"| `{p.rule}` | `{p.command}` | "
                     f"{', '.join(f'`{t}`' for t in p.tables.values())} | {', '.join(figs)} |")
    return "\n".join(lines)


def describe() -> str:
    """Markdown description of every schema in study order: the training tables, then each
    measurement's (``landscape.registry`` order, the stage that writes it named), then the
    report's."""
    from ..registry import tables as writers
    from ..schemas import load_all
    from ..tables import _FAMILY, SCHEMAS, SORT_KEYS

    load_all()
    stage = writers()
    rank = {n: i for i, n in enumerate(dict.fromkeys(m.name for m in stage.values()))}

    def order(name):
        fam = _FAMILY[name].rsplit(".", 1)[-1]
        if name in stage:
            return 1, rank[stage[name].name]
        return (0 if fam == "training" else 2), 0

    lines = []
    for name in sorted(SCHEMAS, key=order):  # stable: registration order within a stage
        key = ", ".join(f"`{k}`" for k in SORT_KEYS[name])
        written = f"Written by: `{stage[name].name}`. " if name in stage else ""
        lines.append(f"## `{name}`\n\n{written}Row key: {key}\n\n| column | type | meaning |\n"
                     "|---|---|---|")
        lines += [f"| `{c.name}` | {c.dtype} | {c.doc} |" for c in SCHEMAS[name]]
        lines.append("")
    return "\n".join(lines)


def generated(what: str, schema: str | None = None) -> str:
    """The Markdown of ``what`` (config, tables or stages), header included."""
    if what == "stages":
        return HEADERS["stages"] + stages_markdown() + "\n"
    if what == "tables":
        return HEADERS["tables"] + describe().strip() + "\n"
    from ..schema import load_schema

    return HEADERS["config"] + config_markdown(load_schema(schema)) + "\n"


def write_docs(folder: str | Path, schema: str | None = None) -> list[Path]:
    """Write every reference of ``DOCS`` into ``folder``; return the files that changed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    changed = []
    for what, name in DOCS.items():
        path = folder / name
        text = generated(what, schema)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed


def run(args) -> None:
    if args.what == "write":
        changed = write_docs(args.docs, args.schema)
        print(f"{args.docs}: " + (", ".join(p.name for p in changed) + " updated" if changed
                                  else "already up to date"))
    else:
        print(generated(args.what, args.schema), end="")
