"""Atomic file writes and content checksums.

Every output is written to a temporary file in the destination folder and renamed into place, so
an interrupted job never leaves a partial file that a later run would trust.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError


@functools.cache
def _umask() -> int:
    """The process's umask, read once (reading it means setting it, briefly)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def tensor_digest(obj, h=None) -> str:
    """SHA-256 over a nested structure of tensors, numbers and strings (order-sensitive)."""
    import torch  # imported here: table-only stages need not pay for importing torch

    top = h is None
    h = h or hashlib.sha256()
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        # reshape(-1): a 0-d tensor (e.g. Adam's step counter) cannot be viewed as bytes
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        for k in obj:
            h.update(repr(k).encode())
            tensor_digest(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        h.update(f"seq{len(obj)}".encode())
        for v in obj:
            tensor_digest(v, h)
    else:
        h.update(repr(obj).encode())
    return h.hexdigest() if top else ""


class IntegrityError(UserError, RuntimeError):
    """A file is truncated, altered, or belongs to another configuration."""


def save_verified(path: str | Path, payload: dict) -> None:
    """torch.save ``payload`` atomically with a SHA-256 of its content."""
    import torch

    blob = dict(payload)
    blob["sha256"] = tensor_digest(payload)
    buf = io.BytesIO()  # saving to a buffer keeps the bytes independent of the file name
    torch.save(blob, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def load_verified(path: str | Path, what: str = "file", remedy: str = "delete it and rerun "
                  "the stage that makes it") -> dict:
    """Load a file written by ``save_verified``; raise IntegrityError naming it if damaged."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise IntegrityError(f"{path}: {what} not found; {remedy}.")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means damage
        raise IntegrityError(f"{path}: {what} is truncated or corrupt ({type(exc).__name__}); "
                             f"{remedy}.") from exc
    if not isinstance(blob, dict) or "sha256" not in blob:
        raise IntegrityError(f"{path}: not a landscape {what} (no checksum); {remedy}.")
    stored = blob.pop("sha256")
    if tensor_digest(blob) != stored:
        raise IntegrityError(f"{path}: {what} content does not match its checksum (altered or "
                             f"corrupt); {remedy}.")
    return blob
