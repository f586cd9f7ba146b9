import json
import re
import sys

from landscape.config import ConfigError, validate
from landscape.study import run_table, runs_with_seeds, sources, train_params, use_this_python


try:
    _validated = validate(config)  # landscape/config.schema.yaml (workflow/schemas/ links it)
except ConfigError as exc:
    sys.stderr.write(f"{exc}\n")
    raise SystemExit(1)
config.clear()
config.update(_validated)

# The interpreter that runs Snakemake runs the stages too (the project's venv): put it first on
# PATH so that `python -m landscape` in the rules' shell commands is this interpreter.
use_this_python()
ENV = "../../environment.yml"
# The study as a run table (one row per run, index = run id), like a sample sheet: rules look
# runs up by the {run} wildcard and never parse run ids.
RUN_TABLE = run_table(config)
RUNS = list(RUN_TABLE.index)
RES = config["results_dir"].rstrip("/")
TRAINING_FIGURES = [f"{RES}/figures/training_curves.png", f"{RES}/figures/final_vs_hparams.png"]
# Heavy jobs (those with `threads: 1` that import torch and compute) ask for one GPU when the
# study asks for CUDA (`device: cuda`); the SLURM profile's executor turns `gpu=1` into --gpus=1.
GPUS = 1 if config["device"] == "cuda" else 0
STAGES = ["hessian", "slices", "connectivity", "robustness"]  # geometry stages whose outputs are targets (see stage_targets)


wildcard_constraints:
    run="|".join(re.escape(r) for r in RUNS) or "NO_RUNS",


# Gather, plot and collect rules are cheap: they run in the Snakemake process's machine, never
# as cluster jobs (a SLURM submission costs more than the work).
localrules:
    prepare_data,
    gather_training,
    gather_runs,
    plot_training,
    gather_hessian,
    plot_hessian,
    gather_slices,
    plot_slices,
    collect_skipped,


def src(*stages):
    """The package files a stage imports: editing one reruns the rules that use it."""
    return list(sources(*(f"stages.{s}" for s in stages)))


def gather_src(family):
    """A gather rule's code: the gather stage and the schema module (landscape/schemas/) of the
    tables it gathers, which the gather stage imports by name."""
    return list(sources("stages.gather", f"schemas.{family}"))


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def vector_copies(*figures):
    """The copies of PNG figures in the other formats of `plots.formats` (figures/x.png ->
    figures/x.pdf, figures/x.svg), written by the job that draws the PNG; [] for [png]."""
    extra = [fmt for fmt in config["plots"]["formats"] if fmt != "png"]
    return [f"{f.rsplit('.', 1)[0]}.{fmt}" for f in figures for fmt in extra]


def run_train_params(wildcards):
    """The run's row of the run table, the `train` section and its model's options."""
    return as_json(train_params(config, RUN_TABLE, wildcards.run))


def run_folder(wildcards):
    return f"{RES}/runs/{wildcards.run}"


def seed_runs(section):
    """Runs whose seed is in `config[section]["seeds"]` (null: the first study seed)."""
    try:
        return runs_with_seeds(RUN_TABLE, config[section]["seeds"], f"{section}.seeds")
    except ValueError as exc:
        sys.stderr.write(f"config error: {exc}\n")
        raise SystemExit(1)


def stage_targets(*stages):
    """The final outputs (tables, figures) of the named stages (defined in their rule files)."""
    outputs = {"hessian": lambda: HESSIAN_OUTPUTS,
               "slices": lambda: SLICE_OUTPUTS if SLICE_RUNS else [],
               "connectivity": lambda: CONNECTIVITY_OUTPUTS,  # [] when disabled
               "robustness": lambda: ROBUSTNESS_OUTPUTS,  # [] when disabled
               }
    return [f for s in stages for f in outputs[s]()]


def findings_tables(tables):
    """Flag → gathered table, for the tables this study produces (switched-off stages: absent)."""
    made = set(stage_targets(*STAGES))
    return {flag: f"{RES}/tables/{name}.parquet" for flag, name in tables.items()
            if f"{RES}/tables/{name}.parquet" in made}


def report_figures():
    """Every figure of the study, in stage order (embedded in the findings page)."""
    return [f for f in TRAINING_FIGURES + stage_targets(*STAGES) if f.endswith((".png", ".svg"))]


def findings_flags(wildcards, input):
    """`--<flag> <table>` for each gathered table the findings rule received."""
    return " ".join(f"--{flag.replace('_', '-')} {getattr(input, flag)}"
                    for flag in input.keys() if flag not in ("runs", "figures", "reference",
                                                             "code"))


def pair_checkpoint_a(wildcards):
    """Checkpoint of a connectivity pair's first run (pair table looked up by {pair})."""
    return f"{RES}/runs/{CONNECTIVITY_PAIRS.loc[wildcards.pair, 'run_a']}/checkpoint.pt"


def pair_checkpoint_b(wildcards):
    return f"{RES}/runs/{CONNECTIVITY_PAIRS.loc[wildcards.pair, 'run_b']}/checkpoint.pt"


def findings_reference():
    return [config["report"]["reference"]] if config["report"]["reference"] else []


def study_line():
    s = config["study"]
    return (f"{len(RUNS)} runs: models {', '.join(s['model'])}; optimisers "
            f"{', '.join(s['optimizer'])}; η {', '.join(map(str, s['lr']))}; batch sizes "
            f"{', '.join(map(str, s['batch_size']))}; weight decay "
            f"{', '.join(map(str, s['weight_decay']))}; seeds {', '.join(map(str, s['seed']))}; "
            + (f"{config['train']['epochs']} epochs" if config["train"]["stop_at_loss"] is None
               else f"until training loss ≤ {config['train']['stop_at_loss']:g} (at most "
               f"{config['train']['epochs']} epochs)")
            + f" on {config['data']['train_size'] or 60000} "
            f"training images (results in {RES}).")


def all_targets():
    targets = [
        f"{RES}/tables/training.parquet",
        f"{RES}/tables/runs.parquet",
        *TRAINING_FIGURES,
        f"{RES}/tables/skipped.parquet",
        f"{RES}/findings.html",
    ]
    return targets + stage_targets(*STAGES)
