"""The findings page: one self-contained HTML file (figures embedded) built from tables only.

The page carries a small script that, once every embedded figure has decoded, records the count
on ``<body data-figures-loaded=…>``, so a headless browser can check that every figure loads.
"""

from __future__ import annotations

import base64
import html
import json
import math
import platform
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from .findings import Finding

STAGE_TITLES = {"training": "Training", "curvature": "Curvature", "slices": "Loss landscape",
                "connectivity": "Connectivity", "robustness": "Robustness",
                "generalisation": "Generalisation", "reference": "The original assignment"}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:
1100px;color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:1.6em}.meta{color:#555;font-size:.9em}
ul.findings li{margin:.35em 0}table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}.diff{color:#a40000;font-weight:600}.same{color:#256d1b}
"""

SCRIPT = """
window.addEventListener('load', () => {
  const imgs = Array.from(document.querySelectorAll('figure img'));
  const ok = imgs.filter(img => img.complete && img.naturalWidth > 0).length;
  document.body.dataset.figuresLoaded = String(ok);
  document.body.dataset.figuresTotal = String(imgs.length);
});
"""


def cell(value, digits: int = 4) -> str:
    """A table cell: floats to ``digits`` significant figures, NaN blank."""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.{digits}g}"
    return html.escape(str(value))


def frame_html(df: pd.DataFrame, digits: int = 4, left: tuple[str, ...] = ()) -> str:
    """A DataFrame as an HTML table (string columns left-aligned)."""
    left = set(left) | {c for c in df.columns if df[c].dtype == object}
    head = "".join(f'<th class="{"l" if c in left else ""}">{html.escape(str(c))}</th>'
                   for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        rows.append("<tr>" + "".join(
            f'<td class="{"l" if c in left else ""}">{cell(r[c], digits)}</td>'
            for c in df.columns) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def figure_html(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    mime = "image/svg+xml" if path.suffix == ".svg" else "image/png"
    return (f'<figure><img alt="{html.escape(path.name)}" src="data:{mime};base64,{data}">'
            f"<figcaption>{html.escape(path.name)}</figcaption></figure>")


def page(findings: list[Finding], runs: pd.DataFrame, reference: pd.DataFrame | None,
         figures: list[Path], title: str, study: str,
         sections: list[tuple[str, str, pd.DataFrame]] = (), interactive: str = "") -> str:
    """The whole findings page. ``sections``: extra tables (anchor id, heading, table), shown
    after the run table; ``interactive``: the 3-D surface viewer (``report.surfaces``), shown
    before the figures."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="meta">{html.escape(study)}<br>Generated {stamp} on '
             f"{html.escape(platform.node())} ({html.escape(platform.platform())}, Python "
             f"{platform.python_version()}). Every number and sentence below is computed from "
             "the Parquet tables of this run (results/tables); none is written by hand.</p>"]
    by_stage: dict[str, list[Finding]] = {}
    for f in findings:
        by_stage.setdefault(f.stage, []).append(f)
    parts.append('<h2 id="findings">Findings</h2>')
    for stage, items in by_stage.items():
        parts.append(f"<h3>{html.escape(STAGE_TITLES.get(stage, stage))}</h3>")
        parts.append('<ul class="findings">' + "".join(
            f'<li data-key="{html.escape(f.key)}" data-numbers="'
            f'{html.escape(json.dumps(f.numbers, sort_keys=True, default=float))}">'
            f"{html.escape(f.text)}</li>" for f in items) + "</ul>")
    parts.append('<h2 id="runs">Runs</h2>')
    if "rho" in runs and (runs["rho"] == 0).all():  # ρ, the SAM radius: no run has one
        runs = runs.drop(columns="rho")
    parts.append(f'<div style="overflow-x:auto">{frame_html(runs)}</div>')
    for anchor, heading, df in sections:
        if df is not None and not df.empty:
            parts.append(f'<h2 id="{html.escape(anchor)}">{html.escape(heading)}</h2>')
            parts.append(f'<div style="overflow-x:auto">{frame_html(df, left=("measure",))}'
                         "</div>")
    if reference is not None and not reference.empty:
        parts.append('<h2 id="reference">The original assignment, reproduced</h2>')
        parts.append(f'<div style="overflow-x:auto">'
                     f'{frame_html(reference, left=("quantity", "note", "source"))}</div>')
    if interactive:
        parts.append('<h2 id="surfaces">Interactive loss surfaces</h2>')
        parts.append(interactive)
    if figures:
        parts.append('<h2 id="figures">Figures</h2>')
        parts += [figure_html(p) for p in figures]
    body = "\n".join(parts)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>"
            f"{html.escape(title)}</title><style>{CSS}</style></head><body>{body}"
            f"<script>{SCRIPT}</script></body></html>")
