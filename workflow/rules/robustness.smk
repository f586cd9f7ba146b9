# Robustness and the generalisation study.
#   robustness (per run)  checkpoint, snapshots -> robustness/{run}/{noise,flatness}.parquet
#   gather_robustness                           -> tables/robustness, flatness
#   generalisation        runs + flatness + robustness + hessian_eigs/trace
#                                               -> tables/measures, correlations, granulated
#   plot_robustness                             -> figures/robustness_noise.png
#   plot_generalisation                         -> figures/generalisation_{measures,correlations}.png
# The per-run rule gets the `robustness` section without `correlations` (changing those reruns
# only the generalisation rule and its figures) and without `enabled` (which only adds or removes
# jobs).
_ROB = config["robustness"]
ROBUSTNESS_PARAMS = as_json({k: v for k, v in _ROB.items()
                             if k not in {"enabled", "correlations"}})
CORRELATION_PARAMS = as_json(_ROB["correlations"])
ROBUSTNESS_TABLES = {"noise": "robustness", "flatness": "flatness"}
GENERALISATION_TABLES = {"measures": "measures", "correlations": "correlations",
                         "granulated": "granulated"}
ROBUSTNESS_FIGURES = {
    "noise": f"{RES}/figures/robustness_noise.png",
    "measures": f"{RES}/figures/generalisation_measures.png",
    "correlations": f"{RES}/figures/generalisation_correlations.png",
}
ROBUSTNESS_OUTPUTS = (
    [f"{RES}/tables/{t}.parquet"
     for t in (*ROBUSTNESS_TABLES.values(), *GENERALISATION_TABLES.values())]
    + list(ROBUSTNESS_FIGURES.values())
    if _ROB["enabled"] else []
)


localrules:
    gather_robustness,
    generalisation,
    plot_robustness,
    plot_generalisation,


rule robustness:
    input:
        data=f"{RES}/data/fashion_mnist.pt",
        checkpoint=f"{RES}/runs/{{run}}/checkpoint.pt",
        snapshots=f"{RES}/runs/{{run}}/snapshots.pt",
        code=src("robustness"),
    output:
        noise=f"{RES}/robustness/{{run}}/noise.parquet",
        flatness=f"{RES}/robustness/{{run}}/flatness.parquet",
    params:
        robustness=ROBUSTNESS_PARAMS,
        device=config["device"],
    conda:
        ENV
    log:
        f"{RES}/logs/robustness/{{run}}.log",
    benchmark:
        f"{RES}/benchmarks/robustness/{{run}}.tsv"
    threads: 1
    resources:
        gpu=GPUS,
    shell:
        "python -m landscape robustness --threads {threads} --data {input.data}"
        " --checkpoint {input.checkpoint} --snapshots {input.snapshots}"
        " --params {params.robustness:q} --device {params.device}"
        " --out-noise {output.noise} --out-flatness {output.flatness} --no-progress > {log} 2>&1"


rule gather_robustness:
    input:
        **{key: expand(f"{RES}/robustness/{{run}}/{key}.parquet", run=RUNS)
           for key in ROBUSTNESS_TABLES},
        code=gather_src("robustness"),
    output:
        **{key: f"{RES}/tables/{table}.parquet" for key, table in ROBUSTNESS_TABLES.items()},
    conda:
        ENV
    log:
        f"{RES}/logs/gather_robustness.log",
    shell:
        "python -m landscape gather"
        " --table robustness --out {output.noise} --inputs {input.noise}"
        " --table flatness --out {output.flatness} --inputs {input.flatness}"
        " > {log} 2>&1"


rule generalisation:
    input:
        runs=f"{RES}/tables/runs.parquet",
        noise=f"{RES}/tables/robustness.parquet",
        flatness=f"{RES}/tables/flatness.parquet",
        eigs=f"{RES}/tables/hessian_eigs.parquet",
        trace=f"{RES}/tables/hessian_trace.parquet",
        code=src("generalisation"),
    output:
        **{key: f"{RES}/tables/{table}.parquet" for key, table in GENERALISATION_TABLES.items()},
    params:
        correlations=CORRELATION_PARAMS,
    conda:
        ENV
    log:
        f"{RES}/logs/generalisation.log",
    shell:
        "python -m landscape generalisation --runs {input.runs} --flatness {input.flatness}"
        " --robustness {input.noise} --eigs {input.eigs} --trace {input.trace}"
        " --params {params.correlations:q} --out-measures {output.measures}"
        " --out-correlations {output.correlations} --out-granulated {output.granulated}"
        " > {log} 2>&1"


rule plot_robustness:
    input:
        noise=f"{RES}/tables/robustness.parquet",
        runs=f"{RES}/tables/runs.parquet",
        code=src("plot_robustness"),
    output:
        figure=report(
            ROBUSTNESS_FIGURES["noise"],
            caption="../report/robustness_noise.rst",
            category="Robustness",
        ),
        vectors=vector_copies(ROBUSTNESS_FIGURES["noise"]),
    params:
        plots=as_json(config["plots"]),
    conda:
        ENV
    log:
        f"{RES}/logs/plot_robustness.log",
    shell:
        "python -m landscape plot-robustness --robustness {input.noise} --runs {input.runs}"
        " --params {params.plots:q} --out {output.figure} > {log} 2>&1"


rule plot_generalisation:
    input:
        measures=f"{RES}/tables/measures.parquet",
        correlations=f"{RES}/tables/correlations.parquet",
        granulated=f"{RES}/tables/granulated.parquet",
        runs=f"{RES}/tables/runs.parquet",
        code=src("plot_generalisation"),
    output:
        measures=report(
            ROBUSTNESS_FIGURES["measures"],
            caption="../report/generalisation_measures.rst",
            category="Generalisation",
        ),
        correlations=report(
            ROBUSTNESS_FIGURES["correlations"],
            caption="../report/generalisation_correlations.rst",
            category="Generalisation",
        ),
        vectors=vector_copies(ROBUSTNESS_FIGURES["measures"], ROBUSTNESS_FIGURES["correlations"]),
    params:
        plots=as_json(config["plots"]),
    conda:
        ENV
    log:
        f"{RES}/logs/plot_generalisation.log",
    shell:
        "python -m landscape plot-generalisation --measures {input.measures}"
        " --correlations {input.correlations} --granulated {input.granulated} --runs {input.runs}"
        " --params {params.plots:q} --out-measures {output.measures}"
        " --out-correlations {output.correlations} > {log} 2>&1"
