rule train:
    input:
        data=f"{RES}/data/fashion_mnist.pt",
        code=src("train"),
    output:
        checkpoint=f"{RES}/runs/{{run}}/checkpoint.pt",
        snapshots=f"{RES}/runs/{{run}}/snapshots.pt",
        metrics=f"{RES}/runs/{{run}}/metrics.parquet",
        summary=f"{RES}/runs/{{run}}/run.parquet",
    params:
        train=run_train_params,
        device=config["device"],
        out=run_folder,
    conda:
        ENV
    log:
        f"{RES}/logs/train/{{run}}.log",
    benchmark:
        f"{RES}/benchmarks/train/{{run}}.tsv"
    threads: 1
    resources:
        gpu=GPUS,
        mem_mb=2000,  # SLURM sizing, measured (workflow/profiles/slurm/config.yaml says how)
        runtime=11,
        cpus_per_task=1,
    shell:
        "python -m landscape train --threads {threads} --data {input.data}"
        " --params {params.train:q} --device {params.device} --out {params.out} > {log} 2>&1"


rule gather_training:
    input:
        metrics=expand(f"{RES}/runs/{{run}}/metrics.parquet", run=RUNS),
        code=gather_src("training"),
    output:
        f"{RES}/tables/training.parquet",
    conda:
        ENV
    log:
        f"{RES}/logs/gather_training.log",
    shell:
        "python -m landscape gather --table training --out {output} --inputs {input.metrics}"
        " > {log} 2>&1"


rule gather_runs:
    input:
        runs=expand(f"{RES}/runs/{{run}}/run.parquet", run=RUNS),
        code=gather_src("training"),
    output:
        f"{RES}/tables/runs.parquet",
    conda:
        ENV
    log:
        f"{RES}/logs/gather_runs.log",
    shell:
        "python -m landscape gather --table runs --out {output} --inputs {input.runs} > {log} 2>&1"
