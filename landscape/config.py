"""Configuration validation: JSON schema with defaults, and one-line errors.

``validate(config, schema_path)`` returns the config with defaults filled in, or raises
``ConfigError`` whose message is one line naming the key, the value and what is allowed.
Unknown keys are errors. Checks that a schema cannot express (cross-key rules) follow.

Layering: this module sits above ``study`` and the registry, which calls each stage's cross-key
checks (STAGE ``checks``: ``slicespec``, ``connectivity.pairs``); they, and the algorithm
modules, take defaults from the leaf module ``landscape.schema`` and raise
``landscape.errors.ConfigError``, never importing this module.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import yaml

from .errors import ConfigError
from .schema import SCHEMA_PATH, defaults, fill_defaults, load_schema, with_defaults

__all__ = ["SCHEMA_PATH", "ConfigError", "defaults", "load", "load_schema", "validate",
           "with_defaults"]

def _key(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _subschema(schema: dict, path) -> dict:
    node = schema
    for p in path:
        if isinstance(p, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(p, {})
    return node


def _allowed(err: jsonschema.ValidationError) -> str:
    v, s = err.validator, err.schema
    if v == "enum":
        return f"one of {s['enum']}"
    if v == "type":
        return f"type {s['type']}" if isinstance(s["type"], str) else f"one of types {s['type']}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        parts = []
        for k, sym in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                       ("exclusiveMaximum", "<")):
            if k in s:
                parts.append(f"{sym} {s[k]}")
        return "a value " + " and ".join(parts)
    if v == "minItems":
        return f"a list of at least {s['minItems']} item(s)"
    if v == "maxItems":
        return f"a list of at most {s['maxItems']} item(s)"
    if v == "uniqueItems":
        return "a list without repeated values"
    if v == "required":
        return f"the keys {s['required']}"
    return err.message


def _one_line(err: jsonschema.ValidationError, schema: dict) -> str:
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        unknown = sorted(set(err.instance) - set(allowed))
        base = _key(err.absolute_path)
        where = ", ".join(f"{base + '.' if err.absolute_path else ''}{u}" for u in unknown)
        return f"unknown key {where}; allowed keys here are {allowed}"
    if err.validator == "required":
        missing = [k for k in err.schema["required"] if k not in err.instance]
        where = list(err.absolute_path) + [missing[0]]
        desc = _subschema(schema, where).get("description", "")
        return f"{_key(where)} is missing; it is required ({desc})"
    desc = _subschema(schema, err.absolute_path).get("description", "")
    return (f"{_key(err.absolute_path)} = {json.dumps(err.instance)} is not allowed: expected "
            f"{_allowed(err)}" + (f" ({desc})" if desc else ""))


def _cross_checks(cfg: dict) -> None:
    """Rules that involve several keys, or that the schema cannot express: the study's own here,
    each stage's in its module (STAGE ``checks``, called through the registry)."""
    from .registry import check_config
    from .study import run_table

    runs = run_table(cfg)
    study = cfg.get("study", {})
    tr = cfg.get("data", {}).get("train_size")
    for bs in study.get("batch_size", []):
        if tr is not None and bs > tr:
            raise ConfigError(f"study.batch_size = {bs} is not allowed: expected at most "
                              f"data.train_size = {tr}")
    check_config(cfg, runs)  # slices: grids and seeds; connectivity: pairs, spawn steps


# Keys that moved: the old name stops with a line that says where it went.
MOVED = {("train", "sam_rho"): "study.sam_rho (a list: each radius is a run)",
         ("train", "asam_rho"): "study.asam_rho (a list: each radius is a run)"}


def validate(config: dict, schema_path: str | Path | None = None) -> dict:
    """Validate ``config`` (defaults filled in); raise ConfigError with a one-line message."""
    for (section, key), where in MOVED.items():
        if isinstance(config.get(section), dict) and key in config[section]:
            raise ConfigError(f"config error: {section}.{key} = "
                              f"{json.dumps(config[section][key])} has moved: write it as "
                              f"{where}")
    schema = load_schema(schema_path)
    cfg = copy.deepcopy(dict(config))
    fill_defaults(cfg, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), str(e.path)))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        raise ConfigError("config error: " + _one_line(err, schema))
    try:
        _cross_checks(cfg)
    except ConfigError as exc:
        if not str(exc).startswith("config error"):
            raise ConfigError(f"config error: {exc}") from None
        raise
    return cfg


def load(path: str | Path, schema_path: str | Path | None = None) -> dict:
    """Read a YAML config file and validate it."""
    with open(path) as fh:
        cfg = yaml.safe_load(fh) or {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"config error: {path} must hold a mapping of keys, "
                          f"got {type(cfg).__name__}")
    return validate(cfg, schema_path)
