"""Stage: the reference documentation, generated from the code: docs/config.md (every config key,
from the schema) and docs/tables.md (every table's columns, from ``landscape.tables``)."""

from __future__ import annotations

import json
from pathlib import Path

NAME = "docs"
HELP = "print or write (docs/) the config-key and table-schema reference"
DOCS = {"config": "config.md", "tables": "tables.md"}
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
}


def add_arguments(p) -> None:
    p.add_argument("what", choices=["tables", "config", "write"],
                   help="print the tables or config reference, or write both into --docs")
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


def generated(what: str, schema: str | None = None) -> str:
    """The Markdown of ``what`` (config or tables), header included."""
    if what == "tables":
        from ..schemas import describe

        return HEADERS["tables"] + describe().strip() + "\n"
    from ..schema import load_schema

    return HEADERS["config"] + config_markdown(load_schema(schema)) + "\n"


def write_docs(folder: str | Path, schema: str | None = None) -> list[Path]:
    """Write docs/config.md and docs/tables.md; return the files that changed."""
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
