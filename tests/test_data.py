"""Finding, verifying and subsetting Fashion-MNIST."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from landscape import data
from landscape.data import DataError, find_raw_files, prepare, read_idx, stratified_subset

from .conftest import synthetic_arrays, write_idx

REAL = data.DEBIAN_DIR


def write_full_set(folder: Path, gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", 60000), ("t10k", 10000)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 0, 0] = labels
        write_idx(folder / f"{name}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{name}-labels-idx1-ubyte", labels, gz)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    images, labels = synthetic_arrays(50)
    p = write_idx(tmp_path / "img", images, gz)
    q = write_idx(tmp_path / "lab", labels, gz)
    assert np.array_equal(read_idx(p), images)
    assert np.array_equal(read_idx(q), labels)


def test_truncated_file_is_named(tmp_path):
    images, _ = synthetic_arrays(50)
    p = write_idx(tmp_path / "train-images-idx3-ubyte", images)
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*truncated"):
        read_idx(p)


def test_corrupt_gzip_is_named(tmp_path):
    images, _ = synthetic_arrays(50)
    p = write_idx(tmp_path / "train-images-idx3-ubyte", images, gz=True)
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        read_idx(p)


def test_bad_magic(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 20)
    with pytest.raises(DataError, match="not a uint8 IDX"):
        read_idx(p)


def test_missing_data_lists_three_ways(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "nope")
    with pytest.raises(DataError) as exc:
        find_raw_files(None, download=False)
    msg = str(exc.value)
    assert "data.root" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "data.download: true" in msg


def test_root_takes_precedence_and_accepts_torchvision_layout(tmp_path, monkeypatch):
    write_full_set(tmp_path / "FashionMNIST" / "raw")
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "nope")
    files = find_raw_files(tmp_path)
    assert all("FashionMNIST/raw" in str(p) for p in files.values())
    bad = tmp_path / "empty"
    bad.mkdir()
    with pytest.raises(DataError, match="does not hold"):
        find_raw_files(bad)


def test_prepare_verifies_and_subsets(tmp_path, monkeypatch):
    write_full_set(tmp_path / "d")
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "nope")
    blob = prepare(str(tmp_path / "d"), train_size=1000, test_size=100, seed=3)
    y = blob["train"]["labels"]
    assert y.shape == (1000,) and torch.bincount(y, minlength=10).tolist() == [100] * 10
    assert blob["test"]["images"].shape == (100, 28, 28)
    again = prepare(str(tmp_path / "d"), train_size=1000, test_size=100, seed=3)
    assert again["fingerprint"] == blob["fingerprint"]
    other = prepare(str(tmp_path / "d"), train_size=1000, test_size=100, seed=4)
    assert other["fingerprint"] != blob["fingerprint"]


def test_wrong_counts_rejected(tmp_path, monkeypatch):
    folder = tmp_path / "d"
    write_full_set(folder)
    labels = np.zeros(60000, np.uint8)  # all one class
    write_idx(folder / "train-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match="class counts"):
        prepare(str(folder))
    write_idx(folder / "train-labels-idx1-ubyte", np.full(60000, 12, np.uint8))
    with pytest.raises(DataError, match="label 12 outside"):
        prepare(str(folder))


def test_stratified_subset_is_seeded_and_balanced():
    labels = torch.arange(1000) % 10
    a = stratified_subset(labels, 100, 0)
    assert torch.equal(a, stratified_subset(labels, 100, 0))
    assert not torch.equal(a, stratified_subset(labels, 100, 1))
    assert torch.bincount(labels[a]).tolist() == [10] * 10
    assert len(stratified_subset(labels, None, 0)) == 1000


def test_split_tensors_normalised(tiny_splits):
    x, y = tiny_splits[0].tensors()
    assert x.shape == (320, 1, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert y.dtype == torch.int64


def test_load_prepared_detects_edits(prepared_file):
    train, test, fp = data.load_prepared(prepared_file)
    blob = torch.load(prepared_file)
    blob["train"]["labels"][0] = (blob["train"]["labels"][0] + 1) % 10
    torch.save(blob, prepared_file)
    with pytest.raises(DataError, match="fingerprint"):
        data.load_prepared(prepared_file)


@pytest.mark.skipif(not (REAL / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    blob = prepare(None)
    assert blob["train"]["images"].shape == (60000, 28, 28)
    assert blob["test"]["images"].shape == (10000, 28, 28)
    assert torch.bincount(blob["train"]["labels"]).tolist() == [6000] * 10
