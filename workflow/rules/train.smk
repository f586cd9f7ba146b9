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


rule plot_training:
    input:
        training=f"{RES}/tables/training.parquet",
        runs=f"{RES}/tables/runs.parquet",
        code=src("plot_training"),
    output:
        curves=report(
            f"{RES}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
        ),
        hparams=report(
            f"{RES}/figures/final_vs_hparams.png",
            caption="../report/final_vs_hparams.rst",
            category="Training",
        ),
        vectors=vector_copies(*TRAINING_FIGURES),
    params:
        plots=as_json(config["plots"]),
    conda:
        ENV
    log:
        f"{RES}/logs/plot_training.log",
    shell:
        "python -m landscape plot-training --training {input.training} --runs {input.runs}"
        " --params {params.plots:q} --curves {output.curves} --hparams {output.hparams}"
        " > {log} 2>&1"
