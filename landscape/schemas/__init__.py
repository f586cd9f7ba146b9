"""Every table's schema, one module per stage family.

A module here declares its tables with ``landscape.tables.register`` (name, row key, columns) and
is imported by the modules that write or read them; the workflow derives each job's code inputs
from those imports, so editing one family's schema reruns the stages that use it and nothing
else. ``load_all`` imports every family (the generated docs, the gather stage); it imports them
by name so that importing this package adds none of them to a job's code inputs.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..tables import _FAMILY

# Every module of this package, in a stable order: the training and report families first and
# last, the rest (one per stage family, a new measurement's included) by name between them.
_FOUND = sorted(i.name for i in pkgutil.iter_modules(__path__) if not i.name.startswith("_"))
FAMILIES = tuple(["training"] + [f for f in _FOUND if f not in ("training", "report")]
                 + ["report"])


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
