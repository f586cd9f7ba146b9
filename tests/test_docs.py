"""The README's generated reference blocks match the code (schema and table definitions)."""

import re

from landscape.stages.docs import generated

from .conftest import REPO


def block(text: str, what: str) -> str:
    m = re.search(rf"<!-- {what}:start -->\n(.*?)\n<!-- {what}:end -->", text, re.S)
    assert m, f"README has no generated {what} block"
    return m.group(1)


def test_readme_reference_is_current():
    text = (REPO / "README.md").read_text()
    for what in ("config", "tables"):
        assert block(text, what) == generated(what), \
            f"README {what} block is stale: run `python -m landscape docs readme`"


def test_environment_yml_lists_the_core_packages():
    import yaml

    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = " ".join(d for d in env["dependencies"] if isinstance(d, str))
    for pkg in ("python=3.11", "pytorch", "torchvision", "snakemake", "pandas", "pyarrow",
                "matplotlib", "numpy", "scipy"):
        assert pkg in deps, pkg
    assert any(isinstance(d, dict) and "-e ." in d.get("pip", []) for d in env["dependencies"])
