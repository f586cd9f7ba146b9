"""The slices rules through Snakemake: a change of `slices.shards` reruns only the shard and
gather jobs, and the gathered tables are identical for 1 and 3 shards."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from landscape.tables import read_table

from .conftest import REPO

pytestmark = pytest.mark.slow
TABLES = ["slice_1d", "slice_2d", "trajectory_projection", "pca_variance"]


def _copy_repo(dest: Path) -> Path:
    for item in ("workflow", "landscape"):
        shutil.copytree(REPO / item, dest / item,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dest / "tests").mkdir(parents=True)
    for name in ("config.yaml", "tests/smoke.yaml", "environment.yml", "pyproject.toml"):
        shutil.copy(REPO / name, dest / name)
    return dest


def _snakemake(repo: Path, config: str, *targets: str) -> str:
    out = subprocess.run([sys.executable, "-m", "snakemake", *targets, "--cores", "2",
                          "--configfile", config], cwd=repo, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(repo)})
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def _config(repo: Path, name: str, shards: int) -> str:
    cfg = yaml.safe_load((repo / "tests/smoke.yaml").read_text())
    cfg.setdefault("slices", {})["shards"] = shards
    cfg["results_dir"] = "results/slices_wf"
    (repo / name).write_text(yaml.safe_dump(cfg))
    return name


def test_shard_count_changes_only_shards_and_not_the_tables(tmp_path):
    repo = _copy_repo(tmp_path / "repo")
    tables = [f"results/slices_wf/tables/{t}.parquet" for t in TABLES]
    one = _config(repo, "one.yaml", 1)
    _snakemake(repo, one, *tables)
    first = {t: read_table(repo / p, t) for t, p in zip(TABLES, tables, strict=True)}
    assert all(len(df) for df in first.values())

    three = _config(repo, "three.yaml", 3)
    dry = _snakemake(repo, three, "-n", *tables)
    rules = set(re.findall(r"^(?:local)?rule (\w+):", dry, re.M))
    assert rules == {"slice_shard", "gather_slices"}, dry  # directions and training are reused
    _snakemake(repo, three, *tables)
    for t, p in zip(TABLES, tables, strict=True):
        assert read_table(repo / p, t).equals(first[t]), t
