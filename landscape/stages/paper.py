"""Stage: the LaTeX report (results/report.tex) from the findings, tables and figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from ..schemas import report as _tables  # noqa: F401  registers the findings table read here
from ..tables import read_table

NAME = "paper"
HELP = ("write the LaTeX report (questions, methods with references, the generated findings, "
        "booktabs tables, vector figures) from the study's tables and figures")


def add_arguments(p) -> None:
    p.add_argument("--findings", required=True, help="findings table (findings.parquet)")
    p.add_argument("--runs", required=True, help="runs table")
    p.add_argument("--table", action="append", default=[], metavar="NAME=PATH",
                   help="a gathered table summarised in the report (correlations, barriers)")
    p.add_argument("--figures", nargs="*", default=[],
                   help="figures (under <results>/figures/, PDF or PNG) in page order")
    p.add_argument("--captions", default="workflow/report",
                   help="folder of the figures' captions (reStructuredText, Jinja-templated)")
    p.add_argument("--config", default="{}", help="JSON of the study's config (for captions)")
    p.add_argument("--title", default="Loss-landscape study: report")
    p.add_argument("--study", default="", help="one line describing the study")
    p.add_argument("--out", required=True, help="the report (.tex), beside figures/")


def declarations() -> list[tuple[re.Pattern, str, str, bool]]:
    """(pattern of a figure's path under figures/ without extension, caption file, category,
    per-run) for every figure a plot stage declares (``landscape.registry.plots``)."""
    from ..registry import plots

    out = []
    for plot in plots():
        for file, caption, category, *_ in plot.figures.values():
            out.append((re.compile(re.escape(file.rsplit(".", 1)[0]) + "$"), caption, category,
                        False))
        for file, caption, category, *_ in plot.per_run.values():
            stem = re.escape(file.rsplit(".", 1)[0]).replace(re.escape("{run}"), "(?P<run>.+)")
            out.append((re.compile(stem + "$"), caption, category, True))
    return out


def render_caption(path: Path, config: dict) -> str:
    """A caption file as Snakemake's report renders it (Jinja with ``snakemake.config``)."""
    from types import SimpleNamespace

    from jinja2 import Template

    return Template(path.read_text(encoding="utf-8")).render(
        snakemake=SimpleNamespace(config=config))


def figures(paths: list[str], out: Path, captions: Path, config: dict):
    from ..report.latex import Figure

    decl = declarations()
    found = []
    for p in paths:
        rel = Path(p).resolve().relative_to(out.resolve().parent)
        stem = str(rel.with_suffix("")).split("figures/", 1)[-1]
        for pattern, caption, category, per_run in decl:
            m = pattern.match(stem)
            if m:
                found.append(Figure(path=rel.as_posix(), caption=render_caption(
                    captions / caption, config), category=category,
                    run=m.group("run") if per_run else None))
                break
        else:
            raise ValueError(f"figure {p} is declared by no plot stage (PLOTS)")
    return found


def barrier_summary(barriers: pd.DataFrame | None) -> pd.DataFrame | None:
    """Median (and range over pairs) of the loss barrier per path and split."""
    if barriers is None or barriers.empty:
        return None
    g = barriers.groupby(["method", "split"], sort=False)["loss_barrier"]
    out = g.agg(median="median", low="min", high="max", pairs="count").reset_index()
    return out.rename(columns={"median": "median loss barrier", "low": "min", "high": "max"})


def run(args) -> None:
    from ..io import atomic_path
    from ..report.latex import Escaper, document, run_summary
    from .findings import measure_summary

    tables = dict(t.split("=", 1) for t in args.table)
    loaded = {name: read_table(path, name) for name, path in tables.items()}
    findings = read_table(args.findings, "findings")
    runs = read_table(args.runs, "runs")
    from ..schema import with_defaults

    config = with_defaults(json.loads(args.config))  # the captions read defaults too
    out = Path(args.out)
    figs = figures(args.figures, out, Path(args.captions), config)
    extra = {"sgd": [("The runs of this study (final weights; accuracies on the whole training "
                      "and test sets).", run_summary(runs))],
             "generalisation": [("Every measure against the generalisation gap (Kendall τ with "
                                 "its bootstrap interval, unadjusted and Holm-adjusted p, "
                                 "granulated Ψ).", measure_summary(loaded.get("correlations")))],
             "connectivity": [("Loss barriers by path over the pairs (nats).",
                               barrier_summary(loaded.get("barriers")))]}
    esc = Escaper()
    text = document(findings, runs, figs, args.title, args.study, extra, esc)
    if esc.unmapped:
        print(f"warning: characters without a LaTeX form were replaced by '?': "
              f"{''.join(sorted(esc.unmapped))}")
    with atomic_path(out) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    per_run = sum(f.run is not None for f in figs)
    print(f"wrote {out}: {len(findings)} findings, {len(figs) - per_run} figures "
          f"(+{per_run} per run)")
