"""The fork server (landscape/forkserver.py): a job forked from it does what a fresh interpreter
does (same outputs bit for bit, same status and messages), jobs it cannot vouch for run fresh,
signals reach the job, and its accounting is what the cost model reads.

The whole-study check is tests/test_slurm.py: the smoke study (local: forked jobs) and the SLURM
study (fresh processes on the cluster) must give the same rows."""

from __future__ import annotations

import csv
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from landscape import cost, forkclient, forkserver

from .conftest import REPO
from .test_train import _digests, _train_cmd


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _wait_rows(path: Path, n: int, timeout: float = 60.0) -> list[dict]:
    deadline = time.time() + timeout
    while len(_rows(path)) < n and time.time() < deadline:
        time.sleep(0.05)
    return _rows(path)


@pytest.fixture
def server(tmp_path):
    folder = tempfile.mkdtemp(prefix="lfs-", dir="/tmp")  # a Unix socket path is ≤ 107 bytes
    sock = os.path.join(folder, "socket")
    acc = tmp_path / "accounting.tsv"
    env = forkserver.server_environment({**os.environ, "PYTHONPATH": str(REPO)})
    env.pop(forkserver.ENV_SOCKET, None)
    env.pop(forkserver.ENV_OFF, None)
    proc = subprocess.Popen([sys.executable, "-m", "landscape.forkserver", sock, "--accounting",
                             str(acc)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while not os.path.exists(sock) and time.time() < deadline:
        time.sleep(0.01)
    yield SimpleNamespace(env={**env, forkserver.ENV_SOCKET: sock}, fresh=env, acc=acc,
                          proc=proc, sock=sock)
    if proc.poll() is None:
        proc.terminate()
        assert not proc.communicate(timeout=20)[0], "the server printed (no job was declined)"
    shutil.rmtree(folder, ignore_errors=True)
    assert not os.path.exists(sock), "the server leaves no socket behind"


def test_forked_training_is_bit_identical_to_a_fresh_process(tmp_path, prepared_file, server):
    fresh = subprocess.run(_train_cmd(prepared_file, tmp_path / "fresh", 2), env=server.fresh,
                           capture_output=True, text=True)
    forked = subprocess.run(_train_cmd(prepared_file, tmp_path / "forked", 2), env=server.env,
                            capture_output=True, text=True)
    assert fresh.returncode == forked.returncode == 0, forked.stderr
    a, b = _digests(tmp_path / "fresh"), _digests(tmp_path / "forked")
    assert a[0] == b[0] and a[1] == b[1] and a[2].equals(b[2])
    rows = _wait_rows(server.acc, 1)
    assert len(rows) == 1, "the fresh process must not have gone through the server"
    row = rows[0]
    assert row["stage"] == "train" and row["rc"] == "0"
    assert row["outputs"] == str(tmp_path / "forked")
    assert float(row["cpu_s"]) > 0 and float(row["wall_s"]) > 0
    # the job's own lines reach the client's stdout (the run's name is in its summary)
    assert forked.stdout.strip() and fresh.stdout.splitlines()[-1].split(":")[0] in forked.stdout


def test_a_failing_job_exits_and_reports_as_a_fresh_process(tmp_path, server):
    argv = _train_cmd(tmp_path / "none.pt", tmp_path / "out", 1)  # no such data file
    fresh = subprocess.run(argv, env=server.fresh, capture_output=True, text=True)
    forked = subprocess.run(argv, env=server.env, capture_output=True, text=True)
    assert fresh.returncode == 1 and "error" in fresh.stderr
    assert (forked.returncode, forked.stdout, forked.stderr) == \
        (fresh.returncode, fresh.stdout, fresh.stderr)
    bad = [sys.executable, "-m", "landscape", "no-such-stage"]  # argparse: status 2
    fresh = subprocess.run(bad, env=server.fresh, capture_output=True, text=True)
    forked = subprocess.run(bad, env=server.env, capture_output=True, text=True)
    assert fresh.returncode == 2
    assert (forked.returncode, forked.stderr) == (fresh.returncode, fresh.stderr)
    assert [r["rc"] for r in _wait_rows(server.acc, 2)] == ["1", "2"]


def test_other_thread_settings_run_in_a_fresh_process(tmp_path, prepared_file, server):
    env = {**server.env, "OMP_NUM_THREADS": "2"}  # torch's thread pool is set up at load time
    out = subprocess.run(_train_cmd(prepared_file, tmp_path / "x", 1), env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "x" / "checkpoint.pt").exists()
    time.sleep(0.5)
    assert _rows(server.acc) == [], "the server forked a job whose environment differs"
    server.proc.terminate()
    log = server.proc.communicate(timeout=20)[0].decode()
    assert "ran in a fresh process: train: load-time environment differs: ['OMP_NUM_THREADS']" \
        in log


def test_refusals_name_the_reason(tmp_path):
    srv = forkserver.Server(os.path.join(tempfile.mkdtemp(prefix="lfs-", dir="/tmp"), "s"), None)
    try:
        ok = {"interpreter": forkclient.interpreter(),
              "package": str(Path(forkserver.__file__).parent), "env": dict(os.environ)}
        assert srv.refusal(ok) is None
        other = ["/usr/bin/python9", *forkclient.interpreter()[1:]]
        assert "interpreter" in srv.refusal({**ok, "interpreter": other})
        assert "package" in srv.refusal({**ok, "package": "/elsewhere/landscape"})
        assert "MKL_NUM_THREADS" in srv.refusal({**ok, "env": {**os.environ,
                                                                "MKL_NUM_THREADS": "7"}})
        srv.stamp = ()  # as if a file of the package had changed since the server started
        assert "changed" in srv.refusal(ok)
    finally:
        srv.listener.close()
        shutil.rmtree(os.path.dirname(srv.path))


@pytest.mark.parametrize("kill", ["term_client", "kill_client"])
def test_signals_reach_the_forked_job(tmp_path, prepared_file, server, kill):
    """SIGTERM to the client is passed on to the job; a client killed outright (SIGKILL, as
    Snakemake may) gets its job terminated by the server."""
    proc = subprocess.Popen(_train_cmd(prepared_file, tmp_path / "long", 400), env=server.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "long" / "state.pt"  # written after the first epoch: the job is running
    deadline = time.time() + 60
    while not state.exists() and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM if kill == "term_client" else signal.SIGKILL)
    rc = proc.wait(timeout=30)
    rows = _wait_rows(server.acc, 1, timeout=30)
    assert len(rows) == 1 and rows[0]["rc"] == "143", rows  # the job ended by SIGTERM
    if kill == "term_client":
        assert rc == 143
    assert not (tmp_path / "long" / "checkpoint.pt").exists()


def test_start_and_stop_from_the_snakefile(tmp_path, monkeypatch):
    monkeypatch.delenv(forkserver.ENV_SOCKET, raising=False)
    monkeypatch.delenv(forkserver.ENV_OFF, raising=False)
    assert forkserver.start(tmp_path / "r", local=False) is None  # a cluster executor: none
    assert forkserver.ENV_SOCKET not in os.environ
    monkeypatch.setenv(forkserver.ENV_OFF, "1")
    assert forkserver.start(tmp_path / "r") is None
    monkeypatch.delenv(forkserver.ENV_OFF)
    path = forkserver.start(tmp_path / "r")
    try:
        assert path and os.environ[forkserver.ENV_SOCKET] == path
        deadline = time.time() + 30
        while not os.path.exists(path) and time.time() < deadline:
            time.sleep(0.01)
        assert os.path.exists(path)
    finally:
        forkserver.stop()
    assert forkserver.ENV_SOCKET not in os.environ
    assert not os.path.exists(os.path.dirname(path))
    assert (tmp_path / "r" / "logs" / "forkserver.log").read_text() == ""


def test_cost_model_takes_forked_jobs_cpu_from_the_accounting(tmp_path):
    bench = tmp_path / "benchmarks"
    for rel, cpu in (("hessian/runA.tsv", "0.05"), ("hessian/runB.tsv", "0.05"),
                     ("slices/runA/shard0of2.tsv", "9.0")):
        (bench / rel).parent.mkdir(parents=True, exist_ok=True)
        (bench / rel).write_text(f"s\tcpu_time\n20.0\t{cpu}\n")
    now = time.time()
    rows = [(now, "hessian", "run=runA", "x/hessian/runA/hessian_eigs.parquet", 0, 19.5),
            (now - 3600, "hessian", "run=runB", "x/hessian/runB/hessian_eigs.parquet", 0, 18.0),
            (now, "slices", "run=runA;shard=0;shards=2", "x/slices/runA/s/slice_1d.parquet",
             0, 19.0),
            (now, "gather", "", "x/tables/hessian_eigs.parquet", 0, 1.0)]
    with (bench / forkserver.ACCOUNTING_FILE).open("w") as fh:
        fh.write("\t".join(forkserver.ACCOUNTING_COLUMNS) + "\n")
        for finished, stage, job, outs, rc, cpu in rows:
            fh.write(f"{finished}\t{stage}\t{job}\t{outs}\t{rc}\t{cpu}\t20.0\t500\n")
    df = cost.read_benchmarks(bench).set_index("stage")
    # runA: forked (its row is as new as its benchmark); runB: an old row, a later fresh run
    assert df.loc["hessian", "forked"] == 1
    assert df.loc["hessian", "cpu_s"] == pytest.approx(19.5 + 0.05)
    assert df.loc["hessian", "tail_s"] == pytest.approx(cost.unsampled_tail(20.0))
    assert df.loc["slices", "forked"] == 1 and df.loc["slices", "cpu_s"] == pytest.approx(19.0)
    assert df.loc["slices", "tail_s"] == 0


def test_slurm_sizes_of_forked_jobs_come_from_the_accounting(tmp_path, capsys):
    """scripts/resources_from_benchmarks.py: a forked job's benchmark file holds the thin
    client's memory and CPU; the accounting's own numbers size its rule instead."""
    import importlib.util

    bench = tmp_path / "benchmarks"
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for run in ("runA", "runB"):
        (bench / "hessian").mkdir(parents=True, exist_ok=True)
        (bench / "hessian" / f"{run}.tsv").write_text(header + "120.0\t0:02:00\t30\t40\t20\t20"
                                                      "\t0\t0\t1\t0.2\n")
    now = time.time()
    with (bench / forkserver.ACCOUNTING_FILE).open("w") as fh:
        fh.write("\t".join(forkserver.ACCOUNTING_COLUMNS) + "\n")
        fh.write(f"{now}\thessian\trun=runA\tx/hessian/runA/e.parquet\t0\t118.0\t120.0\t2100\n")
        # runB's row is from an older execution: its benchmark file stays as written
        fh.write(f"{now - 3600}\thessian\trun=runB\tx/hessian/runB/e.parquet\t0\t1\t1\t9000\n")
    spec = importlib.util.spec_from_file_location(
        "resources_from_benchmarks", REPO / "scripts" / "resources_from_benchmarks.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rows = script.read_benchmarks([bench], script.rule_patterns(REPO / "workflow" / "rules"))
    assert sorted(r["max_rss"] for r in rows["hessian"]) == [30.0, 2100.0]
    assert sorted(r["cpu_time"] for r in rows["hessian"]) == [0.2, 118.0]
    assert "forkserver.tsv" not in capsys.readouterr().err  # not a rule's benchmark, not noise
    assert script.main([str(bench)]) == 0
    line = next(t for t in capsys.readouterr().out.splitlines() if t.startswith("hessian"))
    assert line.split()[-3] == str(math.ceil((2100 * 1.5 + 256) / 100) * 100)


def test_the_smoke_study_forked_every_job(smoke):
    """Snakemake's onstart starts the server for a local run, and every job forks from it:
    the accounting has a row for each computing job's benchmark, and no job was declined."""
    res = smoke / "results" / "smoke"
    assert (res / "logs" / "forkserver.log").read_text() == ""
    rows = _rows(res / "benchmarks" / forkserver.ACCOUNTING_FILE)
    assert rows and all(r["rc"] == "0" for r in rows)
    df = cost.read_benchmarks(res / "benchmarks")
    assert df["jobs"].sum() > 0 and (df["forked"] == df["jobs"]).all(), df


def test_one_interpreter_under_any_of_its_names():
    """A venv's `python` (the jobs') and `python3.11` (Snakemake's shebang) are one interpreter."""
    names = [p for p in (Path(sys.executable).with_name(n) for n in ("python", "python3",
             f"python3.{sys.version_info.minor}")) if p.exists()]
    seen = {subprocess.run([str(p), "-c", "from landscape.forkclient import interpreter; "
                            "print(interpreter())"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, check=True).stdout
            for p in names}
    assert len(names) >= 2 and len(seen) == 1, seen
