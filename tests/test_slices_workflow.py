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

pytestmark = pytest.mark.slow
TABLES = ["slice_1d", "slice_2d", "trajectory_projection", "pca_variance"]


def _snakemake(repo: Path, config: str, *targets: str) -> str:
    out = subprocess.run([sys.executable, "-m", "snakemake", *targets, "--cores", "2",
                          "--configfile", config], cwd=repo, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(repo)})
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_shard_count_changes_only_shards_and_not_the_tables(smoke, tmp_path):
    """The smoke study (one shard per run), copied with Snakemake's records, then 3 shards."""
    repo = tmp_path / "repo"
    shutil.copytree(smoke, repo, symlinks=True)
    cfg = yaml.safe_load((repo / "tests/smoke.yaml").read_text())
    assert cfg["slices"]["shards"] == 1
    res = cfg["results_dir"]
    tables = [f"{res}/tables/{t}.parquet" for t in TABLES]
    first = {t: read_table(repo / p, t) for t, p in zip(TABLES, tables, strict=True)}
    assert all(len(df) for df in first.values())

    cfg["slices"]["shards"] = 3
    (repo / "three.yaml").write_text(yaml.safe_dump(cfg))
    dry = _snakemake(repo, "three.yaml", "-n", *tables)
    rules = set(re.findall(r"^(?:local)?rule (\w+):", dry, re.M))
    assert rules == {"slice_shard", "gather_slices"}, dry  # directions and training are reused
    _snakemake(repo, "three.yaml", *tables)
    for t, p in zip(TABLES, tables, strict=True):
        assert read_table(repo / p, t).equals(first[t]), t
