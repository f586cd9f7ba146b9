"""The config schema (``config.schema.yaml``, package data) and its defaults.

The schema is the only place defaults are written. This module is a leaf of the package (it
imports no other landscape module), so any layer can complete a partial config section with
``with_defaults`` without importing ``landscape.config``'s validation (which sits above the
study and the stages).
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import yaml

# Package data (so a non-editable install finds it); workflow/schemas/config.schema.yaml links here.
SCHEMA_PATH = Path(__file__).resolve().parent / "config.schema.yaml"


def load_schema(path: str | Path | None = None) -> dict:
    """The package's schema (a copy), or the YAML schema at ``path``."""
    if path is None:
        return copy.deepcopy(_package_schema())
    with open(path) as fh:
        return yaml.safe_load(fh)


@cache
def _package_schema() -> dict:
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def defaults(*section: str) -> dict:
    """The schema's defaults of one config section, e.g. ``defaults("hessian", "eigs")``.

    The schema is the only place defaults are written; code that is handed a partial section
    (tests, library callers) completes it with ``with_defaults``.
    """
    node = _package_schema()
    for key in section:
        try:
            node = node["properties"][key]
        except KeyError:
            raise KeyError(f"no config section {'.'.join(section)!r} in the schema") from None
    out: dict = {}
    fill_defaults(out, node)
    return out


def with_defaults(values: dict | None, *section: str) -> dict:
    """``values`` (a possibly partial config section) with the schema's defaults filled in,
    nested sections included."""
    merged = copy.deepcopy(dict(values or {}))
    node = _package_schema()
    for key in section:
        node = node["properties"][key]
    fill_defaults(merged, node)
    return merged


def fill_defaults(cfg: dict, schema: dict) -> None:
    """Fill ``cfg`` in place with the defaults of ``schema`` (a schema node), recursing into
    nested object sections that ``cfg`` has or that get a default."""
    for key, sub in schema.get("properties", {}).items():
        if key not in cfg and "default" in sub:
            cfg[key] = copy.deepcopy(sub["default"])
        if isinstance(cfg.get(key), dict) and sub.get("type") == "object":
            fill_defaults(cfg[key], sub)
