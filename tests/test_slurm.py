"""The SLURM profile on a real single-node SLURM cluster (slurmctld + slurmd + munge).

`scripts/local-slurm.sh start` brings the cluster up (and the module's finalizer stops it again,
also when a test fails). The smoke study then runs three ways:

* S: `snakemake --profile workflow/profiles/slurm` (the slurm executor plugin, status by squeue)
  on the smoke study's SGD run alone (a study of one run);
* L: the local reference, the test session's smoke study (`snakemake --cores 2`; the `smoke`
  fixture), where that run has the SAM run beside it. S's tables must equal L's rows of the run
  (figures are not compared): a run's numbers depend neither on the executor nor on the other
  runs of its study, nor on how a job's process starts (L's jobs fork from the fork server,
  landscape/forkserver.py; S's are fresh interpreters on the cluster);
* F: on a copy of L, one run's checkpoint is corrupted and both runs' curvature jobs are forced
  through the profile: the corrupt run's job fails, Snakemake names its SLURM log, the other
  run's job (independent of the failure) completes.

Where the machine cannot run the daemons (not root and no passwordless sudo; no slurmctld and no
apt; no slurm plugin) the tests skip with the reason. CI sets LANDSCAPE_REQUIRE_SLURM=1, which
turns such a skip into a failure.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from landscape.forkserver import ACCOUNTING_FILE
from landscape.tables import read_table

from .conftest import ORIGINAL_SLURM_CONF, REPO, compare_run_rows

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SCRIPT = REPO / "scripts" / "local-slurm.sh"
SLURM_BASE = Path(os.environ.get("SLURM_BASE", "/tmp/landscape-slurm"))
REQUIRED = os.environ.get("LANDSCAPE_REQUIRE_SLURM", "") not in ("", "0")
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# Rules that must run as SLURM jobs, and rule-name patterns that must stay local.
HEAVY = {"train", "hessian", "sharpness", "slice_directions", "slice_shard"}
LOCAL = re.compile(r"^(gather|plot|collect)_")
TIMEOUT = 900  # s, per Snakemake invocation; a hang (e.g. status polling with sacct) fails


def unavailable(reason: str):
    """Skip with the reason, or fail where SLURM is required (CI)."""
    if REQUIRED:
        pytest.fail(f"LANDSCAPE_REQUIRE_SLURM is set but SLURM cannot run here: {reason}")
    pytest.skip(reason)


def root_prefix() -> list[str] | None:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"],
                                               capture_output=True).returncode == 0:
        return ["sudo", "-n", "--preserve-env=SLURM_BASE"]
    return None


def slurm_env(**extra: str) -> dict[str, str]:
    """The environment with SLURM's own config location (conftest empties it for other tests)."""
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    if ORIGINAL_SLURM_CONF is not None:
        env["SLURM_CONF"] = ORIGINAL_SLURM_CONF
    return {**env, **extra}


def script(prefix: list[str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, "bash", str(SCRIPT), *args], env=slurm_env(),
                          capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def slurm_cluster(request):
    """A running single-node cluster; stopped at the end of the module (also on failure) unless
    it was already up before."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        unavailable("snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')")
    prefix = root_prefix()
    if prefix is None:
        unavailable("the SLURM daemons need root: not root and no passwordless sudo")
    check = script(prefix, "check")
    if check.returncode != 0:
        unavailable(f"cannot run SLURM daemons here: {check.stdout.strip()}")
    # One test session at a time uses the machine's cluster (one /etc/slurm/slurm.conf): a
    # second session waits here instead of having the cluster stopped under its jobs.
    lock = open(Path(tempfile.gettempdir()) / "landscape-slurm-test.lock", "w")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)
    request.addfinalizer(lock.close)  # registered first, so it runs last: after the stop
    was_up = script(prefix, "status").returncode == 0
    if not was_up:
        request.addfinalizer(lambda: script(prefix, "stop", timeout=60))
    t0 = time.perf_counter()
    started = script(prefix, "start")
    if started.returncode != 0:
        if not (shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists()):
            # the install itself failed (offline machine, ...)
            unavailable(f"SLURM packages could not be installed:\n{started.stderr[-2000:]}")
        pytest.fail(f"local-slurm.sh start failed:\n{started.stdout}\n{started.stderr}")
    print(f"SLURM up in {time.perf_counter() - t0:.1f} s: {started.stdout.strip()}")
    return SLURM_BASE


S_RUN = "cnn_bn_sgd_lr0.05_bs64_wd0_s1"  # S's one run: the smoke study's SGD run


def copy_repo(dest: Path, results: Path) -> Path:
    """The workflow, package and profiles in a folder of their own (other tests, and edits to
    the checkout, cannot disturb the run), with the smoke config of S's one run (the SGD run)
    writing into ``results``."""
    dest.mkdir(parents=True)
    for item in ("workflow", "landscape"):
        shutil.copytree(REPO / item, dest / item,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), symlinks=True)
    for name in ("config.yaml", "environment.yml", "pyproject.toml"):
        shutil.copy(REPO / name, dest / name)
    cfg = yaml.safe_load((REPO / "tests" / "smoke.yaml").read_text())
    cfg["results_dir"] = str(results)
    cfg["study"]["optimizer"] = ["sgd"]
    (dest / "smoke.yaml").write_text(yaml.safe_dump(cfg))
    return dest


@dataclass
class Run:
    """One Snakemake invocation in the background."""

    name: str
    repo: Path
    args: list[str]
    proc: subprocess.Popen | None = None
    t0: float = 0.0
    seconds: float = 0.0
    rc: int | None = None
    output: str = ""
    extra: dict = field(default_factory=dict)

    def start(self) -> Run:
        env = slurm_env(PYTHONPATH=str(self.repo))
        self.log = self.repo / f"{self.name}.out"
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([*SNAKEMAKE, "--configfile", "smoke.yaml", *self.args],
                                     cwd=self.repo, env=env, stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT, text=True)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def wait(self) -> Run:
        try:
            self.rc = self.proc.wait(timeout=max(1.0, TIMEOUT - (time.perf_counter() - self.t0)))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.rc = -9
        self.seconds = time.perf_counter() - self.t0
        self.output = self.log.read_text(errors="replace")
        if self.rc == -9:
            pytest.fail(f"{self.name}: snakemake did not finish within {TIMEOUT} s:\n"
                        f"{self.output[-6000:]}")
        return self


# A job's end is seen at the next round of status checks (Snakemake's default: every 10 s); on
# the test's idle one-node cluster every 2 s is cheap and saves that wait at each level of the DAG.
SLURM_ARGS = ["--profile", "workflow/profiles/slurm", "--slurm-keep-successful-logs",
              "--seconds-between-status-checks", "2"]


@pytest.fixture(scope="module")
def study(slurm_cluster, request, tmp_path_factory):
    """S (SLURM); L, the local reference, is the session's smoke study (``smoke``); F (failure
    injection through SLURM) runs on a copy of L's results, so L itself stays intact.

    S starts first and the smoke study is asked for while it runs: where the session has not run
    the smoke study yet, it runs beside S (SLURM jobs spend much of their time waiting)."""
    root = tmp_path_factory.mktemp("slurm")
    s_repo = copy_repo(root / "S", root / "S" / "results")
    t0 = time.perf_counter()
    s = Run("slurm", s_repo, SLURM_ARGS).start()
    f = None
    try:
        smoke = request.getfixturevalue("smoke")
        cfg = yaml.safe_load((smoke / "tests" / "smoke.yaml").read_text())
        reference = smoke / cfg["results_dir"] / "tables"
        l_repo = root / "L"
        shutil.copytree(smoke, l_repo, symlinks=True)
        shutil.copy(smoke / "tests" / "smoke.yaml", l_repo / "smoke.yaml")
        # F: corrupt the bad run's checkpoint (bytes in the middle, size unchanged), then force
        # the curvature job of both runs. The bad run's job fails on the checksum; the good
        # run's job does not depend on that checkpoint and must complete.
        res = l_repo / cfg["results_dir"]
        runs = sorted(p.name for p in (res / "hessian").iterdir() if p.is_dir())
        assert len(runs) >= 2, runs
        bad_run, good_run = runs[:2]
        ckpt = res / "runs" / bad_run / "checkpoint.pt"
        size = ckpt.stat().st_size
        with ckpt.open("r+b") as fh:
            fh.seek(size // 2)
            fh.write(bytes(64))
        corrupted_at = time.time()
        time.sleep(1.0)
        # as the rules name them: relative to the workdir (results_dir is relative here)
        targets = [str((res / "hessian" / run / "hessian_eigs.parquet").relative_to(l_repo))
                   for run in (bad_run, good_run)]
        f = Run("failure", l_repo, [*SLURM_ARGS, "--forcerun", "hessian", "--", *targets])
        f.start()
        f.extra.update(corrupted_at=corrupted_at, bad_run=bad_run, good_run=good_run, res=res)
        s.wait()
        f.wait()
    finally:  # never leave a Snakemake behind (the daemons stop in slurm_cluster's finalizer)
        for run in (s, f):
            if run is not None:
                run.kill()
    print(f"SLURM run {s.seconds:.0f} s, failure run {f.seconds:.0f} s; both "
          f"{time.perf_counter() - t0:.0f} s")
    return {"slurm": s, "failure": f, "reference": reference,
            "ctld_log": slurm_cluster / "log" / "slurmctld.log"}


JOB_RE = re.compile(r"^\s*(localrule|rule) (\w+):\n((?:[ \t]+\w+: .*\n)*)", re.M)
SUBMIT_RE = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.")


def jobs_in(text: str) -> list[tuple[str, str, str]]:
    """(local|rule, rule name, wildcards) of every job block in Snakemake output."""
    out = []
    for kind, name, body in JOB_RE.findall(text):
        m = re.search(r"wildcards: (.*)", body)
        out.append((kind, name, m.group(1).strip() if m else ""))
    return out


def submissions(run: Run) -> list[tuple[str, Path]]:
    """(SLURM job id, SLURM log) of every sbatch Snakemake made."""
    return [(jid, Path(log)) for _, jid, log in SUBMIT_RE.findall(run.output)]


def test_slurm_study_succeeds(study):
    s = study["slurm"]
    assert s.rc == 0, s.output[-8000:]
    assert "steps (100%) done" in s.output


def test_heavy_jobs_went_through_sbatch_and_light_ones_ran_locally(study):
    s = study["slurm"]
    assert s.rc == 0, s.output[-8000:]
    jobs = jobs_in(s.output)
    remote = {(name, wc) for kind, name, wc in jobs if kind == "rule"}
    local = {name for kind, name, _ in jobs if kind == "localrule"}
    not_local = sorted({name for name, _ in remote if LOCAL.match(name)})
    assert not not_local, f"gather/plot/collect rules submitted to SLURM (not localrules): " \
                          f"{not_local}"
    assert {name for name, _ in remote} >= HEAVY, remote
    assert any(n.startswith("gather_") for n in local), local
    assert any(n.startswith("plot_") for n in local), local

    # Every remote job ran inside a SLURM job: its rule and wildcards are in a SLURM log of a
    # job id that slurmctld recorded as completed with exit status 0.
    subs = submissions(s)
    assert subs, s.output[-4000:]
    ctld = study["ctld_log"].read_text(errors="replace")
    in_slurm: set[tuple[str, str]] = set()
    for jid, log in subs:
        assert log.exists(), f"SLURM log {log} of job {jid} is missing"
        assert re.search(rf"_job_complete: JobId={jid} WEXITSTATUS 0", ctld), \
            f"slurmctld has no successful completion of job {jid}"
        in_slurm |= {(name, wc) for _, name, wc in jobs_in(log.read_text(errors="replace"))}
    missing = remote - in_slurm
    assert not missing, f"jobs submitted but not seen inside a SLURM job: {sorted(missing)}"
    n_heavy = sum(1 for name, _ in remote if name in HEAVY)
    print(f"{len(subs)} sbatch submissions for {len(remote)} remote jobs ({n_heavy} heavy), "
          f"{len(local)} local rules; SLURM ids {[j for j, _ in subs]}")
    # grouping: fewer submissions than remote jobs (one geometry job per run)
    assert len(subs) < len(remote), (len(subs), len(remote))


def test_tables_equal_the_local_run(study):
    """S's one run against the same run in L: equal in every table that has rows of a run."""
    s = study["slurm"]
    assert s.rc == 0, s.output[-8000:]
    a_dir, b_dir = s.repo / "results" / "tables", study["reference"]
    assert read_table(a_dir / "runs.parquet", "runs")["run"].tolist() == [S_RUN]
    compared, differ = compare_run_rows(a_dir, b_dir, S_RUN)
    assert not differ, f"tables that differ between the SLURM and the local run: {differ}"
    # L forked its jobs from the fork server; a cluster executor starts none
    assert (b_dir.parent / "benchmarks" / ACCOUNTING_FILE).exists()
    assert not (s.repo / "results" / "benchmarks" / ACCOUNTING_FILE).exists()
    assert {"training", "hessian_eigs", "slice_2d", "robustness", "curvature_matrices",
            "sharpness_trajectory"} <= set(compared), compared
    print(f"{len(compared)} tables equal on {S_RUN} (timing columns aside)")


def test_failing_job_is_reported_with_its_slurm_log_and_the_rest_completes(study):
    f = study["failure"]
    out, bad_run, good_run = f.output, f.extra["bad_run"], f.extra["good_run"]
    assert f.rc != 0, out[-6000:]
    subs = submissions(f)
    assert subs, out[-6000:]
    # Snakemake names the failed job's SLURM log, and that log exists
    failed_logs = [Path(p) for p in re.findall(r"log: (\S+/slurm_logs/\S+\.log)", out)]
    bad_logs = [p for p in failed_logs if bad_run in str(p)]
    assert bad_logs, f"no SLURM log of {bad_run} named in the error report:\n{out[-6000:]}"
    assert any(p.exists() for p in bad_logs), bad_logs
    assert re.search(rf"Error in (group geometry_{bad_run}|rule \w+)", out), out[-6000:]
    assert "does not match its checksum" in out, "the stage's own error is not shown"
    # the independent job (the good run's hessian) completed through SLURM and was rewritten
    res = f.extra["res"]
    for part in ("eigs", "trace", "density"):
        good = res / "hessian" / good_run / f"hessian_{part}.parquet"
        assert good.exists() and good.stat().st_mtime > f.extra["corrupted_at"], good
        assert not (res / "hessian" / bad_run / f"hessian_{part}.parquet").exists()
    ctld = study["ctld_log"].read_text(errors="replace")
    good_jobs = [jid for jid, log in subs if good_run in str(log)]
    assert good_jobs and all(re.search(rf"_job_complete: JobId={j} WEXITSTATUS 0", ctld)
                             for j in good_jobs), (good_jobs, subs)
    # nothing else ran: the gathered tables are the local run's
    assert (res / "tables" / "hessian_eigs.parquet").stat().st_mtime < f.extra["corrupted_at"]
    print(f"failure run: {len(subs)} sbatch submissions, {f.seconds:.0f} s")


@pytest.mark.parametrize("profile, shards_grouped", [("slurm-large", False), ("slurm", True)])
def test_large_study_profile_gives_every_slice_shard_a_slurm_job_of_its_own(profile,
                                                                            shards_grouped):
    """Planning only (no cluster): with workflow/profiles/slurm-large each of the large study's
    32 slice shards is a SLURM job of its own while a run's curvature, sharpness and robustness
    jobs share one; the default profile would put the shards into the runs' groups too."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    out = subprocess.run([*SNAKEMAKE, "-n", "--profile", f"workflow/profiles/{profile}",
                          "--configfile", "studies/large.yaml"], cwd=REPO, capture_output=True,
                         text=True, timeout=TIMEOUT)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    parts = re.split(r"Group job (\S+) \(jobs in lexicogr\. order\):", text)
    in_group = re.compile(r"^[ \t]+rule (\w+):", re.M)  # a group's jobs are indented
    members = {name: in_group.findall(body) for name, body in zip(parts[1::2], parts[2::2],
                                                                   strict=True)}
    geometry = {n: r for n, r in members.items() if n.startswith("geometry_")}
    assert len(geometry) == 4, list(members)  # one per run
    for rules in geometry.values():
        assert {"hessian", "sharpness", "robustness"} <= set(rules), rules
    shards = 4 * yaml.safe_load((REPO / "studies" / "large.yaml").read_text())["slices"]["shards"]
    in_geometry = sum(r.count("slice_shard") for r in geometry.values())
    assert in_geometry == (shards if shards_grouped else 0)
    alone = [r for n, r in members.items() if not n.startswith("geometry_")]
    assert all(len(r) == 1 for r in alone), alone  # a SLURM job per shard and slice plan
    assert sum(r == ["slice_shard"] for r in alone) == (0 if shards_grouped else shards)
