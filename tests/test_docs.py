"""The generated reference (docs/) matches the code; the README stays short and true."""

import re

from landscape.stages.docs import DOCS, generated

from .conftest import REPO


def test_docs_reference_is_current():
    for what, name in DOCS.items():
        path = REPO / "docs" / name
        assert path.exists() and path.read_text() == generated(what), \
            f"docs/{name} is stale: run `python -m landscape docs write`"


def test_docs_name_every_key_and_table():
    from landscape.config import load_schema
    from landscape.tables import SCHEMAS

    tables = (REPO / "docs/tables.md").read_text()
    for name in SCHEMAS:
        assert f"## `{name}`" in tables
    config = (REPO / "docs/config.md").read_text()
    for section in load_schema()["properties"]:
        assert f"`{section}" in config


def test_readme_is_short_and_links_resolve():
    text = (REPO / "README.md").read_text()
    assert len(text.encode()) <= 12_500, "keep the README short; reference goes to docs/"
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith(("http://", "https://")):
            assert (REPO / target).exists(), f"README links to a missing file: {target}"


def test_environment_yml_lists_the_core_packages():
    import yaml

    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = " ".join(d for d in env["dependencies"] if isinstance(d, str))
    for pkg in ("python=3.11", "pytorch", "torchvision", "snakemake", "pandas", "pyarrow",
                "matplotlib", "numpy", "scipy"):
        assert pkg in deps, pkg
    assert any(isinstance(d, dict) and "-e ." in d.get("pip", []) for d in env["dependencies"])


def test_code_does_not_cite_issue_numbers():
    """Comments explain the code itself; issue numbers rot once the tracker moves on."""
    pattern = re.compile(r"\(issue\b|\bissue \d+|issue:", re.I)
    offenders = []
    for folder in ("landscape", "workflow", "bench", "scripts", "tests"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in {".py", ".smk", ".yaml", ".rst", ".sh"} or path.name == "Snakefile":
                for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if pattern.search(line) and path.name != "test_docs.py":
                        offenders.append(f"{path.relative_to(REPO)}:{i}")
    assert not offenders, offenders
