"""Every table's schema, one module per stage family.

A module here declares its tables with ``landscape.tables.register`` (name, row key, columns) and
is imported by the modules that write or read them; the workflow derives each job's code inputs
from those imports, so editing one family's schema reruns the stages that use it and nothing
else. ``load_all`` imports every family (the generated docs, the gather stage); it imports them
by name so that importing this package adds none of them to a job's code inputs.
"""

from __future__ import annotations

import importlib

from ..tables import _FAMILY, SCHEMAS, SORT_KEYS

FAMILIES = ("training", "slices", "hessian", "connectivity", "robustness", "generalisation",
            "report")


def load_all() -> None:
    """Import every family module (registering every table)."""
    for family in FAMILIES:
        importlib.import_module(f"{__name__}.{family}")


def family_of(table: str) -> str:
    """The family whose module declares ``table`` (every family is imported to find it)."""
    load_all()
    if table not in _FAMILY:
        raise KeyError(f"no table {table!r} in landscape/schemas/ (families {list(FAMILIES)})")
    return _FAMILY[table].rsplit(".", 1)[-1]


def describe() -> str:
    """Markdown description of every schema, family by family."""
    load_all()
    order = {f"{__name__}.{f}": i for i, f in enumerate(FAMILIES)}
    names = sorted(SCHEMAS, key=lambda n: order.get(_FAMILY[n], len(order)))  # stable
    lines = []
    for name in names:
        key = ", ".join(f"`{k}`" for k in SORT_KEYS[name])
        lines.append(f"## `{name}`\n\nRow key: {key}\n\n| column | type | meaning |\n"
                     "|---|---|---|")
        lines += [f"| `{c.name}` | {c.dtype} | {c.doc} |" for c in SCHEMAS[name]]
        lines.append("")
    return "\n".join(lines)
