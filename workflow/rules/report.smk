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
