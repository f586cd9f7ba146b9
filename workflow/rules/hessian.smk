# Curvature: Hessian of the mean loss over an evaluation set, model in eval mode.
#   hessian   (per run) checkpoint -> hessian/{run}/{eigs,trace,density}.parquet
#   sharpness (per run) snapshots  -> hessian/{run}/sharpness.parquet
#   gather_hessian (one job)       -> tables/hessian_{eigs,trace,density}, sharpness_trajectory
#   plot_hessian                   -> figures/hessian_{density,generalisation,sharpness}.png
# The two per-run rules get only the config slice they use, so changing `hessian.sharpness`
# reruns only the sharpness jobs and changing `hessian.eigs/trace/density` only the hessian jobs.
HESSIAN_TABLES = {
    "eigs": "hessian_eigs",
    "trace": "hessian_trace",
    "density": "hessian_density",
    "repeats": "curvature_repeats",
    "sharpness": "sharpness_trajectory",
}
# The config slices the per-run rules depend on (values, not functions: this file holds rules).
_HESSIAN_COMMON = ["eval_split", "eval_size", "eval_seed", "batch_size", "hvp_method",
                   "max_cache_mb", "seed"]
HESSIAN_PARAMS = as_json({k: config["hessian"][k]
                          for k in _HESSIAN_COMMON + ["eigs", "trace", "density", "repeats"]})
SHARPNESS_PARAMS = as_json({k: config["hessian"][k] for k in _HESSIAN_COMMON + ["sharpness"]})
HESSIAN_OUTPUTS = [f"{RES}/tables/{t}.parquet" for t in HESSIAN_TABLES.values()] + [
    f"{RES}/figures/hessian_{name}.png" for name in ("density", "generalisation", "sharpness")
]


rule hessian:
    input:
        data=f"{RES}/data/fashion_mnist.pt",
        checkpoint=f"{RES}/runs/{{run}}/checkpoint.pt",
        code=src("hessian"),
    output:
        eigs=f"{RES}/hessian/{{run}}/eigs.parquet",
        trace=f"{RES}/hessian/{{run}}/trace.parquet",
        density=f"{RES}/hessian/{{run}}/density.parquet",
        repeats=f"{RES}/hessian/{{run}}/repeats.parquet",
    params:
        hessian=HESSIAN_PARAMS,
        device=config["device"],
    conda:
        ENV
    log:
        f"{RES}/logs/hessian/{{run}}.log",
    benchmark:
        f"{RES}/benchmarks/hessian/{{run}}.tsv"
    threads: 1
    resources:
        gpu=GPUS,
    shell:
        "python -m landscape hessian --threads {threads} --data {input.data}"
        " --checkpoint {input.checkpoint} --params {params.hessian:q} --device {params.device}"
        " --out-eigs {output.eigs} --out-trace {output.trace} --out-density {output.density}"
        " --out-repeats {output.repeats} > {log} 2>&1"


rule sharpness:
    input:
        data=f"{RES}/data/fashion_mnist.pt",
        snapshots=f"{RES}/runs/{{run}}/snapshots.pt",
        code=src("sharpness"),
    output:
        f"{RES}/hessian/{{run}}/sharpness.parquet",
    params:
        hessian=SHARPNESS_PARAMS,
        device=config["device"],
    conda:
        ENV
    log:
        f"{RES}/logs/hessian/{{run}}_sharpness.log",
    benchmark:
        f"{RES}/benchmarks/hessian/{{run}}_sharpness.tsv"
    threads: 1
    resources:
        gpu=GPUS,
    shell:
        "python -m landscape sharpness --threads {threads} --data {input.data}"
        " --snapshots {input.snapshots} --params {params.hessian:q} --device {params.device}"
        " --out {output} > {log} 2>&1"


rule gather_hessian:
    input:
        **{part: expand(f"{RES}/hessian/{{run}}/{part}.parquet", run=RUNS)
           for part in HESSIAN_TABLES},
        code=gather_src("hessian"),
    output:
        **{part: f"{RES}/tables/{table}.parquet" for part, table in HESSIAN_TABLES.items()},
    conda:
        ENV
    log:
        f"{RES}/logs/gather_hessian.log",
    shell:
        "python -m landscape gather"
        " --table hessian_eigs --out {output.eigs} --inputs {input.eigs}"
        " --table hessian_trace --out {output.trace} --inputs {input.trace}"
        " --table hessian_density --out {output.density} --inputs {input.density}"
        " --table sharpness_trajectory --out {output.sharpness} --inputs {input.sharpness}"
        " --table curvature_repeats --out {output.repeats} --inputs {input.repeats}"
        " > {log} 2>&1"


rule plot_hessian:
    input:
        eigs=f"{RES}/tables/hessian_eigs.parquet",
        trace=f"{RES}/tables/hessian_trace.parquet",
        density=f"{RES}/tables/hessian_density.parquet",
        sharpness=f"{RES}/tables/sharpness_trajectory.parquet",
        runs=f"{RES}/tables/runs.parquet",
        code=src("plot_hessian"),
    output:
        density=report(
            f"{RES}/figures/hessian_density.png",
            caption="../report/hessian_density.rst",
            category="Curvature",
        ),
        generalisation=report(
            f"{RES}/figures/hessian_generalisation.png",
            caption="../report/hessian_generalisation.rst",
            category="Curvature",
        ),
        sharpness=report(
            f"{RES}/figures/hessian_sharpness.png",
            caption="../report/hessian_sharpness.rst",
            category="Curvature",
        ),
        vectors=vector_copies(
            *(f"{RES}/figures/hessian_{f}.png" for f in ("density", "generalisation", "sharpness"))
        ),
    params:
        plots=as_json(config["plots"]),
    conda:
        ENV
    log:
        f"{RES}/logs/plot_hessian.log",
    shell:
        "python -m landscape plot-hessian --eigs {input.eigs} --trace {input.trace}"
        " --density {input.density} --sharpness {input.sharpness} --runs {input.runs}"
        " --params {params.plots:q} --out-density {output.density}"
        " --out-generalisation {output.generalisation} --out-sharpness {output.sharpness}"
        " > {log} 2>&1"
