import landscape.registry as registry
from landscape.connectivity.pairs import pair_table, spawn_table


# Every measurement of the study, from the stage registry (landscape/registry.py): each module of
# landscape/stages/ that declares STAGE = {...} is one computing rule (one job per run, per run
# and shard, per connectivity pair, per spawn step, or one per study) and one gather rule. What
# runs for a run, in study order (`python -m landscape docs stages` prints the same list):
#   hessian            checkpoint        -> hessian/{run}/hessian_{eigs,trace,density}, ...
#   curvature_matrices checkpoint        -> curvature_matrices/{run}/curvature_matrices, ...
#   sharpness          snapshots         -> sharpness/{run}/sharpness_trajectory
#   slice_directions   checkpoint, snaps -> slice_directions/{run}/plan.pt, pca_variance
#   slice_shard        plan, checkpoint  -> slices/{run}/shard{i}of{n}/slice_{1d,2d}, ...
#   connectivity_pair  two checkpoints   -> connectivity/{pair}/connectivity, barriers, alignment
#   spawn              snapshots         -> spawn/{run}/step{k}/spawn_barriers
#   robustness         checkpoint, snaps -> robustness/{run}/robustness, flatness
#   generalisation     gathered tables   -> tables/measures, correlations, granulated
# and gather_<stage> concatenates each per-job table into results/tables/<table>.parquet.
# Each rule gets only the config keys its STAGE names, so a change reruns what it affects.
CONNECTIVITY_PAIRS = pair_table(config, RUN_TABLE)
PAIRS = list(CONNECTIVITY_PAIRS.index)
_SPAWNS = spawn_table(config, RUN_TABLE)
SPAWNS = list(zip(_SPAWNS["run"], _SPAWNS["step"]))
MEASUREMENTS = registry.measurements()
JOBS = {m.name: registry.jobs(m, config, RUNS, PAIRS, SPAWNS, seed_runs) for m in MEASUREMENTS}
BASE_TABLES = {"runs", "training"}  # written by the training rules (train.smk)


def _made_tables():
    """Table name → gathered file, for every table this study makes (stages switched off or
    without jobs make none; a study-level stage needs all of its input tables)."""
    made = {}
    for m in MEASUREMENTS:
        needs = {i[len("table:"):] for i in m.inputs if i.startswith("table:")}
        if JOBS[m.name] and needs <= BASE_TABLES | set(made):
            made.update({t: f"{RES}/tables/{t}.parquet" for t in m.tables})
    return made


MADE_TABLES = _made_tables()


wildcard_constraints:
    pair="|".join(re.escape(p) for p in PAIRS) or "NO_PAIRS",
    shard=r"\d+",
    shards=r"\d+",
    spawn_step=r"\d+",


def _input_key(name):
    """A Snakemake-safe input name (`slice_directions.plan` -> slice_directions__plan)."""
    return name.replace(".", "__").replace(":", "__")


def pair_checkpoint(side):
    """Input function: the checkpoint of a pair's run `side` (a or b), looked up in the pair
    table by the {pair} wildcard (pair ids are never parsed)."""

    def checkpoint(wildcards):
        run = CONNECTIVITY_PAIRS.loc[wildcards.pair, f"run_{side}"]
        return f"{RES}/runs/{run}/checkpoint.pt"

    return checkpoint


def measurement_inputs(m):
    files = {_input_key(k): v for k, v in registry.inputs(m, RES, config).items()}
    for side in ("a", "b"):
        if f"checkpoint_{side}" in m.inputs:
            files[f"checkpoint_{side}"] = pair_checkpoint(side)
    return files


def measurement_io(m):
    """The runner's --in/--out/--file/--job arguments of one job (landscape/stages/_runner.py)."""

    def io(wildcards, input, output):
        args = [f"--in {name}={input[_input_key(name)]}" for name in m.inputs
                if registry.wanted(m, name, config)]
        args += [f"--out {t}={output[t]}" for t in m.tables]
        args += [f"--file {k}={output[k]}" for k in m.files]
        args += [f"--job {k}={v}" for k, v in wildcards.items()]
        return " ".join(args)

    return io


def measurement_src(m):
    """The code a job runs: the generic runner and everything its stage module imports."""
    return list(sources("stages._runner", f"stages.{m.module}"))


for _m in MEASUREMENTS:

    rule:
        name:
            _m.name
        input:
            **measurement_inputs(_m),
            code=measurement_src(_m),
        output:
            **{t: _m.output(RES, t) for t in _m.tables},
            **{k: _m.file(RES, k) for k in _m.files},
        params:
            command=_m.command,  # (the shell line runs later: it must not read the loop's _m)
            stage=as_json(registry.params(_m, config)),
            device=config["device"],
            io=measurement_io(_m),
        conda:
            ENV
        log:
            _m.log(RES),
        benchmark:
            _m.benchmark(RES)
        localrule: _m.per == "study"
        # the STAGE's SLURM group: a run's geometry jobs form one SLURM job (cluster runs only;
        # workflow/profiles/slurm-large regroups the slice shards)
        group: slurm_group(_m.group) if _m.group else None  # (the profile switches it on)
        threads: 1
        resources:
            gpu=GPUS if _m.per != "study" else 0,
            cpus_per_task=1,
            **_m.resources,
            **({"group_slots": 1} if _m.group else {}),
        shell:
            "python -m landscape {params.command} --threads {threads} --params {params.stage:q}"
            " --device {params.device} {params.io} --no-progress > {log} 2>&1"

    if _m.per != "study":

        rule:
            name:
                f"gather_{_m.module}"
            input:
                **{t: [_m.output(RES, t).format(**w) for w in JOBS[_m.name]] for t in _m.tables},
                code=gather_src(_m.tables[0]),
            output:
                **{t: f"{RES}/tables/{t}.parquet" for t in _m.tables},
            conda:
                ENV
            log:
                f"{RES}/logs/gather_{_m.module}.log",
            params:
                tables=lambda wildcards, input, output, m=_m: " ".join(
                    f"--table {t} --out {output[t]} --inputs {' '.join(input[t])}"
                    for t in m.tables),
            localrule: True
            shell:
                "python -m landscape gather {params.tables} > {log} 2>&1"
