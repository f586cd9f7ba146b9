rule prepare_data:
    input:
        code=src("prepare_data"),
    output:
        f"{RES}/data/fashion_mnist.pt",
    params:
        data=as_json({**config["data"], "cache_dir": f"{RES}/data/download"}),
    conda:
        ENV
    log:
        f"{RES}/logs/prepare_data.log",
    shell:
        "python -m landscape prepare-data --params {params.data:q} --out {output} > {log} 2>&1"
