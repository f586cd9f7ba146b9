# Runs that a geometry stage skipped (a diverged run), with the reason, in one table.
GEOMETRY_TABLES = [
    f
    for f in stage_targets(*STAGES)
    if f.endswith(".parquet")
]


rule collect_skipped:
    input:
        tables=GEOMETRY_TABLES,
        code=src("collect_skipped"),
    output:
        f"{RES}/tables/skipped.parquet",
    conda:
        ENV
    log:
        f"{RES}/logs/collect_skipped.log",
    shell:
        "python -m landscape collect-skipped --out {output} {input.tables} > {log} 2>&1"
