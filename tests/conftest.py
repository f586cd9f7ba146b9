"""Shared fixtures: tiny synthetic datasets (no network, no real files needed)."""

from __future__ import annotations

import gzip
import os
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
# tests/test_slurm.py puts the original value back for its own commands.
ORIGINAL_SLURM_CONF = os.environ.get("SLURM_CONF")
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


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> Path:
    """The whole smoke study (tests/smoke.yaml), run once per test session in a copy of the
    repository; the workflow, SLURM, slices and curvature tests all read (or copy) it."""
    import time

    from .test_workflow import copy_repo, snakemake

    repo = copy_repo(tmp_path_factory.mktemp("smoke") / "repo")
    t0 = time.perf_counter()
    snakemake(repo)
    print(f"smoke study: {time.perf_counter() - t0:.1f} s")
    return repo
