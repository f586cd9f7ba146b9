"""Find, verify and load Fashion-MNIST as in-memory tensors.

Search order (``find_raw_files``): an explicit ``root`` (IDX files, ``.gz`` or not, directly in it
or in ``FashionMNIST/raw``), then the Debian package directory
``/usr/share/datasets/fashion-mnist``, then a torchvision download (only when ``download=True``).

``prepare`` verifies shapes (60000/10000 × 28 × 28), label range and per-class counts, optionally
draws stratified seeded subsets, and returns uint8 images and int64 labels. Training and evaluation
use ``Split`` tensors directly; no per-sample transforms run in the hot loop.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
EXPECTED = {"train": 60000, "test": 10000}
MEAN, STD = 0.5, 0.5  # the original assignment's normalisation
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


SPLITS = ("train", "test")


class DataError(UserError, RuntimeError):
    """Raised for missing, corrupt or inconsistent data files."""


MISSING_HELP = (
    "Fashion-MNIST not found. Get it in one of three ways: "
    "(1) set data.root in the config to a folder holding the four IDX files (.gz or not); "
    "(2) on Debian/Ubuntu run `sudo apt-get install dataset-fashion-mnist` "
    f"(installs them in {DEBIAN_DIR}); "
    "(3) set data.download: true to let torchvision download them."
)


def _locate(folder: Path) -> dict[str, Path] | None:
    for sub in (folder, folder / "FashionMNIST" / "raw", folder / "raw"):
        found = {}
        for key, stem in FILES.items():
            for cand in (sub / stem, sub / f"{stem}.gz"):
                if cand.is_file():
                    found[key] = cand
                    break
        if len(found) == len(FILES):
            return found
    return None


def find_raw_files(root: str | Path | None = None, download: bool = False,
                   cache_dir: str | Path = "results/data/download") -> dict[str, Path]:
    """Return paths of the four IDX files, following the documented search order."""
    searched = []
    if root:
        root = Path(root)
        found = _locate(root)
        if found:
            return found
        if not download:
            raise DataError(f"data.root={str(root)!r} does not hold the four Fashion-MNIST IDX "
                            f"files ({', '.join(FILES.values())}, .gz or not). " + MISSING_HELP)
        searched.append(str(root))
    found = _locate(DEBIAN_DIR)
    if found:
        return found
    if download:
        import torchvision  # local import: only needed for downloads

        torchvision.datasets.FashionMNIST(str(cache_dir), train=True, download=True)
        torchvision.datasets.FashionMNIST(str(cache_dir), train=False, download=True)
        found = _locate(Path(cache_dir))
        if found:
            return found
    raise DataError(MISSING_HELP)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a uint8 array, checking its header."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); the file is corrupt or truncated, "
                        "delete it and fetch it again.") from exc
    if len(data) < 8:
        raise DataError(f"{path}: {len(data)} bytes is too short for an IDX header (corrupt?).")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path}: not a uint8 IDX file (magic {data[:4].hex()}).")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    expected = int(np.prod(dims)) + 4 + 4 * ndim
    if len(data) != expected:
        raise DataError(f"{path}: {len(data)} bytes but its header {dims} needs {expected}; "
                        "the file is truncated or corrupt, fetch it again.")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@dataclass
class Split:
    """One split: uint8 images [N, 28, 28] and int64 labels [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def tensors(self, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Float inputs [N, 1, 28, 28] normalised with mean 0.5, std 0.5, and labels, on device."""
        x = self.images.to(device=device, dtype=torch.float32).div_(255.0)
        x = x.sub_(MEAN).div_(STD).unsqueeze(1)
        return x, self.labels.to(device)


def verify(name: str, images: np.ndarray, labels: np.ndarray, full: bool = True) -> None:
    """Check shapes, label range and class balance of a split; raise DataError if wrong."""
    n = EXPECTED[name]
    if full and (images.shape != (n, 28, 28) or labels.shape != (n,)):
        raise DataError(f"{name} split has images {images.shape} and labels {labels.shape}; "
                        f"expected ({n}, 28, 28) and ({n},).")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{name} split: {images.shape[0]} images but {labels.shape[0]} labels.")
    if labels.size and labels.max() > 9:
        raise DataError(f"{name} split: label {int(labels.max())} outside 0..9.")
    if full:
        counts = np.bincount(labels, minlength=10)
        if not np.all(counts == n // 10):
            raise DataError(f"{name} split: class counts {counts.tolist()} are not {n // 10} each.")


def stratified_subset(labels: torch.Tensor, size: int | None, seed: int) -> torch.Tensor:
    """Indices of a class-stratified, seeded subset of ``size`` samples (sorted); all if None."""
    n = int(labels.shape[0])
    if size is None or size >= n:
        return torch.arange(n)
    if size <= 0:
        raise ValueError(f"subset size must be positive, got {size}")
    g = torch.Generator().manual_seed(seed)
    classes = torch.unique(labels)
    per_class = [torch.nonzero(labels == c).flatten() for c in classes]
    # allocate proportionally, distributing the remainder to the first classes
    quotas = [size * len(ix) // n for ix in per_class]
    for i in range(size - sum(quotas)):
        quotas[i % len(quotas)] += 1
    chosen = [ix[torch.randperm(len(ix), generator=g)[:q]]
              for ix, q in zip(per_class, quotas, strict=True)]
    return torch.sort(torch.cat(chosen)).values


def fingerprint(*tensors: torch.Tensor) -> str:
    """SHA-256 (first 16 hex digits) of the tensors' bytes: identifies the exact data used."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def prepare(root: str | None = None, download: bool = False, train_size: int | None = None,
            test_size: int | None = None, seed: int = 0,
            cache_dir: str | Path = "results/data/download") -> dict:
    """Load, verify and subset Fashion-MNIST; return a dict ready for ``torch.save``."""
    files = find_raw_files(root, download, cache_dir)
    arrays = {k: read_idx(p) for k, p in files.items()}
    out: dict = {"source": {k: str(p) for k, p in files.items()}}
    for name in ("train", "test"):
        images, labels = arrays[f"{name}_images"], arrays[f"{name}_labels"]
        verify(name, images, labels)
        x = torch.from_numpy(images.copy())
        y = torch.from_numpy(labels.astype(np.int64))
        size = train_size if name == "train" else test_size
        idx = stratified_subset(y, size, seed)
        out[name] = {"images": x[idx].clone(), "labels": y[idx].clone()}
    out["fingerprint"] = fingerprint(out["train"]["images"], out["train"]["labels"],
                                     out["test"]["images"], out["test"]["labels"])
    out["config"] = {"train_size": train_size, "test_size": test_size, "seed": seed}
    return out


def load_prepared(path: str | Path) -> tuple[Split, Split, str]:
    """Load ``results/data/fashion_mnist.pt``: (train, test, fingerprint)."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any load failure means a bad file
        raise DataError(f"{path}: cannot load prepared data ({exc}); delete it and rerun "
                        "the prepare_data stage.") from exc
    train = Split(blob["train"]["images"], blob["train"]["labels"])
    test = Split(blob["test"]["images"], blob["test"]["labels"])
    if fingerprint(train.images, train.labels, test.images, test.labels) != blob["fingerprint"]:
        raise DataError(f"{path}: content does not match its fingerprint (corrupt or edited); "
                        "delete it and rerun the prepare_data stage.")
    return train, test, blob["fingerprint"]


def eval_subset(split: Split, size: int | None, seed: int) -> Split:
    """A fixed, seeded, stratified evaluation subset of ``split`` (all of it if size is None)."""
    idx = stratified_subset(split.labels, size, seed)
    return Split(split.images[idx], split.labels[idx])


def eval_set_name(split: str, size: int | None, seed: int) -> str:
    """Label of an evaluation set for tables, e.g. ``train[2048,seed=0]`` or ``test[all]``."""
    return f"{split}[all]" if size is None else f"{split}[{size},seed={seed}]"


def named_eval_subset(base: Split, name: str, size: int | None, seed: int) -> tuple[Split, str]:
    """``eval_subset`` of ``base`` with its table label (``eval_set_name``): ``size`` None or at
    least the split's size means the whole split (labelled ``<name>[all]``)."""
    size = None if size is None or size >= len(base) else int(size)
    return eval_subset(base, size, seed), eval_set_name(name, size, seed)


def eval_tensors(path: str | Path, split: str, size: int | None, seed: int,
                 device) -> tuple[torch.Tensor, torch.Tensor, str, int]:
    """A seeded stratified evaluation subset of the prepared data at ``path``:
    ``(x, y, eval_set name, size)``; ``size`` None (or ≥ the split) means the whole split."""
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r}. Supported splits are {list(SPLITS)}.")
    train, test, _ = load_prepared(path)
    sub, name = named_eval_subset(train if split == "train" else test, split, size, seed)
    x, y = sub.tensors(device)
    return x, y, name, len(sub)
