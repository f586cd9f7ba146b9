import json
import sys
from pathlib import Path

from landscape.config import ConfigError, validate
from landscape.study import sources, study_runs, train_params, use_this_python


try:
    _validated = validate(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")
except ConfigError as exc:
    sys.stderr.write(f"{exc}\n")
    raise SystemExit(1)
config.clear()
config.update(_validated)

# The interpreter that runs Snakemake runs the stages too (the project's venv): put it first on
# PATH so that `python -m landscape` in the rules' shell commands is this interpreter.
use_this_python()
ENV = "../../environment.yml"
RUNS = study_runs(config)
RES = config["results_dir"].rstrip("/")


wildcard_constraints:
    run="[A-Za-z0-9_.+-]+",


def src(*stages):
    """The package files a stage imports: editing one reruns the rules that use it."""
    return list(sources(*(f"stages.{s}" for s in stages)))


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def run_train_params(wildcards):
    model = next(m for m in config["study"]["model"] if wildcards.run.startswith(f"{m}_"))
    return as_json(train_params(config, model))


def all_targets():
    targets = [
        f"{RES}/tables/training.parquet",
        f"{RES}/tables/runs.parquet",
        f"{RES}/figures/training_curves.png",
        f"{RES}/figures/final_vs_hparams.png",
        f"{RES}/tables/skipped.parquet",
    ]
    return targets + hessian_targets() + slice_targets()
