from landscape.connectivity.pairs import pair_table, spawn_table


# Mode connectivity: paths between pairs of trained runs, and spawning.
#   connectivity_pair (per pair)   -> connectivity/pairs/{pair}/{paths,barriers,alignment}.parquet
#   spawn (per run, spawn step)    -> connectivity/spawn/{run}/step{spawn_step}.parquet
#   gather_connectivity            -> tables/connectivity, barriers, alignment
#   gather_spawn                   -> tables/spawn_barriers
#   plot_connectivity, plot_spawn  -> figures/connectivity_{paths,barriers,spawn}.png
# Pairs and spawn jobs come from tables built once from the config (landscape/connectivity/
# pairs.py; cross-checked in validate()); rules look them up by id and never parse ids.
CONNECTIVITY_PAIRS = pair_table(config, RUN_TABLE)
SPAWNS = spawn_table(config, RUN_TABLE)
PAIRS = list(CONNECTIVITY_PAIRS.index)
_CONN = config["connectivity"]
# The config slices each per-job rule depends on: the pair and spawn job lists themselves
# (pairs, vary, spawn.runs/steps, enabled) only add or remove jobs.
_CONN_EVAL = ["points", "train_size", "test_size", "subset_seed", "batch_size", "channels_last",
              "recompute_bn"]
PAIR_PARAMS = as_json({k: _CONN[k] for k in _CONN_EVAL + ["methods", "alignment", "bezier"]})
SPAWN_PARAMS = as_json({**{k: _CONN[k] for k in _CONN_EVAL},
                        "spawn": {"seed": _CONN["spawn"]["seed"]}})
PAIR_TABLES = {"paths": "connectivity", "barriers": "barriers", "alignment": "alignment"}
PAIR_FILES = {key: [f"{RES}/connectivity/pairs/{p}/{key}.parquet" for p in PAIRS]
              for key in PAIR_TABLES}
SPAWN_FILES = [f"{RES}/connectivity/spawn/{r}/step{s}.parquet"
               for r, s in zip(SPAWNS["run"], SPAWNS["step"])]
CONNECTIVITY_OUTPUTS = (
    ([f"{RES}/tables/{t}.parquet" for t in PAIR_TABLES.values()]
     + [f"{RES}/figures/connectivity_paths.png", f"{RES}/figures/connectivity_barriers.png"]
     if PAIRS else [])
    + ([f"{RES}/tables/spawn_barriers.parquet", f"{RES}/figures/connectivity_spawn.png"]
       if len(SPAWNS) else [])
)


wildcard_constraints:
    pair="|".join(re.escape(p) for p in PAIRS) or "NO_PAIRS",
    spawn_step=r"\d+",


localrules:
    gather_connectivity,
    gather_spawn,
    plot_connectivity,
    plot_spawn,


rule connectivity_pair:
    input:
        data=f"{RES}/data/fashion_mnist.pt",
        # the pair's runs, looked up in the pair table by the {pair} wildcard
        a=pair_checkpoint_a,
        b=pair_checkpoint_b,
        code=src("connectivity"),
    output:
        **{key: f"{RES}/connectivity/pairs/{{pair}}/{key}.parquet" for key in PAIR_TABLES},
    params:
        connectivity=PAIR_PARAMS,
        device=config["device"],
    conda:
        ENV
    log:
        f"{RES}/logs/connectivity/{{pair}}.log",
    benchmark:
        f"{RES}/benchmarks/connectivity/{{pair}}.tsv"
    threads: 1
    resources:
        gpu=GPUS,
    shell:
        "python -m landscape connectivity --threads {threads} --data {input.data}"
        " --checkpoint-a {input.a} --checkpoint-b {input.b} --pair {wildcards.pair}"
        " --params {params.connectivity:q} --device {params.device}"
        " --out-paths {output.paths} --out-barriers {output.barriers}"
        " --out-alignment {output.alignment} --no-progress > {log} 2>&1"


rule spawn:
    input:
        data=f"{RES}/data/fashion_mnist.pt",
        snapshots=f"{RES}/runs/{{run}}/snapshots.pt",
        code=src("spawn"),
    output:
        f"{RES}/connectivity/spawn/{{run}}/step{{spawn_step}}.parquet",
    params:
        connectivity=SPAWN_PARAMS,
        device=config["device"],
    conda:
        ENV
    log:
        f"{RES}/logs/connectivity/spawn_{{run}}_step{{spawn_step}}.log",
    benchmark:
        f"{RES}/benchmarks/connectivity/spawn_{{run}}_step{{spawn_step}}.tsv"
    threads: 1
    resources:
        gpu=GPUS,
    shell:
        "python -m landscape spawn --threads {threads} --data {input.data}"
        " --snapshots {input.snapshots} --step {wildcards.spawn_step}"
        " --params {params.connectivity:q} --device {params.device} --out {output}"
        " --no-progress > {log} 2>&1"


rule gather_connectivity:
    input:
        **PAIR_FILES,
        code=gather_src("connectivity"),
    output:
        **{key: f"{RES}/tables/{table}.parquet" for key, table in PAIR_TABLES.items()},
    conda:
        ENV
    log:
        f"{RES}/logs/gather_connectivity.log",
    shell:
        "python -m landscape gather"
        " --table connectivity --out {output.paths} --inputs {input.paths}"
        " --table barriers --out {output.barriers} --inputs {input.barriers}"
        " --table alignment --out {output.alignment} --inputs {input.alignment}"
        " > {log} 2>&1"


rule gather_spawn:
    input:
        spawn=SPAWN_FILES,
        code=gather_src("connectivity"),
    output:
        f"{RES}/tables/spawn_barriers.parquet",
    conda:
        ENV
    log:
        f"{RES}/logs/gather_spawn.log",
    shell:
        "python -m landscape gather --table spawn_barriers --out {output}"
        " --inputs {input.spawn} > {log} 2>&1"


rule plot_connectivity:
    input:
        paths=f"{RES}/tables/connectivity.parquet",
        barriers=f"{RES}/tables/barriers.parquet",
        runs=f"{RES}/tables/runs.parquet",
        code=src("plot_connectivity"),
    output:
        paths=report(
            f"{RES}/figures/connectivity_paths.png",
            caption="../report/connectivity_paths.rst",
            category="Connectivity",
        ),
        barriers=report(
            f"{RES}/figures/connectivity_barriers.png",
            caption="../report/connectivity_barriers.rst",
            category="Connectivity",
        ),
        vectors=vector_copies(
            f"{RES}/figures/connectivity_paths.png", f"{RES}/figures/connectivity_barriers.png"
        ),
    params:
        plots=as_json(config["plots"]),
    conda:
        ENV
    log:
        f"{RES}/logs/plot_connectivity.log",
    shell:
        "python -m landscape plot-connectivity --paths {input.paths}"
        " --barriers {input.barriers} --runs {input.runs} --params {params.plots:q}"
        " --out-paths {output.paths} --out-barriers {output.barriers} > {log} 2>&1"


rule plot_spawn:
    input:
        spawn=f"{RES}/tables/spawn_barriers.parquet",
        runs=f"{RES}/tables/runs.parquet",
        code=src("plot_connectivity"),
    output:
        figure=report(
            f"{RES}/figures/connectivity_spawn.png",
            caption="../report/connectivity_spawn.rst",
            category="Connectivity",
        ),
        vectors=vector_copies(f"{RES}/figures/connectivity_spawn.png"),
    params:
        plots=as_json(config["plots"]),
    conda:
        ENV
    log:
        f"{RES}/logs/plot_spawn.log",
    shell:
        "python -m landscape plot-connectivity --spawn {input.spawn} --runs {input.runs}"
        " --params {params.plots:q} --out-spawn {output.figure} > {log} 2>&1"
