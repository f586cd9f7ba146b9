"""Stage: compile the LaTeX report to PDF (pdfLaTeX, twice)."""

from __future__ import annotations

from pathlib import Path

NAME = "paper-pdf"
HELP = "compile results/report.tex to results/report.pdf with pdfLaTeX"


def add_arguments(p) -> None:
    p.add_argument("--tex", required=True, help="the report (.tex), beside figures/")
    p.add_argument("--engine", default="pdflatex")
    p.add_argument("--out", required=True, help="the PDF")


def run(args) -> None:
    from ..report.latex import compile_pdf

    info = compile_pdf(Path(args.tex), Path(args.out), args.engine)
    print(f"wrote {args.out}: {info['pages']} pages, {len(info['figures'])} figures included")
    for f in info["figures"]:
        print(f"  {f}")
