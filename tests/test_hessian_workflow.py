"""The curvature rules in the workflow: outputs, and which jobs a config or code change reruns.

Reads the session's smoke study, then asks dry runs what each change would rerun.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from landscape.tables import read_table, table_meta

from .test_workflow import SNAKEMAKE, job_counts, results, write_config

pytestmark = pytest.mark.slow
TABLES = ["hessian_eigs", "hessian_trace", "hessian_density", "sharpness_trajectory",
          "curvature_matrices", "matrix_density"]
FIGURES = ["hessian_density", "hessian_generalisation", "hessian_sharpness", "hessian_matrices"]


def targets(repo: Path) -> list[str]:
    res = results(repo).relative_to(repo)
    return [f"{res}/tables/{t}.parquet" for t in TABLES] + \
        [f"{res}/figures/{f}.png" for f in FIGURES]


def snakemake(repo: Path, *args: str, config: str = "tests/smoke.yaml"):
    """Snakemake on the curvature targets only (targets first: --configfile takes a list)."""
    cmd = [*SNAKEMAKE, *targets(repo), "--cores", "2", *args, "--configfile", config]
    out = subprocess.run(cmd, cwd=repo, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(repo)})
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return out


def planned(repo: Path, config: str = "tests/smoke.yaml") -> set[str]:
    out = snakemake(repo, "-n", "--quiet", "rules", config=config)
    return set(job_counts(out.stdout + out.stderr))


@pytest.fixture
def repo(smoke) -> Path:
    """The smoke study (the session's): dry runs of its curvature targets after a change."""
    return smoke


def test_outputs(repo):
    res = results(repo)
    runs = read_table(res / "tables/runs.parquet", "runs")
    for t in TABLES:
        df = read_table(res / f"tables/{t}.parquet", t)
        assert set(df["run"]) == set(runs["run"]), t
        assert "skipped_runs" not in table_meta(res / f"tables/{t}.parquet")
    for f in FIGURES:
        assert (res / f"figures/{f}.png").stat().st_size > 10_000
    assert planned(repo) == set()


@pytest.mark.parametrize("edit,must,must_not", [
    (lambda h: h["sharpness"].update(tol=0.05), {"sharpness"}, {"hessian", "train"}),
    (lambda h: h["trace"].update(hutchinson=7), {"hessian"}, {"sharpness", "train"}),
    (lambda h: h["density"].update(n_steps=9), {"hessian"}, {"sharpness", "train"}),
    (lambda h: h.update(eval_size=100), {"hessian", "sharpness", "curvature_matrices"},
     {"train"}),
    (lambda h: h.setdefault("matrices", {}).update(hutchinson=5), {"curvature_matrices"},
     {"hessian", "sharpness", "train"}),
])
def test_config_change_reruns_only_what_it_affects(repo, edit, must, must_not):
    def change(cfg):
        edit(cfg.setdefault("hessian", {}))

    jobs = planned(repo, write_config(repo, "changed.yaml", change))
    assert must <= jobs and not (must_not & jobs), jobs
    assert jobs <= must | {f"gather_{j}" for j in must} | {"plot_hessian", "plot_matrices"}, jobs


@pytest.mark.parametrize("module,must,must_not", [
    ("plots/hessian.py", {"plot_hessian"}, {"hessian", "sharpness", "train"}),
    ("hessian/trace.py", {"hessian", "sharpness"}, {"train"}),
    ("stages/sharpness.py", {"sharpness"}, {"hessian", "train"}),
])
def test_code_edit_reruns_exactly_its_rules(repo, module, must, must_not):
    path = repo / "landscape" / module
    text, mtime = path.read_text(), path.stat().st_mtime
    path.write_text(text + "\n# an edit\n")
    os.utime(path, (time.time() + 5, time.time() + 5))
    try:
        jobs = planned(repo)
    finally:
        path.write_text(text)
        os.utime(path, (mtime, mtime))
    assert must <= jobs and not (must_not & jobs), jobs
