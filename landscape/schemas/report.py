"""Table schemas of the findings and the skip records (stages/findings.py,
stages/collect_skipped.py).

One ``register`` call per table: name, row key and columns (how and why: ``landscape.schemas``).
"""

from __future__ import annotations

from ..tables import Col, register

register("findings", ["order"], [
    Col("order", "int64", "position on the findings page"),
    Col("stage", "string", "stage the statement is about (training, curvature, …)"),
    Col("key", "string", "stable identifier of the kind of statement"),
    Col("text", "string", "the generated sentence, numbers included"),
    Col("numbers", "string", "JSON of the numbers the sentence rests on (n, p, counts, …)"),
])

register("skipped", ["run", "stage"], [
    Col("run", "string", "run identifier"),
    Col("stage", "string", "stage that skipped the run"),
    Col("reason", "string", "why it was skipped"),
])
