"""The package's import graph has no cycle, and its layers point one way.

Every import counts, function-local ones included (they are how a cycle hides): the graph is
read from the source with ``ast``, the same way the workflow derives each job's code inputs
(``landscape.study.sources``), so a cycle here would also widen those inputs.
"""

from __future__ import annotations

from landscape.study import PACKAGE_DIR, _imports, _module_file

REPO = PACKAGE_DIR.parent


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR).with_suffix("")
        parts = ["landscape", *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        module = ".".join(parts)
        graph[module] = {m for m in _imports(path, module) if _module_file(m) is not None
                         and m != "landscape"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_detector_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    assert cycles(import_graph()) == []


def test_config_validation_sits_above_study_and_algorithms():
    graph = import_graph()
    # leaves: the schema's defaults and the user errors import no other landscape module
    assert graph["landscape.schema"] == set()
    assert graph["landscape.errors"] == set()
    # nothing in the package imports the validation module except the CLI entry points that
    # validate a whole config (none today: the workflow calls it); study, slices, connectivity,
    # curvature and training take defaults from landscape.schema instead
    importers = sorted(m for m, deps in graph.items() if "landscape.config" in deps)
    assert importers == []


def test_slurm_groups_come_from_the_registry_not_the_profiles():
    """The rules carry their STAGE's group (workflow/rules/measure.smk; switched on by the
    profile's group-components, tests/test_slurm.py plans it), so the default SLURM profile lists
    no groups; slurm-large only regroups the slice stages (a job per shard)."""
    import yaml

    from landscape.registry import measurements

    grouped = {m.name for m in measurements() if m.group}
    assert {"hessian", "sharpness", "robustness", "slice_shard"} <= grouped
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert "groups" not in profile and "geometry_{run}=1000" in profile["group-components"]
    large = yaml.safe_load((REPO / "workflow/profiles/slurm-large/config.yaml").read_text())
    assert {g.split("=")[0] for g in large["groups"]} == {"slice_directions", "slice_shard"}
    measure = (REPO / "workflow/rules/measure.smk").read_text()
    assert "group: slurm_group(_m.group) if _m.group else None" in measure


def test_cross_key_checks_live_with_their_stages_and_the_registry_calls_them(monkeypatch):
    """config.validate holds only the study's own rule; each stage declares its cross-key
    checks in STAGE and the registry calls every one once (a stage whose section is absent is
    not checked)."""
    import importlib

    import yaml

    from landscape import registry
    from landscape.config import validate

    declared = {r for m in registry.measurements() for r in m.checks}
    assert declared == {"slicespec:check_config", "connectivity.pairs:check_config"}
    calls = []
    for ref in declared:
        module, function = ref.split(":")
        mod = importlib.import_module(f"landscape.{module}")
        real = getattr(mod, function)
        monkeypatch.setattr(mod, function,
                            lambda cfg, runs, real=real, ref=ref: (calls.append(ref),
                                                                   real(cfg, runs)))
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate(config)
    assert sorted(calls) == sorted(declared)
    calls.clear()
    config["slices"]["seeds"] = [99]
    import pytest

    from landscape.errors import ConfigError

    with pytest.raises(ConfigError, match=r"slices\.seeds"):
        validate(config)
    assert "slicespec:check_config" in calls
