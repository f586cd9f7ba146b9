"""Checkpoints: model state plus metadata, saved atomically, verified on load.

The metadata holds the run's configuration slice, seed, library versions and data fingerprint.
``load_checkpoint(path, expect=...)`` refuses a checkpoint whose configuration differs from the
one the caller expects (a checkpoint from another config) and any altered or truncated file.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from .io import IntegrityError, load_verified, save_verified

REMEDY = "delete it and rerun its training job (snakemake reruns it when it is missing)"


def library_versions() -> dict[str, str]:
    import numpy

    return {"torch": str(torch.__version__), "numpy": str(numpy.__version__),
            "python": platform.python_version()}


def save_checkpoint(path: str | Path, state_dict: dict, meta: dict) -> None:
    """Save ``state_dict`` (tensors moved to CPU) and ``meta`` (plain Python types)."""
    state = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    save_verified(path, {"kind": "checkpoint", "meta": meta, "state_dict": state})


def load_checkpoint(path: str | Path, expect: dict | None = None) -> dict:
    """Load and verify a checkpoint; ``expect`` maps meta['config'] keys to required values."""
    blob = load_verified(path, "checkpoint", REMEDY)
    if blob.get("kind") != "checkpoint":
        raise IntegrityError(f"{path}: not a checkpoint (kind={blob.get('kind')!r}); {REMEDY}.")
    if expect:
        cfg = blob["meta"].get("config", {})
        bad = {k: (cfg.get(k), v) for k, v in expect.items() if cfg.get(k) != v}
        if bad:
            detail = ", ".join(f"{k}: file has {a!r}, expected {b!r}" for k, (a, b) in bad.items())
            raise IntegrityError(f"{path}: checkpoint from another config ({detail}); {REMEDY}.")
    return blob


def load_model(path: str | Path, device: str | torch.device = "cpu",
               expect: dict | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild the trained model from a checkpoint: (model in eval mode on device, meta)."""
    from .models import build_model

    blob = load_checkpoint(path, expect)
    cfg = blob["meta"]["config"]
    model = build_model(cfg["model"], **cfg.get("model_options", {}))
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval(), blob["meta"]


def load_snapshots(path: str | Path) -> dict:
    """Trajectory snapshots: {'meta', 'step': [int], 'epoch': [float], 'states': [state_dict],
    'dense': {'step', 'epoch', 'states'}}.

    ``epoch`` is fractional for snapshots inside an epoch (step / steps per epoch). The top-level
    lists are the trajectory's (step 0, ``train.snapshot_steps``, epoch ends: PCA, spawning);
    ``dense`` holds the extra ones of ``train.sharpness_snapshots`` (empty in files written
    before it existed), which only the sharpness trajectory reads (``all_snapshots``).
    """
    blob = load_verified(path, "snapshots", REMEDY)
    if blob.get("kind") != "snapshots":
        raise IntegrityError(f"{path}: not a snapshots file (kind={blob.get('kind')!r}); {REMEDY}.")
    blob.setdefault("dense", {"step": [], "epoch": [], "states": []})
    return blob


def all_snapshots(blob: dict) -> list[dict]:
    """Every snapshot of a ``load_snapshots`` blob, trajectory and dense, in step order: dicts
    with step, epoch, state and ``trajectory`` (True for the top-level ones)."""
    out = [{"step": int(s), "epoch": float(e), "state": st, "trajectory": True}
           for s, e, st in zip(blob["step"], blob["epoch"], blob["states"], strict=True)]
    d = blob["dense"]
    out += [{"step": int(s), "epoch": float(e), "state": st, "trajectory": False}
            for s, e, st in zip(d["step"], d["epoch"], d["states"], strict=True)]
    return sorted(out, key=lambda r: (r["step"], not r["trajectory"]))
