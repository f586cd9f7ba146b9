# The findings page: statements generated from the gathered tables (never
# typed), a per-run table, the comparison with a published study (report.reference) and every
# figure, in results/findings.html; also a report() item at the top of `snakemake --report`.
localrules:
    findings,


rule findings:
    input:
        runs=f"{RES}/tables/runs.parquet",
        **MADE_TABLES,  # every table of the study: the page lists them all
        figures=report_figures(),
        reference=findings_reference(),
        # the findings stage and the modules of the findings functions the stages declare
        code=sorted({*src("findings"), *sources(*registry.finding_modules())}),
    output:
        html=report(
            f"{RES}/findings.html",
            caption="../report/findings.rst",
            category="1. Findings",
        ),
        table=f"{RES}/tables/findings.parquet",
    params:
        report=as_json(config["report"]),
        flags=findings_flags,
        study=study_line(),
    conda:
        ENV
    log:
        f"{RES}/logs/findings.log",
    shell:
        "python -m landscape findings --runs {input.runs} {params.flags}"
        " --figures {input.figures} --params {params.report:q} --study {params.study:q}"
        " --out-table {output.table} --out-html {output.html} > {log} 2>&1"


# The report to publish from: results/report.tex (questions, methods with references, the
# generated findings, booktabs tables, the figures: PDF copies when plots.formats has pdf), and
# results/report.pdf where pdfLaTeX is installed (report.pdf: auto) or always (always).
localrules:
    paper,


rule paper:
    input:
        findings=f"{RES}/tables/findings.parquet",
        runs=f"{RES}/tables/runs.parquet",
        **paper_tables(),
        figures=paper_figures(),
        captions=sorted({f"workflow/report/{c}" for p in registry.plots()
                         for d in (p.figures, p.per_run) for _, c, *_ in d.values()}),
        code=src("paper"),
    output:
        f"{RES}/report.tex",
    params:
        config=as_json(config),
        title=config["report"]["title"],
        study=study_line(),
        flags=paper_flags,
    conda:
        ENV
    log:
        f"{RES}/logs/paper.log",
    shell:
        "python -m landscape paper --findings {input.findings} --runs {input.runs} {params.flags}"
        " --figures {input.figures} --captions workflow/report --config {params.config:q}"
        " --title {params.title:q} --study {params.study:q} --out {output} > {log} 2>&1"


rule paper_pdf:
    input:
        tex=f"{RES}/report.tex",
        figures=paper_figures(),
        code=src("paper_pdf"),
    output:
        f"{RES}/report.pdf",
    conda:
        ENV
    log:
        f"{RES}/logs/paper_pdf.log",
    shell:
        "python -m landscape paper-pdf --tex {input.tex} --out {output} > {log} 2>&1"
