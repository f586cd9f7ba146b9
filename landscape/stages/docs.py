"""Stage: print the table schemas and the config keys as Markdown (the README's reference)."""

from __future__ import annotations

import json
import re
from pathlib import Path

NAME = "docs"
HELP = "print the Parquet table schemas and the config keys as Markdown"


def add_arguments(p) -> None:
    p.add_argument("what", choices=["tables", "config", "readme"],
                   help="print the tables or config reference, or update README's blocks")
    p.add_argument("--readme", default="README.md", help="README to update (with `readme`)")
    p.add_argument("--schema", default=None, help="config schema (default: the repository's)")


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
    if what == "tables":
        from ..tables import describe

        return describe().strip()
    from ..config import load_schema

    return config_markdown(load_schema(schema))


def update_readme(path: str | Path, schema: str | None = None) -> bool:
    """Rewrite the generated blocks of a README in place; True if something changed."""
    path = Path(path)
    text = path.read_text()
    new = text
    for what in ("config", "tables"):
        block = f"<!-- {what}:start -->\n{generated(what, schema)}\n<!-- {what}:end -->"
        new = re.sub(rf"<!-- {what}:start -->.*?<!-- {what}:end -->", lambda _, b=block: b, new,
                     flags=re.S)
    if new != text:
        path.write_text(new)
    return new != text


def run(args) -> None:
    if args.what == "readme":
        changed = update_readme(args.readme, args.schema)
        print(f"{args.readme}: {'updated' if changed else 'already up to date'}")
    else:
        print(generated(args.what, args.schema))
