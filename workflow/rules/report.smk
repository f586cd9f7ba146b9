# The findings page: statements generated from the gathered tables (never
# typed), a per-run table, the comparison with a published study (report.reference) and every
# figure, in results/findings.html; also a report() item at the top of `snakemake --report`.
FINDINGS_TABLES = {
    "repeats": "curvature_repeats",
    "eigs": "hessian_eigs",
    "sharpness": "sharpness_trajectory",
    "slice_1d": "slice_1d",
    "connectivity": "connectivity",
    "barriers": "barriers",
    "spawn": "spawn_barriers",
    "robustness": "robustness",
    "measures": "measures",
    "correlations": "correlations",
}


localrules:
    findings,


rule findings:
    input:
        runs=f"{RES}/tables/runs.parquet",
        **findings_tables(FINDINGS_TABLES),
        figures=report_figures(),
        reference=findings_reference(),
        code=src("findings"),
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
