"""Shared fixtures: tiny synthetic datasets (no network, no real files needed)."""

from __future__ import annotations

import fcntl
import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.allocator import keep_freed_memory
from landscape.data import Split, fingerprint
from landscape.schemas import load_all

load_all()  # tests write tables of every family by hand

REPO = Path(__file__).resolve().parent.parent

# Snakemake loads every installed executor plugin at start; the SLURM plugin then runs
# `scontrol show config`, which waits 9-60 s for a controller wherever SLURM's client is
# installed but no cluster is up (CI installs it for tests/test_slurm.py). No test but the SLURM
# ones needs a cluster: give the others an empty SLURM config, on which scontrol fails at once.
# tests/test_slurm.py puts the original value back for its own commands. pytest-xdist's workers
# inherit the environment this sets, so the original travels in a variable of its own.
_UNSET = "<unset>"
os.environ.setdefault("LANDSCAPE_TEST_SLURM_CONF", os.environ.get("SLURM_CONF", _UNSET))
ORIGINAL_SLURM_CONF = (None if os.environ["LANDSCAPE_TEST_SLURM_CONF"] == _UNSET
                       else os.environ["LANDSCAPE_TEST_SLURM_CONF"])
os.environ.setdefault("SLURM_CONF", os.devnull)

keep_freed_memory()  # in-process tests allocate like the stages do (landscape/allocator.py)


def synthetic_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Learnable images: a class-dependent bright band plus noise; balanced labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for c in range(10):
        images[labels == c, 2 * c + 3:2 * c + 6, :] += 150
    return images, labels.astype(np.uint8)


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim,
                                                                     *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb", compresslevel=1) as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


def make_split(n: int, seed: int = 0) -> Split:
    images, labels = synthetic_arrays(n, seed)
    return Split(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))


def write_prepared(path: Path, n_train: int = 600, n_test: int = 200) -> Path:
    """A file in the format of the prepare-data stage, with synthetic content."""
    tr, te = make_split(n_train, 1), make_split(n_test, 2)
    blob = {"source": {"synthetic": "tests"},
            "train": {"images": tr.images, "labels": tr.labels},
            "test": {"images": te.images, "labels": te.labels},
            "fingerprint": fingerprint(tr.images, tr.labels, te.images, te.labels),
            "config": {"train_size": n_train, "test_size": n_test, "seed": 0}}
    torch.save(blob, path)
    return path


# Columns that hold timings, and tables whose rows of a run depend on the study's other runs
# (the findings): left out when one run is compared across two executions.
TIME_COLUMNS = {"wall_time", "train_seconds", "seconds"}
ACROSS_RUNS = {"findings"}


def compare_run_rows(a_dir: Path, b_dir: Path, run: str) -> tuple[list[str], dict[str, list]]:
    """Every table of ``b_dir`` with a ``run`` column that has rows of ``run``, against the same
    table in ``a_dir`` on those rows (timing columns aside): (tables compared, {table: columns
    or ["rows"] that differ})."""
    from landscape.tables import read_table

    compared, differ = [], {}
    for path in sorted(b_dir.glob("*.parquet")):
        b = read_table(path)
        if path.stem in ACROSS_RUNS or "run" not in b.columns or run not in set(b["run"]):
            continue
        a = read_table(a_dir / path.name)
        keep = [c for c in b.columns if c not in TIME_COLUMNS]
        a, b = ((df.loc[df["run"] == run, keep].reset_index(drop=True)) for df in (a, b))
        if len(a) != len(b):
            differ[path.stem] = ["rows"]
        elif cols := [c for c in keep if not a[c].equals(b[c])]:
            differ[path.stem] = cols
        compared.append(path.stem)
    return compared, differ


@pytest.fixture
def tiny_splits() -> tuple[Split, Split]:
    return make_split(320, 1), make_split(160, 2)


@pytest.fixture
def prepared_file(tmp_path) -> Path:
    return write_prepared(tmp_path / "data.pt")


@pytest.fixture(scope="module")
def one_thread():
    """Two shared cores: torch's default threads make tiny forward passes 3-5× slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run_smoke(repo: Path) -> Path:
    import time

    from .test_workflow import copy_repo, snakemake

    copy_repo(repo)
    t0 = time.perf_counter()
    snakemake(repo)
    print(f"smoke study: {time.perf_counter() - t0:.1f} s")
    return repo


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> Path:
    """The whole smoke study (tests/smoke.yaml), run once per test session in a copy of the
    repository; the workflow, SLURM, slices and curvature tests all read (or copy) it.

    Under pytest-xdist (`make test` runs one worker per core) the first worker that asks runs the
    study into a folder all workers share, under a file lock; each worker then works on a copy of
    its own (results and Snakemake's records included), because some tests edit files in it."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return _run_smoke(tmp_path_factory.mktemp("smoke") / "repo")
    shared = tmp_path_factory.getbasetemp().parent / "smoke"  # common to this session's workers
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "done").exists():
            shutil.rmtree(shared / "repo", ignore_errors=True)  # another worker's failed try
            _run_smoke(shared / "repo")
            (shared / "done").touch()
    own = tmp_path_factory.mktemp("smoke") / "repo"
    shutil.copytree(shared / "repo", own, symlinks=True)
    return own


# The longest items go first, so that `make test`'s workers (pytest-xdist, --dist loadfile) are
# not left waiting at the end for one of them: the real-SLURM study (it runs the smoke study beside
# its own), then the end-to-end workflow tests (the diverged-run study first in its file).
FIRST = ("test_slurm.py", "test_workflow.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))
