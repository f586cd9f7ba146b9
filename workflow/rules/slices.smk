# Loss-landscape slices: 1-D and 2-D slices with filter-normalised random directions,
# the init→final line and the trajectory-PCA plane (Li et al., 2018).
#   slice_directions (per run)  -> runs/{run}/slices/plan.pt, pca_variance.parquet
#   slice_shard (per run, shard) -> runs/{run}/slices/shard{shard}of{shards}/*.parquet
#   gather_slices                -> tables/slice_1d, slice_2d, trajectory_projection, pca_variance
#   plot_slices                  -> figures/slices_*.png, figures/slices/{contour,surface}_{run}.png
SLICE_RUNS = seed_runs("slices")  # config cross-checks (odd grids, ...) ran in validate()
SLICE_SHARDS = config["slices"]["shards"]
SLICE_EVAL_KEYS = ["train_size", "test_size", "subset_seed", "batch_size", "channels_last",
                   "recompute_bn"]
SLICE_TABLES = {"one_d": "slice_1d", "two_d": "slice_2d", "trajectory": "trajectory_projection"}


wildcard_constraints:
    shard=r"\d+",
    shards=r"\d+",


# The part of `slices` that shapes directions and grids (a change reruns everything), and the
# part that shapes evaluation (a change reruns only the shards).
SLICE_PLAN_PARAMS = as_json({k: v for k, v in config["slices"].items()
                             if k not in {*SLICE_EVAL_KEYS, "seeds", "shards"}})
SLICE_EVAL_PARAMS = as_json({k: config["slices"][k] for k in SLICE_EVAL_KEYS})
SLICE_SHARD_FILES = {
    key: [f"{RES}/runs/{run}/slices/shard{i}of{SLICE_SHARDS}/{table}.parquet"
          for run in SLICE_RUNS for i in range(SLICE_SHARDS)]
    for key, table in SLICE_TABLES.items()
}
SLICE_RUN_FIGURES = {kind: [f"{RES}/figures/slices/{kind}_{run}.png" for run in SLICE_RUNS]
                     for kind in ("contour", "surface")}
SLICE_OUTPUTS = (
    [f"{RES}/tables/{t}.parquet" for t in (*SLICE_TABLES.values(), "pca_variance")]
    + [f"{RES}/figures/slices_1d.png", f"{RES}/figures/slices_multiples.png"]
    + SLICE_RUN_FIGURES["contour"] + SLICE_RUN_FIGURES["surface"]
)


rule slice_directions:
    input:
        checkpoint=f"{RES}/runs/{{run}}/checkpoint.pt",
        snapshots=f"{RES}/runs/{{run}}/snapshots.pt",
        code=src("slice_directions"),
    output:
        plan=f"{RES}/runs/{{run}}/slices/plan.pt",
        pca=f"{RES}/runs/{{run}}/slices/pca_variance.parquet",
    params:
        slices=SLICE_PLAN_PARAMS,
    conda:
        ENV
    log:
        f"{RES}/logs/slices/{{run}}_directions.log",
    threads: 1
    resources:
        gpu=GPUS,
    shell:
        "python -m landscape slice-directions --threads {threads} --checkpoint {input.checkpoint}"
        " --snapshots {input.snapshots} --params {params.slices:q} --out {output.plan}"
        " --pca {output.pca} > {log} 2>&1"


rule slice_shard:
    input:
        data=f"{RES}/data/fashion_mnist.pt",
        checkpoint=f"{RES}/runs/{{run}}/checkpoint.pt",
        plan=f"{RES}/runs/{{run}}/slices/plan.pt",
        code=src("slices"),
    output:
        **{key: f"{RES}/runs/{{run}}/slices/shard{{shard}}of{{shards}}/{table}.parquet"
           for key, table in SLICE_TABLES.items()},
    params:
        slices=SLICE_EVAL_PARAMS,
        device=config["device"],
    conda:
        ENV
    log:
        f"{RES}/logs/slices/{{run}}_shard{{shard}}of{{shards}}.log",
    benchmark:
        f"{RES}/benchmarks/slices/{{run}}_shard{{shard}}of{{shards}}.tsv"
    threads: 1
    resources:
        gpu=GPUS,
    shell:
        "python -m landscape slices --threads {threads} --data {input.data}"
        " --checkpoint {input.checkpoint} --plan {input.plan} --params {params.slices:q}"
        " --device {params.device} --shard {wildcards.shard} --shards {wildcards.shards}"
        " --out-1d {output.one_d} --out-2d {output.two_d} --out-trajectory {output.trajectory}"
        " --no-progress > {log} 2>&1"


rule gather_slices:
    input:
        **SLICE_SHARD_FILES,
        pca=expand(f"{RES}/runs/{{run}}/slices/pca_variance.parquet", run=SLICE_RUNS),
        code=gather_src("slices"),
    output:
        **{key: f"{RES}/tables/{table}.parquet" for key, table in SLICE_TABLES.items()},
        pca=f"{RES}/tables/pca_variance.parquet",
    conda:
        ENV
    log:
        f"{RES}/logs/gather_slices.log",
    shell:
        "python -m landscape gather"
        " --table slice_1d --out {output.one_d} --inputs {input.one_d}"
        " --table slice_2d --out {output.two_d} --inputs {input.two_d}"
        " --table trajectory_projection --out {output.trajectory} --inputs {input.trajectory}"
        " --table pca_variance --out {output.pca} --inputs {input.pca}"
        " > {log} 2>&1"


rule plot_slices:
    input:
        slice_1d=f"{RES}/tables/slice_1d.parquet",
        slice_2d=f"{RES}/tables/slice_2d.parquet",
        trajectory=f"{RES}/tables/trajectory_projection.parquet",
        pca=f"{RES}/tables/pca_variance.parquet",
        runs=f"{RES}/tables/runs.parquet",
        code=src("plot_slices"),
    output:
        curves=report(
            f"{RES}/figures/slices_1d.png",
            caption="../report/slice_1d.rst",
            category="Loss landscape",
        ),
        multiples=report(
            f"{RES}/figures/slices_multiples.png",
            caption="../report/slice_multiples.rst",
            category="Loss landscape",
        ),
        contours=[
            report(f, caption="../report/slice_contour.rst", category="Loss landscape",
                   subcategory="contours")
            for f in SLICE_RUN_FIGURES["contour"]
        ],
        surfaces=[
            report(f, caption="../report/slice_surface.rst", category="Loss landscape",
                   subcategory="surfaces")
            for f in SLICE_RUN_FIGURES["surface"]
        ],
        vectors=vector_copies(
            f"{RES}/figures/slices_1d.png",
            f"{RES}/figures/slices_multiples.png",
            *SLICE_RUN_FIGURES["contour"],
            *SLICE_RUN_FIGURES["surface"],
        ),
    params:
        plots=as_json(config["plots"]),
        runs=" ".join(SLICE_RUNS),
    conda:
        ENV
    log:
        f"{RES}/logs/plot_slices.log",
    shell:
        "python -m landscape plot-slices --slice-1d {input.slice_1d} --slice-2d {input.slice_2d}"
        " --trajectory {input.trajectory} --pca {input.pca} --runs {input.runs}"
        " --params {params.plots:q} --curves {output.curves} --multiples {output.multiples}"
        " --run-ids {params.runs} --contours {output.contours} --surfaces {output.surfaces}"
        " > {log} 2>&1"
