# Runs that a measurement skipped (a diverged run), with the reason, in one table.
rule collect_skipped:
    input:
        tables=list(MADE_TABLES.values()),
        code=src("collect_skipped"),
    output:
        f"{RES}/tables/skipped.parquet",
    conda:
        ENV
    log:
        f"{RES}/logs/collect_skipped.log",
    shell:
        "python -m landscape collect-skipped --out {output} {input.tables} > {log} 2>&1"
