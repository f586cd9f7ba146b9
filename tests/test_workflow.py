"""The Snakemake workflow end to end on the smoke config, and what reruns after a change.

The repository's workflow, package and configs are copied into a temporary folder, so that
touching package files there (to simulate edits) does not disturb the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from landscape.tables import SCHEMAS, read_table

from .conftest import REPO

pytestmark = pytest.mark.slow
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def copy_repo(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for item in ("workflow", "landscape"):
        shutil.copytree(REPO / item, dest / item,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dest / "tests").mkdir()
    shutil.copy(REPO / "tests" / "smoke.yaml", dest / "tests" / "smoke.yaml")
    for name in ("config.yaml", "environment.yml", "pyproject.toml"):
        shutil.copy(REPO / name, dest / name)
    return dest


def snakemake(repo: Path, *args: str, config: str = "tests/smoke.yaml", check: bool = True):
    env = {**os.environ, "PYTHONPATH": str(repo)}
    out = subprocess.run([*SNAKEMAKE, "--cores", "2", *args, "--configfile", config], cwd=repo,
                         env=env, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out


def planned(repo: Path, config: str = "tests/smoke.yaml") -> dict[str, int]:
    """Rules (and job counts) a dry run would execute."""
    out = snakemake(repo, "-n", "--quiet", "rules", config=config)
    return job_counts(out.stdout + out.stderr)


def job_counts(text: str) -> dict[str, int]:
    """Rules and job counts from Snakemake's "Job stats" table (without `all`); {} if none."""
    m = re.search(r"Job stats:\n(.*?)\n\s*total", text, re.S)
    if not m:
        assert "nothing to be done" in text.lower(), text
        return {}
    jobs = {name: int(count) for name, count in
            (line.split() for line in m.group(1).splitlines()[2:])}
    jobs.pop("all", None)
    return jobs


def planned_runs(repo: Path, config: str) -> list[str]:
    out = snakemake(repo, "-n", config=config)
    return re.findall(r"rule train:.*?wildcards: run=(\S+)", out.stdout + out.stderr, re.S)


# what is rebuilt from the tables and figures: the findings page, the LaTeX report and its PDF
# (the PDF only where pdfLaTeX is installed: it is a target only then)
PAGES = {"findings", "paper"} | ({"paper_pdf"} if shutil.which("pdflatex") else set())


def results(repo: Path) -> Path:
    return repo / yaml.safe_load((repo / "tests/smoke.yaml").read_text())["results_dir"]


def write_config(repo: Path, name: str, edit) -> str:
    cfg = yaml.safe_load((repo / "tests/smoke.yaml").read_text())
    edit(cfg)
    (repo / name).write_text(yaml.safe_dump(cfg))
    return name


def test_diverged_run_is_skipped_downstream(tmp_path):
    """A run whose loss becomes non-finite is recorded as diverged; every downstream stage skips
    it with a visible reason and the rest of the study completes and reports.

    Two plain CNNs: η = 0.05 trains, η = 5 diverges within the first epoch (a CNN with BatchNorm
    does not diverge at any η the schema allows). That a run's numbers do not depend on the other
    runs of its study is checked by tests/test_slurm.py, on a one-run study against the smoke
    study."""
    repo = copy_repo(tmp_path / "repo")

    def edit(c):
        c["study"].update(model=["cnn"], optimizer=["sgd"], lr=[0.05, 5.0])
        c["models"] = {"cnn": {"width": 4, "hidden": 16}}
        c["connectivity"]["vary"] = ["lr"]

    name = write_config(repo, "diverge.yaml", edit)
    snakemake(repo, config=name)
    res = results(repo)
    runs = read_table(res / "tables/runs.parquet", "runs").set_index("run")
    bad = "cnn_sgd_lr5_bs64_wd0_s1"
    assert runs.loc[bad, "status"] == "diverged" and runs.loc[bad, "diverged_step"] >= 0
    assert (runs.drop(index=bad)["status"] == "ok").all() and len(runs) == 2
    skipped = read_table(res / "tables/skipped.parquet", "skipped")
    assert set(skipped["run"]) == {bad}
    assert skipped["reason"].str.contains("diverged").all()
    assert "connectivity" in set(skipped["stage"])  # its pair (η 0.05 vs 5) is skipped too
    for table in (res / "tables").glob("*.parquet"):
        df = read_table(table)
        if table.stem == "sharpness_trajectory":
            # sharpness along training is measured up to the divergence, on purpose: it shows
            # whether sharpness crossed the stability threshold before the blow-up
            assert (df.loc[df["run"] == bad, "step"] <= runs.loc[bad, "diverged_step"]).all()
        elif table.stem not in ("runs", "training", "skipped") and "run" in df.columns:
            assert bad not in set(df["run"]), table.name
            assert len(df), f"{table.name} is empty: the healthy run was not measured"
    assert (res / "figures/training_curves.png").exists()


def test_smoke_outputs(smoke):
    res = results(smoke)
    runs = read_table(res / "tables/runs.parquet", "runs")
    assert len(runs) == 2 and set(runs["status"]) == {"ok"}
    training = read_table(res / "tables/training.parquet", "training")
    assert len(training) == 2 * 3  # epochs 0..2 for two runs
    for fig in ("training_curves.png", "final_vs_hparams.png"):
        assert (res / "figures" / fig).stat().st_size > 10_000
    for table in (res / "tables").glob("*.parquet"):
        read_table(table, table.stem if table.stem in SCHEMAS else None)
    # train.sharpness_snapshots: 4 dense snapshots per run measured beside the trajectory's
    sharp = read_table(res / "tables/sharpness_trajectory.parquet", "sharpness_trajectory")
    assert (sharp[~sharp["trajectory"]].groupby("run").size() == 4).all()
    assert sharp.groupby("run")["step"].apply(lambda s: s.is_monotonic_increasing).all()
    findings = read_table(res / "tables/findings.parquet", "findings")
    assert "edge_of_stability_peak" in set(findings["key"])


def test_second_run_does_nothing(smoke):
    t0 = time.perf_counter()
    out = snakemake(smoke)
    elapsed = time.perf_counter() - t0
    assert "Nothing to be done" in out.stdout + out.stderr
    print(f"no-op rerun took {elapsed:.1f} s")


def test_plot_option_reruns_only_plots(smoke):
    name = write_config(smoke, "plots.yaml", lambda c: c["plots"].update(dpi=81))
    jobs = planned(smoke, name)
    # the findings page and the LaTeX report embed every figure, so they are redone with them
    assert jobs and all(rule.startswith("plot_") or rule in PAGES for rule in jobs), jobs


def test_new_seed_runs_only_new_jobs(smoke):
    name = write_config(smoke, "seed.yaml", lambda c: c["study"]["seed"].append(7))
    runs = planned_runs(smoke, name)
    assert sorted(runs) == ["cnn_bn_sam_rho0.05_lr0.05_bs64_wd0_s7",
                            "cnn_bn_sgd_lr0.05_bs64_wd0_s7"]
    assert "prepare_data" not in planned(smoke, name)


def _edit(path: Path) -> tuple[str, float]:
    """Really edit a file (Snakemake >= 9.18 compares checksums, so a bare touch is no edit)."""
    old = path.read_text(), path.stat().st_mtime
    path.write_text(old[0] + "\n# an edit\n")
    os.utime(path, (time.time() + 5, time.time() + 5))
    return old


@pytest.mark.parametrize("module,must,must_not", [
    ("plots/training.py", {"plot_training"}, {"train", "prepare_data", "gather_runs"}),
    ("train.py", {"train", "gather_runs", "gather_training", "plot_training"}, {"prepare_data"}),
    ("data.py", {"prepare_data", "train"}, set()),
    # a stage family's schema reruns its writers, their gathers and what reads those, only
    ("schemas/robustness.py", {"robustness", "gather_robustness", "generalisation"},
     {"prepare_data", "train", "hessian", "sharpness", "slice_directions", "slice_shard",
      "connectivity_pair", "spawn", "gather_runs", "gather_training", "gather_hessian",
      "gather_slices"}),
    ("schemas/training.py", {"train", "gather_runs", "gather_training"}, {"prepare_data"}),
    # config validation and its cross-key checks run in Snakemake's process, not in jobs
    ("config.py", set(), {"prepare_data", "train", "hessian", "robustness"}),
    ("connectivity/pairs.py", set(), {"prepare_data", "train", "hessian", "robustness"}),
])
def test_editing_a_module_reruns_exactly_its_rules(smoke, module, must, must_not):
    path = smoke / "landscape" / module
    text, mtime = _edit(path)
    try:
        jobs = set(planned(smoke))
    finally:
        path.write_text(text)
        os.utime(path, (mtime, mtime))
    assert must <= jobs, jobs
    assert not (must_not & jobs), jobs
    if module == "plots/training.py":
        # the findings page and the report embed the training figure, so they are rebuilt
        assert jobs <= {"plot_training", *PAGES}, jobs


def test_lint_is_clean():
    out = subprocess.run([*SNAKEMAKE, "--lint", "--configfile", "tests/smoke.yaml"], cwd=REPO,
                         capture_output=True, text=True)
    assert "Congratulations, your workflow is in a good condition" in out.stdout + out.stderr, \
        out.stdout + out.stderr


@pytest.mark.parametrize("edit,expected", [
    ("train:\n  epochs: 0\n", "train.epochs = 0"),
    ("study:\n  lr: [-1]\n", "study.lr[0] = -1"),
    ("trian:\n  epochs: 2\n", "unknown key trian"),
])
def test_bad_config_stops_before_any_job(tmp_path, edit, expected):
    repo = copy_repo(tmp_path / "repo")
    (repo / "bad.yaml").write_text(edit)
    out = subprocess.run([*SNAKEMAKE, "--cores", "1", "--configfile", "tests/smoke.yaml",
                          "bad.yaml"], cwd=repo, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(repo)})
    assert out.returncode != 0
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("config error:")]
    assert len(lines) == 1 and expected in lines[0], out.stderr
    assert not (repo / "results").exists()


def test_smoke_connectivity(smoke):
    """The connectivity stage in the smoke study: its one pair (the BatchNorm CNN trained by SGD
    and by SAM) on every path (activation matching and REPAIR included), and two spawn steps of
    the first run: 0, and the final step, whose children are the run itself (barrier 0)."""
    res = results(smoke)
    paths = read_table(res / "tables/connectivity.parquet", "connectivity")
    methods = yaml.safe_load((smoke / "config.yaml").read_text())["connectivity"]["methods"]
    assert {"activation", "repair"} <= set(methods)  # BatchNorm pair: REPAIR after BN reset
    assert len(paths) == len(methods) * 7 * 2 and paths["pair"].nunique() == 1
    assert set(paths["eval_set"]) == {"train[256,seed=0]", "test[256,seed=0]"}
    barriers = read_table(res / "tables/barriers.parquet", "barriers")
    assert len(barriers) == len(methods) * 2 and set(barriers["method"]) == set(methods)
    assert paths["bn_recomputed"].all()
    assert (barriers[["loss_barrier", "error_barrier"]] >= 0).all().all()
    assert read_table(res / "tables/alignment.parquet", "alignment")["converged"].all()
    spawn = read_table(res / "tables/spawn_barriers.parquet", "spawn_barriers")
    assert sorted(spawn["spawn_step"].unique()) == [0, 32]  # 16 steps per epoch, 2 epochs
    assert (spawn.loc[spawn["spawn_step"] == 0, ["steps_a", "steps_b"]] == 32).all().all()
    end = spawn[spawn["spawn_step"] == 32]
    assert (end[["steps_a", "distance", "loss_barrier", "error_barrier"]] == 0).all().all()
    for fig in ("connectivity_paths.png", "connectivity_barriers.png", "connectivity_spawn.png"):
        assert (res / "figures" / fig).stat().st_size > 10_000, fig
    assert len(list((res / "benchmarks/connectivity").glob("*.tsv"))) == 1  # one pair
    assert len(list((res / "benchmarks/spawn").rglob("*.tsv"))) == 2  # two spawn steps


def test_smoke_robustness_and_generalisation(smoke):
    """The robustness stage and the generalisation study in the smoke study: every mode × σ
    (σ = 0 added) × draw × split per run, one flatness row per run, a measures row per finished
    run carrying the curvature stage's λ_max, a correlation row per measure, three figures."""
    from landscape.generalisation import MEASURES

    res = results(smoke)
    cfg = yaml.safe_load((smoke / "tests/smoke.yaml").read_text())["robustness"]
    runs = read_table(res / "tables/runs.parquet", "runs")
    noise = read_table(res / "tables/robustness.parquet", "robustness")
    points = sum(len(cfg["sigmas"][m]) + 1 for m in ("absolute", "relative"))
    assert len(noise) == len(runs) * points * cfg["draws"] * 2
    assert set(noise["eval_set"]) == {"train[128,seed=0]", "test[128,seed=0]"}
    zero = noise[noise["sigma"] == 0]
    assert (zero.groupby(["run", "split"])["loss"].nunique() == 1).all()
    flat = read_table(res / "tables/flatness.parquet", "flatness")
    assert sorted(flat["run"]) == sorted(runs["run"]) and (flat["eps_sharpness"] >= 0).all()
    assert (flat["ascent_steps"] == cfg["sharpness"]["steps"]).all()
    measures = read_table(res / "tables/measures.parquet", "measures").set_index("run")
    assert sorted(measures.index) == sorted(runs["run"])
    eigs = read_table(res / "tables/hessian_eigs.parquet", "hessian_eigs")
    lmax = eigs.query("method == 'lanczos' and which == 'largest_algebraic' and k == 1")
    assert dict(zip(lmax["run"], lmax["eigenvalue"], strict=True)) == measures[
        "lambda_max"].to_dict()
    corr = read_table(res / "tables/correlations.parquet", "correlations")
    assert list(corr["measure"]) == [m.name for m in MEASURES]
    assert set(corr["hparams"]) == {"optimizer"} and set(corr["gap"]) == {"gap_error"}
    assert corr.loc[corr["n"] == 2, "tau"].abs().eq(1).all()  # two runs: τ = ±1
    for fig in ("robustness_noise.png", "generalisation_measures.png",
                "generalisation_correlations.png"):
        assert (res / "figures" / fig).stat().st_size > 10_000, fig
    assert len(list((res / "benchmarks/robustness").glob("*.tsv"))) == len(runs)


def test_report_is_built(smoke):
    out = snakemake(smoke, "--report", "report.html")
    assert "Report created" in out.stdout + out.stderr
    # captions are reStructuredText: a stray |x| is a substitution and prints a docutils error
    assert "(ERROR/" not in out.stdout + out.stderr, out.stderr[-2000:]
    html = (smoke / "report.html").read_text(errors="replace")
    assert "Study grid: models cnn" in html  # the templated description rendered
    assert re.search(r"\d epochs on\s+\d+ training", html), "the description lost a space"
    for fig in ("training_curves.png", "hessian_density.png", "slices_1d.png", "findings.html"):
        assert fig in html
    dom = dump_dom(smoke / "report.html")
    assert "Findings" in dom and "Curvature" in dom  # the report app rendered its categories


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("LANDSCAPE_REQUIRE_BROWSER"):
            pytest.fail("chromium is required here (LANDSCAPE_REQUIRE_BROWSER) but not installed")
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")
    return exe


def dump_dom(page: Path, fragment: str = "", budget_ms: int = 8000) -> str:
    """The page's DOM after its scripts ran, from a real headless Chromium (WebGL runs on its
    software renderer)."""
    out = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                          "--disable-background-networking", "--disable-component-update",
                          "--disable-sync", "--no-first-run",
                          f"--user-data-dir={page.parent / '.chromium'}",
                          f"--virtual-time-budget={budget_ms}", "--dump-dom",
                          page.resolve().as_uri() + fragment],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_latex_report_of_the_smoke_study(smoke):
    """results/report.tex holds every finding and every figure (their vector PDF copies: the
    smoke study asks for plots.formats [png, pdf]); where pdfLaTeX is installed (CI installs it)
    report.pdf compiles with all of them in it."""
    res = results(smoke)
    tex = (res / "report.tex").read_text(encoding="utf-8")
    findings = read_table(res / "tables/findings.parquet", "findings")
    assert tex.count(r"\item ") == len(findings)
    assert "warning" not in (res / "logs/paper.log").read_text()  # every character typeset
    graphics = re.findall(r"\\includegraphics\[[^\]]*\]\{([^}]*)\}", tex)
    assert graphics and all(g.endswith(".pdf") for g in graphics)
    assert len(graphics) == len(list((res / "figures").rglob("*.png")))
    assert r"\begin{thebibliography}" in tex and r"\toprule" in tex
    if shutil.which("pdflatex") is None:
        if os.environ.get("LANDSCAPE_REQUIRE_TEX"):
            pytest.fail("pdflatex is required here (LANDSCAPE_REQUIRE_TEX) but not installed")
        pytest.skip("no pdflatex on this machine (Debian: apt-get install "
                    "texlive-latex-recommended)")
    assert (res / "report.pdf").read_bytes()[:5] == b"%PDF-"
    log = (res / "logs/paper_pdf.log").read_text()
    assert int(re.search(r"(\d+) pages", log).group(1)) >= 8
    included = [line.strip() for line in log.splitlines() if line.startswith("  figures/")]
    assert sorted(included) == sorted(graphics)


def test_findings_page_in_a_real_browser(smoke):
    """Every figure decodes in Chromium and the page shows exactly the tables' numbers."""
    import html

    res = results(smoke)
    # #check-surfaces: the 3-D viewer renders every (run, plane, split) of slice_2d in turn
    dom = dump_dom(res / "findings.html", "#check-surfaces", budget_ms=30000)
    slices = read_table(res / "tables/slice_2d.parquet", "slice_2d")
    n_surfaces = len(slices.groupby(["run", "plane", "split"]))
    assert n_surfaces >= 6 and set(slices["plane"]) >= {"random", "pca", "hessian"}
    assert "data-surfaces-error" not in dom
    assert f'data-surfaces-total="{n_surfaces}"' in dom
    assert f'data-surfaces-rendered="{n_surfaces}"' in dom
    m = re.search(r'data-figures-loaded="(\d+)" data-figures-total="(\d+)"', dom)
    assert m, "the page's load script did not run"
    loaded, total = int(m.group(1)), int(m.group(2))
    assert total == len(list((res / "figures").rglob("*.png"))) and loaded == total
    findings = read_table(res / "tables/findings.parquet", "findings")
    assert len(findings) >= 3
    for text in findings["text"]:
        assert html.escape(text, quote=False) in dom, text
    runs = read_table(res / "tables/runs.parquet", "runs")
    for run, acc in zip(runs["run"], runs["test_acc"], strict=True):
        assert f">{run}<" in dom and f">{acc:.4g}<" in dom


def test_run_table_gives_each_model_its_own_options(smoke):
    """`cnn_bn_…` run ids start with `cnn_`: the run table, not the id string, picks the model.
    The cnn_bn runs are trained with BatchNorm and only they rerun when models.cnn_bn changes."""
    import torch

    def two_models(c, width=3):
        c["results_dir"] = "results/two_models"
        c["study"].update(model=["cnn", "cnn_bn"], batch_size=[256])
        c["models"] = {"cnn": {"width": 4, "hidden": 16}, "cnn_bn": {"width": width, "hidden": 8}}
        c["train"]["epochs"] = 1

    name = write_config(smoke, "two.yaml", two_models)
    targets = [f"results/two_models/runs/{m}_sgd_lr0.05_bs256_wd0_s1/checkpoint.pt"
               for m in ("cnn", "cnn_bn")]
    snakemake(smoke, *targets, config=name)
    bn = torch.load(smoke / targets[1], weights_only=False)
    assert bn["meta"]["config"]["model"] == "cnn_bn"
    assert bn["meta"]["config"]["model_options"] == {"width": 3, "hidden": 8}
    assert any("running_mean" in k for k in bn["state_dict"])
    plain = torch.load(smoke / targets[0], weights_only=False)
    assert not any("running_mean" in k for k in plain["state_dict"])

    edited = write_config(smoke, "two_edit.yaml", lambda c: two_models(c, width=5))
    out = snakemake(smoke, "-n", *targets, config=edited)
    assert re.findall(r"rule train:.*?wildcards: run=(\S+)", out.stdout + out.stderr, re.S) == [
        "cnn_bn_sgd_lr0.05_bs256_wd0_s1"]


@pytest.mark.parametrize("device,gpus", [("cuda", 1), ("cpu", 0)])
def test_heavy_jobs_ask_for_a_gpu_when_the_study_uses_cuda(device, gpus, tmp_path):
    """`device: cuda` gives every computing job a `gpu=1` resource, which the SLURM executor turns
    into --gpus=1; gather, plot and other local jobs never ask for one."""
    from types import SimpleNamespace

    (tmp_path / "device.yaml").write_text(f"device: {device}\n")
    out = subprocess.run([*SNAKEMAKE, "-n", "--configfile", "tests/smoke.yaml",
                          str(tmp_path / "device.yaml")], cwd=REPO, capture_output=True, text=True)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    jobs = re.findall(r"^(localrule|rule) (\w+):\n(?:[ \t]+.*\n)*?[ \t]+resources: (.*)", text,
                      re.M)
    from landscape.registry import measurements

    heavy = {"train"} | {m.name for m in measurements() if m.per != "study"}
    assert {"hessian", "slice_shard", "connectivity_pair", "robustness"} <= heavy
    asked = {name for _, name, res in jobs if f"gpu={gpus}" in res and gpus}
    assert asked == (heavy if gpus else set()), jobs
    assert not {name for kind, name, res in jobs if kind == "localrule" and "gpu=1" in res}
    plugin = pytest.importorskip("snakemake_executor_plugin_slurm.utils")
    job = SimpleNamespace(resources={"gpu": gpus})
    assert plugin.set_gres_string(job).strip() == ("--gpus=1" if gpus else "")


def _bytecode_imports(path: Path, module: str) -> set[str]:
    """The landscape modules ``module`` imports, read from its *bytecode* (every IMPORT_NAME of
    every code object, function-local ones too): an implementation independent of the
    workflow's (``landscape.study.sources`` reads the syntax tree)."""
    import dis

    code = compile(path.read_text(), str(path), "exec")
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found, todo = set(), [code]
    while todo:
        co = todo.pop()
        todo += [c for c in co.co_consts if hasattr(c, "co_code")]
        ins = list(dis.get_instructions(co))
        for i, op in enumerate(ins):
            if op.opname != "IMPORT_NAME":
                continue
            level, fromlist = ins[i - 2].argval, ins[i - 1].argval
            name = op.argval
            if level:
                base = ".".join(pkg.split(".")[:len(pkg.split(".")) - level + 1])
                name = f"{base}.{name}" if name else base
            if not name.startswith("landscape"):
                continue
            parts = name.split(".")
            found |= {".".join(parts[:k]) for k in range(2, len(parts) + 1)}  # packages run too
            found |= {f"{name}.{n}" for n in (fromlist or ()) if n != "*"}
    return found


def _module_path(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _closure(modules: list[str]) -> set[str]:
    seen = {}
    todo = [".".join(m.split(".")[:k]) for m in modules for k in range(2, m.count(".") + 2)]
    while todo:
        mod = todo.pop()
        if mod in seen or (path := _module_path(mod)) is None:
            continue
        seen[mod] = path
        todo += list(_bytecode_imports(path, mod))
    return {str(p.relative_to(REPO)) for p in seen.values()} - {"landscape/__init__.py"}


def _stage_modules(command: str) -> list[str]:
    """The modules a job's `python -m landscape ...` runs: its stage (plus the generic runner for
    a registered measurement, the schema modules of the tables a gather names, and the modules of
    the registered findings functions for the findings page)."""
    from landscape.registry import measurements, schema_modules

    words = command.split()
    stage = words[words.index("landscape") + 1].replace("-", "_")
    mods = [f"landscape.stages.{stage}"]
    if any(m.module == stage for m in measurements()):
        mods.append("landscape.stages._runner")
    if stage == "findings":  # and the modules of the findings functions the stages declare
        from landscape.registry import finding_modules

        mods += [f"landscape.{m}" for m in finding_modules()]
    if stage == "gather":
        tables = [words[i + 1] for i, w in enumerate(words) if w == "--table"]
        mods += [f"landscape.{schema_modules()[t]}" for t in tables]
    return mods


def test_every_module_edit_plans_exactly_the_rules_that_import_it(tmp_path):
    """The matrix, not a sample: for every module of the package and every rule of the smoke
    study, the module is among the rule's jobs' inputs (so an edit of it plans that rule, and
    through its outputs the rule's consumers) exactly when the stage the job runs imports it, as
    Python would: from the bytecode, packages' __init__ included. Modules no job imports (config
    validation, the command-line dispatch) are edits that plan no job at all."""
    repo = copy_repo(tmp_path / "repo")
    out = snakemake(repo, "-n", "-p", "--forceall").stdout
    jobs = re.findall(r"^rule (\w+):\n    input: (.*)\n(?:.*\n)*?Shell command: (.*)$", out, re.M)
    assert {r for r, _, _ in jobs} >= {"train", "hessian", "slice_shard", "connectivity_pair",
                                       "gather_hessian", "findings", "plot_slices"}, out[-3000:]
    modules = {str(p.relative_to(REPO)) for p in (REPO / "landscape").rglob("*.py")}
    planned = {m: set() for m in modules}
    expected = {m: set() for m in modules}
    for rule, inputs, command in jobs:
        if command == "None":  # `all`: no command, no code
            continue
        code = {f for f in inputs.split(", ") if f.startswith("landscape/")}
        for m in code:
            planned[m].add(rule)
        for m in _closure(_stage_modules(command)):
            expected[m].add(rule)
    wrong = {m: (sorted(planned[m] - expected[m]), sorted(expected[m] - planned[m]))
             for m in sorted(modules) if planned[m] != expected[m]}
    assert not wrong, wrong  # module: (planned but not imported, imported but not planned)
    assert not planned["landscape/config.py"] and not planned["landscape/cli.py"]
    assert planned["landscape/schemas/robustness.py"] <= {"robustness", "gather_robustness",
                                                          "generalisation", "findings"}


TOY_STAGE = '''"""Stage: a toy measurement, the weight norm of each run (the registry test's)."""

from __future__ import annotations

import pandas as pd

from ..params import detached, norm, parameters
from ..schemas import toy as _tables  # noqa: F401  registers the table written here

HELP = "the weight norm of one run (a toy measurement)"
STAGE = {"order": 90, "inputs": ["checkpoint"], "tables": ["toy_norms"],
         "findings": ["stages.toy_norm:findings"]}


def measure(job) -> dict:
    model, meta = job.model()
    return {"toy_norms": pd.DataFrame([{"run": meta["run"],
                                        "weight_norm": norm(detached(parameters(model)))}])}


def findings(tables):
    from ..report.findings import Finding

    t = tables["toy_norms"]
    return [Finding("toy", "norm", f"The toy measured {len(t)} weight norms.")]
'''
TOY_SCHEMA = '''"""The toy measurement's table."""

from ..tables import Col, register

register("toy_norms", ["run"], [
    Col("run", "string", "run identifier"),
    Col("weight_norm", "float64", "‖θ‖ of the trained weights"),
])
'''


def test_a_new_measurement_is_one_module_and_its_schema(smoke, tmp_path):
    """Adding a measurement is a stage module (STAGE + measure) and its table schema, nothing
    else: the next run of the (finished) smoke study runs its jobs and its gather only (plus the
    findings page and the skip records, which list every table), the table is gathered with one
    row per run, the findings page lists it, and the generated docs describe it."""
    repo = tmp_path / "repo"
    shutil.copytree(smoke, repo, symlinks=True)  # results and Snakemake's records too
    (repo / "landscape/stages/toy_norm.py").write_text(TOY_STAGE)
    (repo / "landscape/schemas/toy.py").write_text(TOY_SCHEMA)
    jobs = planned(repo)
    assert set(jobs) == {"toy_norm", "gather_toy_norm", "collect_skipped", *PAGES}, jobs
    assert jobs["toy_norm"] == 2  # one per run
    snakemake(repo)
    res = results(repo)
    env = {**os.environ, "PYTHONPATH": str(repo)}
    check = ("from landscape.schemas import load_all; load_all(); "
             "from landscape.tables import read_table; "
             f"print(read_table('{res}/tables/toy_norms.parquet', 'toy_norms').to_json())")
    rows = subprocess.run([sys.executable, "-c", check], cwd=repo, env=env, text=True,
                          capture_output=True, check=True).stdout
    runs = read_table(res / "tables/runs.parquet", "runs")["run"]
    assert all(r in rows for r in runs) and "weight_norm" in rows
    page = (res / "findings.html").read_text()
    assert "toy_norms" in page and "toy_norm" in page
    assert f"The toy measured {len(runs)} weight norms." in page  # its findings function
    for what in ("tables", "stages"):
        doc = subprocess.run([sys.executable, "-m", "landscape", "docs", what], cwd=repo, env=env,
                             text=True, capture_output=True, check=True).stdout
        assert "toy_norms" in doc, what
    assert planned(repo) == {}
