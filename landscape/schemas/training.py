"""Table schemas of training: per-epoch metrics and one summary row
per run (landscape/train.py).

One ``register`` call per table: name, row key and columns (how and why: ``landscape.schemas``).
"""

from __future__ import annotations

from ..tables import RUN_HPARAMS, Col, register

register("training", ["run", "epoch"], RUN_HPARAMS + [
    Col("epoch", "int64", "epochs completed (0 = initialisation)"),
    Col("step", "int64", "optimiser steps completed"),
    Col("train_loss", "float64", "mean cross-entropy on the training set (eval mode)"),
    Col("train_acc", "float64", "accuracy on the training set"),
    Col("test_loss", "float64", "mean cross-entropy on the test set"),
    Col("test_acc", "float64", "accuracy on the test set"),
    Col("lr_now", "float64", "learning rate in use during this epoch"),
    Col("wall_time", "float64", "training seconds so far (excluding evaluation)"),
])

register("runs", ["run"], RUN_HPARAMS + [
    Col("status", "string", "ok or diverged"),
    Col("diverged_step", "int64",
        "optimiser step where the loss became non-finite (-1: never)"),
    Col("stop_at_loss", "float64", "train.stop_at_loss: the training loss at which the run "
        "was to stop (checked on the whole training set at epoch ends); NaN when not set"),
    Col("stop_reason", "string", "why training ended: target (train_loss reached "
        "stop_at_loss), budget (stop_at_loss set, but train.epochs ran out first), epochs (no "
        "stop_at_loss: the fixed train.epochs) or diverged"),
    Col("epochs", "int64", "epochs completed (fewer than train.epochs when it stopped at "
        "stop_at_loss or diverged)"),
    Col("n_params", "int64", "trainable parameters"),
    Col("train_loss", "float64", "final training loss (with stop_reason target: the loss "
        "reached, ≤ stop_at_loss)"),
    Col("train_acc", "float64", "final training accuracy"),
    Col("test_loss", "float64", "final test loss"),
    Col("test_acc", "float64", "final test accuracy"),
    Col("gap_loss", "float64", "generalisation gap: test loss − train loss"),
    Col("gap_error", "float64", "generalisation gap: test error − train error"),
    Col("train_seconds", "float64", "wall-clock seconds spent in optimisation"),
    Col("train_size", "int64", "training samples"),
    Col("test_size", "int64", "test samples"),
    Col("data_fingerprint", "string", "SHA-256 prefix of the exact data used"),
])
