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
TRAINING_TABLES = {"runs": f"{RES}/tables/runs.parquet",
                   "training": f"{RES}/tables/training.parquet"}
# Heavy jobs (those with `threads: 1` that import torch and compute) ask for one GPU when the
# study asks for CUDA (`device: cuda`); the SLURM profile's executor turns `gpu=1` into --gpus=1.
GPUS = 1 if config["device"] == "cuda" else 0


wildcard_constraints:
    run="|".join(re.escape(r) for r in RUNS) or "NO_RUNS",


# Gather, plot and collect rules are cheap: they run in the Snakemake process's machine, never
# as cluster jobs (a SLURM submission costs more than the work).
localrules:
    prepare_data,
    gather_training,
    gather_runs,
    collect_skipped,


def src(*stages):
    """The package files a stage imports: editing one reruns the rules that use it."""
    return list(sources(*(f"stages.{s}" for s in stages)))


def gather_src(*tables):
    """A gather rule's code: the gather stage and the schema modules (landscape/schemas/) that
    declare `tables`, which the gather stage imports by name."""
    from landscape.registry import schema_modules

    return list(sources("stages.gather", *sorted({schema_modules()[t] for t in tables})))


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


def seed_runs(key):
    """Runs whose seed is listed at config key `key` (e.g. slices.seeds; null: the first study
    seed)."""
    from landscape.registry import lookup

    try:
        return runs_with_seeds(RUN_TABLE, lookup(config, key), key)
    except ValueError as exc:
        sys.stderr.write(f"config error: {exc}\n")
        raise SystemExit(1)


def made_tables():
    """Table name -> gathered file, for every table of this study (training and measurements;
    MADE_TABLES is defined in measure.smk from the registry)."""
    return {**TRAINING_TABLES, **MADE_TABLES}


def plot_targets():
    """The figures of every plot rule whose input tables this study makes (rules defined in
    plots.smk; a switched-off stage's figures are no targets)."""
    made = set(made_tables().values())
    figures = []
    for r in workflow.rules:
        tables = [str(f) for f in r.input if str(f).endswith(".parquet")]
        if r.name.startswith("plot_") and tables and set(tables) <= made:
            figures += [str(f) for f in r.output]
    return figures


def report_figures():
    """Every figure of the study, in rule order (embedded in the findings page)."""
    return [f for f in plot_targets() if f.endswith(".png")]


def findings_flags(wildcards, input):
    """`--table <name>=<file>` for each gathered table the findings rule received."""
    return " ".join(f"--table {name}={getattr(input, name)}" for name in MADE_TABLES)


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


def slurm_group(name):
    """A measurement's group `<name>_<run>` (its STAGE's `group`) when the profile merges that
    group (`group-components: <name>_{run}=…`, as the SLURM profiles do); none otherwise, so a
    local run and its dry run list jobs plainly (Snakemake ignores groups when it runs jobs
    locally). A function of the job: the profile's settings are known only after parsing."""
    pattern = f"{name}_{{run}}"

    def group(wildcards):
        if pattern not in workflow.group_settings.group_components:
            return None
        resolved = f"{name}_{wildcards.run}"
        # what Snakemake records for a group name with wildcards, so that group-components
        # (given for the pattern) applies to each run's group
        workflow.parent_groupids[resolved] = pattern
        return resolved

    return group


def paper_figures():
    """The report's figures: each PNG's PDF copy when plots.formats has pdf, else the PNG."""
    pdf = "pdf" in config["plots"]["formats"]
    return [f[:-4] + ".pdf" if pdf else f for f in report_figures()]


def paper_tables():
    return {t: MADE_TABLES[t] for t in ("correlations", "barriers") if t in MADE_TABLES}


def paper_flags(wildcards, input):
    return " ".join(f"--table {name}={getattr(input, name)}" for name in paper_tables())


def paper_targets():
    """results/report.tex (report.latex), and report.pdf when report.pdf is always, or auto and
    pdfLaTeX is installed."""
    import shutil

    r = config["report"]
    if not r["latex"]:
        return []
    if r["pdf"] == "always" and not shutil.which("pdflatex"):  # before any job runs
        sys.stderr.write("config error: report.pdf = \"always\" is not allowed here: pdflatex "
                         "is not installed (Debian: apt-get install texlive-latex-recommended; "
                         "or report.pdf: auto | never)\n")
        raise SystemExit(1)
    pdf = r["pdf"] == "always" or (r["pdf"] == "auto" and shutil.which("pdflatex"))
    return [f"{RES}/report.tex"] + ([f"{RES}/report.pdf"] if pdf else [])


def all_targets():
    return [*made_tables().values(), f"{RES}/tables/skipped.parquet", f"{RES}/findings.html",
            *plot_targets(), *paper_targets()]


# Local runs fork every job from one process that has imported torch and the other heavy
# libraries (landscape/forkserver.py): the same commands, without ~2 CPU-s of imports per job.
# Cluster executors run jobs elsewhere and start none; LANDSCAPE_NO_FORK_SERVER=1 turns it off.
onstart:
    from landscape import forkserver

    if not workflow.touch:
        forkserver.start(RES, local=workflow.local_exec)


onsuccess:
    from landscape import forkserver

    forkserver.stop()


onerror:
    from landscape import forkserver

    forkserver.stop()
