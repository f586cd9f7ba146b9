"""Config validation: every bad config fails with one line naming key, value and what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from landscape.config import ConfigError, validate

from .conftest import REPO

BASE = yaml.safe_load((REPO / "config.yaml").read_text())
SMOKE = yaml.safe_load((REPO / "tests" / "smoke.yaml").read_text())


def mutate(path: str, value, base=BASE):
    cfg = copy.deepcopy(base)
    node = cfg
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return cfg


class _Delete:
    def __repr__(self) -> str:  # a stable test id (pytest-xdist workers must collect the same)
        return "<deleted>"


DELETE = _Delete()

# (key path, bad value, text that must appear in the one-line error)
BAD = [
    ("device", "tpu", "device = \"tpu\""),
    ("device", 3, "device = 3"),
    ("data.train_size", 5, "data.train_size = 5"),
    ("data.train_size", 70000, "<= 60000"),
    ("data.test_size", "all", "data.test_size = \"all\""),
    ("data.download", "yes", "data.download"),
    ("data.seed", -1, ">= 0"),
    ("data.rooot", "/tmp", "unknown key data.rooot"),
    ("study.lr", [], "study.lr = []"),
    ("study.lr", [0.1, -0.01], "study.lr[1] = -0.01"),
    ("study.lr", ["fast"], "study.lr[0] = \"fast\""),
    ("study.lr", [0.1, 0.1], "without repeated values"),
    ("study.batch_size", [0], "study.batch_size[0] = 0"),
    ("study.batch_size", [32.5], "study.batch_size[0] = 32.5"),
    ("study.model", ["resnet50"], "one of ['simple_cnn', 'cnn', 'cnn_bn', 'mlp']"),
    ("study.optimizer", ["rmsprop"], "one of ['sgd', 'adam', 'sam', 'asam']"),
    ("study.seed", [], "at least 1 item"),
    ("study.seed", DELETE, "study.seed is missing"),
    ("study.seeds", [1], "unknown key study.seeds"),
    ("study.weight_decay", [2.0], "study.weight_decay[0] = 2.0"),
    ("train.epochs", 0, "train.epochs = 0"),
    ("train.epochs", "3", "train.epochs = \"3\""),
    ("train.momentum", 1.5, "train.momentum = 1.5"),
    ("train.schedule", "step", "one of ['constant', 'cosine']"),
    ("train.snapshot_steps", [0], "train.snapshot_steps[0] = 0"),
    ("train.learning_rate", 0.1, "unknown key train.learning_rate"),
    ("models.cnn.width", 0, "models.cnn.width = 0"),
    ("models.cnn.depth", 3, "unknown key models.cnn.depth"),
    ("models.resnet", {}, "unknown key models.resnet"),
    ("plots.dpi", 10, "plots.dpi = 10"),
    ("epochs", 3, "unknown key epochs"),
    ("results_dir", "", "results_dir = \"\""),
    ("slices.points_2d", 0, "slices.points_2d = 0"),
    ("slices.points_2d", 4, "slices.points_2d"),
    ("slices.points_1d", 0, "slices.points_1d = 0"),
    ("slices.shards", 0, "slices.shards = 0"),
    ("slices.planes", ["hexagon"], "one of ['random', 'pca', 'hessian']"),
    ("slices.normalization", "batch", "slices.normalization = \"batch\""),
    ("slices.seeds", [99], "slices.seeds = [99]"),
    ("hessian.eval_size", 0, "hessian.eval_size = 0"),
    ("hessian.eigs.top_k", 0, "hessian.eigs.top_k = 0"),
    ("hessian.hvp_method", "magic", "hessian.hvp_method = \"magic\""),
    ("hessian.eval_split", "valid", "one of ['train', 'test']"),
    ("hessian.eigs.topk", 3, "unknown key hessian.eigs.topk"),
]


@pytest.mark.parametrize("path,value,expected", BAD, ids=[f"{p}={v!r}"[:40] for p, v, _ in BAD])
def test_bad_config_one_line(path, value, expected):
    with pytest.raises(ConfigError) as exc:
        validate(mutate(path, value))
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("config error: ")
    assert expected in msg, msg


def test_cross_check_batch_larger_than_data():
    with pytest.raises(ConfigError, match="study.batch_size = 128 .* data.train_size = 100"):
        validate(mutate("data.train_size", 100))


def test_defaults_filled_and_good_configs_pass():
    cfg = validate(BASE)
    assert cfg["train"]["momentum"] == 0.9 and cfg["models"]["cnn"]["width"] == 16
    assert validate(SMOKE)["results_dir"] == "results/smoke"
    minimal = {"study": {"model": ["mlp"], "optimizer": ["adam"], "lr": [1e-3],
                         "batch_size": [64], "seed": [0]}}
    out = validate(minimal)
    assert out["device"] == "auto" and out["study"]["weight_decay"] == [0.0]


def test_every_schema_key_is_documented():
    schema = yaml.safe_load(Path(REPO / "workflow/schemas/config.schema.yaml").read_text())

    def walk(node, where):
        for k, sub in node.get("properties", {}).items():
            assert sub.get("description"), f"{where}{k} has no description"
            assert "type" in sub or "enum" in sub, f"{where}{k} has no type"
            walk(sub, f"{where}{k}.")

    walk(schema, "")


def test_non_editable_install_ships_the_schema(tmp_path):
    """`pip install .` (not -e) must find the schema: it is package data inside the wheel."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("landscape-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "landscape/config.schema.yaml" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    code = ("import landscape.config as c; "
            "print(c.defaults('train')['epochs'], c.SCHEMA_PATH.is_file())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, text=True,
                         capture_output=True, env={"PYTHONPATH": str(target)})
    assert out.stdout.split() == ["4", "True"]


def _merged(study: Path) -> dict:
    """What Snakemake sees for `--configfile study`: config.yaml updated recursively by it."""
    def update(base: dict, new: dict) -> dict:
        for k, v in new.items():
            base[k] = update(dict(base.get(k) or {}), v) if isinstance(v, dict) else v
        return base

    base = yaml.safe_load((REPO / "config.yaml").read_text())
    return update(base, yaml.safe_load(study.read_text()))


@pytest.mark.parametrize("study", sorted(p.name for p in (REPO / "studies").glob("*.yaml")
                                         if not p.name.endswith("_reference.yaml")))
def test_study_configs_are_valid(study):
    from landscape.config import validate

    cfg = validate(_merged(REPO / "studies" / study))
    assert cfg["results_dir"] != "results", "a study writes to a results folder of its own"


def test_planning_the_workflow_does_not_import_torch():
    """Every Snakemake start validates the config and plans runs and pairs; importing torch there
    costs seconds per start (and per dry run in the tests) and ties every rule to the numerics."""
    import subprocess
    import sys

    code = ("import sys, yaml\n"
            "from landscape.config import validate\n"
            "from landscape.study import run_table, sources\n"
            "from landscape.connectivity.pairs import pair_table, spawn_table\n"
            "cfg = validate(yaml.safe_load(open('config.yaml')))\n"
            "run_table(cfg); sources('stages.train', 'stages.connectivity')\n"
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_hessian_plane_needs_two_eigenvectors():
    """Caught before any job runs, not by the slice job of the first trained run."""
    from landscape.config import validate

    study = {"model": ["cnn"], "optimizer": ["sgd"], "lr": [0.1], "batch_size": [32],
             "seed": [1]}
    with pytest.raises(ConfigError, match=r"hessian.eigs.top_k = 1 is not allowed with "
                                          r"slices.planes = \['random', 'pca', 'hessian'\]"):
        validate({"study": study, "hessian": {"eigs": {"top_k": 1}},
                  "slices": {"planes": ["random", "pca", "hessian"]}})
    validate({"study": study, "hessian": {"eigs": {"top_k": 1}},
              "slices": {"planes": ["random", "pca"]}})
