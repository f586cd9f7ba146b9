"""Figures read well at the size they are produced: no overlapping tick labels; a run has one
colour (and marker, line style) in every figure; figures are written as PNG plus the configured
vector copies."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from landscape.plots import log_axis, overlapping_tick_labels
from landscape.plots.hessian import curvature_vs_generalisation


def _runs(lmax):
    rows = []
    for i in range(len(lmax)):
        rows.append({"run": f"r{i}", "model": "cnn", "optimizer": "sgd",
                     "rho": 0.0, "lr": [0.02, 0.1][i % 2],
                     "batch_size": [32, 128, 512][i % 3], "weight_decay": 0.0, "seed": 1,
                     "status": "ok", "test_acc": 0.8 + 0.01 * i, "gap_loss": 0.02 * i,
                     "gap_error": 0.01 * i})
    runs = pd.DataFrame(rows)
    eigs = pd.DataFrame({"run": runs["run"], "method": "lanczos", "which": "largest_algebraic",
                         "k": 1, "eigenvalue": lmax, "eval_set": "train[512,seed=0]"})
    trace = pd.DataFrame({"run": runs["run"], "method": "hutchinson",
                          "trace": np.asarray(lmax) * 30, "std_error": 5.0})
    return runs, eigs, trace


@pytest.mark.parametrize("lmax", [[2.1, 3.0, 4.4, 5.2, 6.9, 8.8],     # inside one decade
                                  [1.5, 9.0, 40.0, 170.0, 600.0, 2500.0]])
def test_curvature_figure_tick_labels_do_not_overlap(lmax):
    runs, eigs, trace = _runs(lmax)
    fig = curvature_vs_generalisation(eigs, trace, runs)
    assert overlapping_tick_labels(fig) == []
    plt.close(fig)


def test_overlap_check_can_fail():
    """Matplotlib's default log axis over less than a decade labels minor ticks that collide."""
    fig, ax = plt.subplots(figsize=(2.5, 2))
    ax.plot([2.1, 8.8], [1, 2])
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(__import__("matplotlib").ticker.LogFormatterSciNotation(
        labelOnlyBase=False))
    assert overlapping_tick_labels(fig)
    ax.clear()
    ax.plot([2.1, 8.8], [1, 2])
    log_axis(ax, "x")
    assert overlapping_tick_labels(fig) == []
    plt.close(fig)


# ---- one encoding of runs in every figure ----

def _study():
    """Six runs (η × batch size, one seed), each with its own value v (0.51, 0.52, …) that the
    tables below draw as a constant line or a single point, so that a figure's artists can be
    traced back to their run."""
    rows = []
    for i, (lr, bs) in enumerate([(lr, bs) for lr in (0.02, 0.1) for bs in (32, 128, 512)]):
        v = 0.51 + 0.01 * i
        rows.append({"run": f"cnn_sgd_lr{lr:g}_bs{bs}_wd0_s1", "model": "cnn",
                     "optimizer": "sgd",
                     "rho": 0.0, "lr": lr, "batch_size": bs, "weight_decay": 0.0,
                     "seed": 1, "status": "ok", "test_acc": v, "gap_loss": 0.02 * i,
                     "gap_error": 0.01 * i})
    runs = pd.DataFrame(rows)
    return runs, dict(zip(runs["run"], runs["test_acc"], strict=True))


def _run_colours(fig, value_of: dict[str, float]) -> dict[str, set]:
    """For each run: the colours of the figure's lines whose finite y values all equal the run's
    value (RGBA tuples, rounded)."""
    from matplotlib.colors import to_rgba

    out: dict[str, set] = {}
    for ax in fig.axes:
        for line in ax.lines:
            y = np.asarray(line.get_ydata(), dtype=float)
            y = y[np.isfinite(y)]
            if not y.size:
                continue
            for run, v in value_of.items():
                if np.allclose(y, v, rtol=0, atol=1e-9):
                    rgba = tuple(round(c, 4) for c in to_rgba(line.get_color()))
                    out.setdefault(run, set()).add(rgba)
    return out


def _tables(runs: pd.DataFrame, value_of: dict[str, float]) -> dict[str, pd.DataFrame]:
    """The tables of every figure that draws runs, with each run's curve or point at y = v."""
    from landscape.generalisation import MEASURES

    ids, v = list(value_of), list(value_of.values())
    ev = {"eval_set": "train[128,seed=0]"}
    lr = dict(zip(runs["run"], runs["lr"], strict=True))
    t = {"eigs": pd.DataFrame({"run": ids, "method": "lanczos", "which": "largest_algebraic",
                               "k": 1, "eigenvalue": 3.0 + np.arange(len(ids)), **ev}),
         "trace": pd.DataFrame({"run": ids, "method": "hutchinson", "trace": 30.0,
                                "std_error": 1.0})}
    t["sharpness"] = pd.DataFrame([{"run": r, "optimizer": "sgd",
                                    "rho": 0.0, "momentum": 0.9, "epoch": e,
                                    "lambda_max": value_of[r], "two_over_lr": 2 / lr[r],
                                    "eos_threshold": 3.8 / lr[r], **ev}
                                   for r in ids for e in (0.0, 1.0, 2.0)])
    t["training"] = pd.DataFrame([{"run": r, "epoch": e, "train_loss": value_of[r],
                                   "test_loss": value_of[r], "test_acc": value_of[r]}
                                  for r in ids for e in (0, 1, 2)])
    t["noise"] = pd.DataFrame([{"run": r, "mode": m, "sigma": s, "draw": d, "split": "test",
                                "accuracy": value_of[r], **ev}
                               for r in ids for m in ("absolute", "relative")
                               for s in (0.0, 0.01, 0.1) for d in (0, 1)])
    t["measures"] = runs.assign(gap_error=v, **{m.name: np.nan for m in MEASURES})
    t["measures"]["lambda_max"] = 3.0 + np.arange(len(ids))
    t["correlations"] = pd.DataFrame({"measure": ["lambda_max"], "sign": [1],
                                      "gap": ["gap_error"], "tau": [0.5], "psi": [0.5],
                                      "n": [len(ids)]})
    t["slice_1d"] = pd.DataFrame([{"run": r, "direction": "random", "direction_index": 0,
                                   "normalization": "filter", "alpha": a, "split": s,
                                   "loss": value_of[r], "accuracy": value_of[r], **ev}
                                  for r in ids for a in np.linspace(-1, 1, 9)
                                  for s in ("train", "test")])
    t["spawn"] = pd.DataFrame([{"run": r, "spawn_step": k, "spawn_epoch": k / 10, "split": s,
                                "loss_barrier": value_of[r], "error_barrier": value_of[r],
                                "distance": value_of[r], **ev}
                               for r in ids[:3] for k in (0, 10) for s in ("train", "test")])
    t["density"] = pd.DataFrame([{"run": r, "eigenvalue": x, "density": value_of[r],
                                  "n_starts": 2, "n_steps": 8, "n_hvp": 8, **ev}
                                 for r in ids for x in (0.0, 1.0, 2.0)])
    return t


def _figures(runs: pd.DataFrame, value_of: dict[str, float]) -> dict[str, plt.Figure]:
    """Every figure that draws runs (by its file name)."""
    from landscape.plots.connectivity import spawn_chart
    from landscape.plots.generalisation import measures_vs_gap
    from landscape.plots.hessian import density_grid, sharpness_trajectories
    from landscape.plots.robustness import noise_curves
    from landscape.plots.slices import curves_1d
    from landscape.plots.training import final_vs_hparams, training_curves

    t = _tables(runs, value_of)
    return {
        "hessian_generalisation": curvature_vs_generalisation(t["eigs"], t["trace"], runs),
        "hessian_sharpness": sharpness_trajectories(t["sharpness"], runs),
        "hessian_density": density_grid(t["density"], t["eigs"], runs),
        "training_curves": training_curves(t["training"], runs),
        "final_vs_hparams": final_vs_hparams(runs),
        "robustness_noise": noise_curves(t["noise"], runs),
        "generalisation_measures": measures_vs_gap(t["measures"], t["correlations"], runs),
        "slices_1d": curves_1d(t["slice_1d"], runs),
        "connectivity_spawn": spawn_chart(t["spawn"], runs),
    }


def test_a_run_has_the_same_colour_in_two_figures():
    """The curvature and the sharpness figure colour each run alike (they used to colour by η
    with viridis and by batch size with plasma)."""
    from landscape.plots.hessian import sharpness_trajectories

    runs, value_of = _study()
    t = _tables(runs, value_of)
    a = _run_colours(curvature_vs_generalisation(t["eigs"], t["trace"], runs), value_of)
    b = _run_colours(sharpness_trajectories(t["sharpness"], runs), value_of)
    plt.close("all")
    assert set(a) == set(b) == set(value_of)
    for run in value_of:
        assert len(a[run]) == 1 and a[run] == b[run], (run, a[run], b[run])
    # one colour per value of the colour hyper-parameter (η), different values apart
    by_lr: dict[float, set] = {}
    for run, lr in zip(runs["run"], runs["lr"], strict=True):
        by_lr.setdefault(lr, set()).update(a[run])
    assert all(len(c) == 1 for c in by_lr.values()) and len(set.union(*by_lr.values())) == 2


def test_every_figure_draws_a_run_in_its_encoding_colour():
    """Each figure that draws runs gives every run it shows one colour: that of the encoding."""
    from matplotlib.colors import to_rgba

    from landscape.plots.encoding import Encoding

    runs, value_of = _study()
    enc = Encoding(runs)
    expected = {r: {tuple(round(c, 4) for c in to_rgba(enc.colour(r)))} for r in value_of}
    for name, fig in _figures(runs, value_of).items():
        seen = _run_colours(fig, value_of)
        plt.close(fig)
        assert seen, f"{name}: no run found among its lines"
        for run, colours in seen.items():
            assert colours == expected[run], (name, run, colours, expected[run])


def test_encoding_values_stay_apart_in_greyscale():
    """Colours of the values of one hyper-parameter differ in lightness (a greyscale print keeps
    them apart) and follow the values' order; the second one varied gets markers and styles."""
    from matplotlib.colors import to_rgb

    from landscape.plots.encoding import Encoding

    runs = pd.DataFrame({"run": [f"r{i}" for i in range(12)],
                         "lr": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3] * 2,
                         "batch_size": [32] * 6 + [256] * 6, "weight_decay": 0.0,
                         "optimizer": "sgd", "rho": 0.0, "model": "cnn", "seed": 1})
    enc = Encoding(runs)
    assert (enc.colour_by, enc.style_by) == ("lr", "batch_size")
    grey = [np.dot(to_rgb(enc.colours[v]), [0.299, 0.587, 0.114]) for v in sorted(enc.colours)]
    assert np.all(np.diff(grey) > 0.05), grey
    assert enc.marker("r0") != enc.marker("r6") and enc.style("r0") != enc.style("r6")
    assert enc.colour("r0") == enc.colour("r6") != enc.colour("r1")
    # only one hyper-parameter varies: markers and styles repeat it, a second cue
    one = Encoding(runs[runs["batch_size"] == 32])
    assert one.style_by == one.colour_by == "lr"
    assert len({one.marker(r) for r in one.rows}) == 6
    # the encoding of the whole study holds for a subset of its runs
    assert Encoding(runs).colour("r3") == enc.colour("r3")
    assert enc.colour("not-a-run") == "0.55"


# ---- figure files ----

def test_save_writes_vector_copies(tmp_path):
    from landscape.plots import save

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    written = save(fig, tmp_path / "figures" / "x.png", dpi=50, formats=["png", "pdf", "svg"])
    assert written == [tmp_path / "figures" / f"x.{s}" for s in ("png", "pdf", "svg")]
    assert (tmp_path / "figures/x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "figures/x.pdf").read_bytes().startswith(b"%PDF")
    assert ET.parse(tmp_path / "figures/x.svg").getroot().tag.endswith("svg")
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["x.pdf", "x.png", "x.svg"]
    fig, _ = plt.subplots()
    assert save(fig, tmp_path / "y.png", dpi=50) == [tmp_path / "y.png"]
    assert not (tmp_path / "y.pdf").exists()


@pytest.mark.slow
def test_dry_run_plans_the_vector_copies(tmp_path):
    """With plots.formats [png, pdf], every figure's PDF is an output of its plot rule (an empty
    list of copies, the default, is a valid output too)."""
    from .test_workflow import copy_repo

    repo = copy_repo(tmp_path / "repo")
    (repo / "pdf.yaml").write_text("plots:\n  formats: [png, pdf]\n")
    (repo / "png.yaml").write_text("plots:\n  formats: [png]\n")  # smoke.yaml asks for pdf

    def dry(*configs: str) -> str:
        out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1",
                              "--configfile", "tests/smoke.yaml", *configs], cwd=repo,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout + out.stderr

    default = dry("png.yaml")
    pngs = set(re.findall(r"results/smoke/figures/\S+?\.png", default))
    assert len(pngs) > 10 and not re.search(r"figures/\S+?\.(pdf|svg)", default)
    pdfs = set(re.findall(r"results/smoke/figures/\S+?\.pdf", dry("pdf.yaml")))
    assert pdfs == {p[:-4] + ".pdf" for p in pngs}


def test_sharpness_panels_say_why_a_threshold_is_missing():
    """SGD panels draw (2 + 2β)/η; Adam and SAM panels draw none and say why, each its own
    reason (a SAM panel must not call itself Adam)."""
    from landscape.plots.hessian import sharpness_trajectories

    rows, runs = [], []
    for opt, thr in (("sgd", 38.0), ("adam", float("nan")), ("sam", float("nan"))):
        run = f"cnn_{opt}"
        runs.append({"run": run, "model": "cnn", "optimizer": opt,
                     "rho": 0.05 if opt == "sam" else 0.0, "lr": 0.1, "batch_size": 32,
                     "weight_decay": 0.0, "seed": 1, "status": "ok"})
        rows += [{"run": run, "optimizer": opt, "momentum": 0.9, "epoch": e, "lambda_max": 5.0,
                  "two_over_lr": 20.0, "eos_threshold": thr, "eval_set": "train[128,seed=0]"}
                 for e in (0.0, 1.0)]
    fig = sharpness_trajectories(pd.DataFrame(rows), pd.DataFrame(runs))
    notes = {ax.get_title(): " ".join(t.get_text() for t in ax.texts) for ax in fig.axes
             if ax.get_title()}
    plt.close(fig)
    assert "Adam" in notes["adam η=0.1"] and "Adam" not in notes["sam ρ=0.05 η=0.1"]
    assert "SAM" in notes["sam ρ=0.05 η=0.1"] and notes["sgd η=0.1"] == ""
