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
