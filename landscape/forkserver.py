"""A fork server for a study's local jobs: import the heavy libraries once, fork every job.

Each job of a study is ``python -m landscape <stage> ...``: a fresh interpreter that spends about
2 CPU-seconds importing torch, pandas, pyarrow and matplotlib before it computes anything, which
over the default study's hundred jobs is a sixth of its CPU time. For a local run the Snakefile
starts this server (``onstart``); it imports those libraries once, listens on a Unix socket, and
forks one child per job. The job's own process (``landscape.cli.main``) is a thin client
(``landscape.forkclient``): it
hands the server its command line, working directory, environment and standard streams (the file
descriptors themselves, so redirections such as ``> log 2>&1`` hold), waits, and exits with the
child's status. The child runs exactly what the fresh process would have run, in the same
module versions, on the same inputs; the tables are the same bit for bit (tests/test_forkserver.py).

A job runs in a fresh process instead, as before, whenever the server cannot vouch for that:

* no server (``LANDSCAPE_FORK_SERVER`` unset or its socket gone: SLURM jobs, a lone command);
* another interpreter or another copy of the package than the server's;
* an environment variable that a library reads when it is loaded (thread counts, allocator,
  hash seed: ``LOAD_TIME_ENV``) differs from the server's;
* a file of the package changed since the server started.

The child is forked before it touches torch (the server never runs an operation, so no OpenMP
or CUDA state exists to inherit). Signals: the client passes SIGINT and SIGTERM on to the child;
a client that disappears (killed by Snakemake) gets its child terminated; the server exits when
its parent (Snakemake) does. Every finished child's CPU time, wall time and peak memory
(``os.wait4``) is appended to an accounting file, which ``landscape.cost`` reads because
Snakemake's ``benchmark:`` sampler only sees the thin client.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import re
import selectors
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

from .forkclient import (
    ACCOUNTING_FILE,
    ENV_OFF,
    ENV_SOCKET,
    interpreter,
    package_dir,
    recv_message,
    send_message,
)

# imported once by the server; a job imports the rest itself (the package's own modules are cheap)
PRELOAD = ("torch", "torch.func", "torch.utils.flop_counter", "numpy", "pandas",
           "pyarrow", "pyarrow.parquet", "scipy.stats", "scipy.optimize", "scipy.sparse.linalg",
           "matplotlib", "tqdm.auto", "yaml")
# variables libraries read when they are loaded (thread pools, allocators, the hash seed): the
# server's values are baked into its imports, so a job asking for others runs in a fresh process
LOAD_TIME_ENV = re.compile(r"^(OMP_|OPENBLAS_|MKL_|GOTO_|VECLIB_|NUMEXPR_|KMP_|GOMP_|PYTHON|"
                           r"TORCH|PYTORCH_|LD_|MALLOC_|CUDA_|NVIDIA_|MPL|ATEN_|DNNL_|ONEDNN_)")
# the thread variables Snakemake gives a job of `threads: 1` (snakemake/shell.py): the server
# starts with them, so that its libraries load as a one-thread job's would
ONE_THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                   "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                                   "NUMEXPR_NUM_THREADS")}
ACCOUNTING_COLUMNS = ("finished", "stage", "job", "outputs", "rc", "cpu_s", "wall_s", "max_rss_mb")


def _package_stamp() -> tuple:
    """(path, mtime_ns, size) of every file of the package: a change means edited code."""
    files = (p for p in package_dir().rglob("*") if p.suffix in (".py", ".yaml"))
    return tuple(sorted((str(p), st.st_mtime_ns, st.st_size)
                        for p, st in ((p, p.stat()) for p in files)))


def _load_time_env(env: dict) -> dict:
    return {k: v for k, v in env.items() if LOAD_TIME_ENV.match(k)}


def server_environment(base: dict | None = None) -> dict:
    """The environment to start the server in: ``base`` (default: this process's) with the
    one-thread variables Snakemake gives every job of this workflow."""
    env = dict(os.environ if base is None else base)
    env.update(ONE_THREAD_ENV)
    return env


# ----------------------------------------------------------------------------------- server side
class Server:
    """The server's state: its socket, children (pid → connection, start time, job) and the
    accounting file."""

    def __init__(self, path: str, accounting: str | None) -> None:
        self.path = path
        self.accounting = Path(accounting) if accounting else None
        self.parent = os.getppid()
        self.children: dict[int, tuple[socket.socket, float, dict]] = {}
        self.env = _load_time_env(os.environ)
        self.stamp = _package_stamp()
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(path):
            os.unlink(path)
        self.listener.bind(path)
        self.listener.listen(64)

    def refusal(self, req: dict) -> str | None:
        """Why the request must run in a fresh process, or None."""
        if req.get("interpreter") != interpreter():
            return f"interpreter {req.get('interpreter')} is not the server's {interpreter()}"
        if req.get("package") != str(package_dir()):
            return f"package {req.get('package')} is not the server's {package_dir()}"
        env = _load_time_env(req.get("env", {}))
        if env != self.env:
            diff = sorted(k for k in set(env) | set(self.env) if env.get(k) != self.env.get(k))
            return f"load-time environment differs: {diff}"
        if _package_stamp() != self.stamp:
            return "the package's files changed since the server started"
        return None

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.setblocking(True)
        try:
            req, fds = recv_message(conn, want_fds=3)
        except OSError:
            conn.close()
            return
        if req is None or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        why = self.refusal(req)
        if why is not None:  # the job runs in a fresh process; the log says why
            print(f"{time.strftime('%H:%M:%S')} ran in a fresh process: "
                  f"{' '.join(req.get('argv', [])[:1])}: {why}", flush=True)
            for fd in fds:
                os.close(fd)
            send_message(conn, {"declined": why})
            conn.close()
            return
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:  # the job
            self._child(req, fds, conn)
        for fd in fds:
            os.close(fd)
        self.children[pid] = (conn, time.monotonic(), req)
        try:
            send_message(conn, {"pid": pid})
        except OSError:
            self._terminate(pid)
        self.sel.register(conn, selectors.EVENT_READ, pid)

    def _child(self, req: dict, fds: list[int], conn: socket.socket) -> None:
        rc = 1
        try:
            signal.set_wakeup_fd(-1)
            for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
                signal.signal(s, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.sel.close()
            self.listener.close()
            for c, _, _ in self.children.values():
                c.close()
            conn.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update(req["env"])
            sys.argv = [str(package_dir() / "__main__.py"), *req["argv"]]
            # streams as a fresh interpreter opens them on these descriptors (same encoding
            # as the server's: same interpreter and locale variables)
            raw = bool(os.environ.get("PYTHONUNBUFFERED"))
            enc = sys.stdout.encoding
            sys.stdin = io.TextIOWrapper(open(0, "rb", closefd=False), encoding=enc)
            sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), encoding=enc,
                                          errors=sys.stdout.errors, write_through=raw,
                                          line_buffering=os.isatty(1))
            sys.stderr = io.TextIOWrapper(open(2, "wb", closefd=False), encoding=enc,
                                          errors="backslashreplace", write_through=raw,
                                          line_buffering=True)
            from .cli import main

            try:
                code = main(req["argv"])
                rc = 0 if code is None else int(code)
            except SystemExit as exc:
                code = exc.code
                if code is None:
                    rc = 0
                elif isinstance(code, int):
                    rc = code
                else:
                    sys.stderr.write(f"{code}\n")
                    rc = 1
            except KeyboardInterrupt:
                rc = 130
            except BaseException:  # noqa: BLE001  as the interpreter would: traceback, status 1
                traceback.print_exc()
                rc = 1
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001, S110  a closed pipe: nothing left to say
                    pass
            os._exit(rc)

    def _terminate(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def reap(self) -> None:
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self.children.pop(pid, None)
            if entry is None:
                continue
            conn, started, req = entry
            rc = os.waitstatus_to_exitcode(status)
            rc = 128 - rc if rc < 0 else rc  # killed by a signal: as a shell reports it
            self._account(req, rc, usage.ru_utime + usage.ru_stime, time.monotonic() - started,
                          usage.ru_maxrss / 1024)
            try:
                self.sel.unregister(conn)
                send_message(conn, {"rc": rc})
            except (OSError, KeyError, ValueError):
                pass
            conn.close()

    def _account(self, req: dict, rc: int, cpu: float, wall: float, rss_mb: float) -> None:
        if self.accounting is None:
            return
        argv = req["argv"]
        pairs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--job"]
        outs = [argv[i + 1].partition("=")[2] or argv[i + 1]
                for i, a in enumerate(argv[:-1]) if a in ("--out", "--file", "--output")]
        row = [f"{time.time():.3f}", argv[0] if argv else "", ";".join(pairs), ";".join(outs),
               str(rc), f"{cpu:.3f}", f"{wall:.3f}", f"{rss_mb:.1f}"]
        new = not self.accounting.exists()
        self.accounting.parent.mkdir(parents=True, exist_ok=True)
        with self.accounting.open("a") as fh:
            if new:
                fh.write("\t".join(ACCOUNTING_COLUMNS) + "\n")
            fh.write("\t".join(c.replace("\t", " ") for c in row) + "\n")

    def serve(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the jobs themselves
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.set_wakeup_fd(self.wake_w)
        self.sel.register(self.listener, selectors.EVENT_READ, "listen")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.running = True
        while self.running:
            for key, _ in self.sel.select(timeout=1.0):
                if key.data == "listen":
                    self.accept()
                elif key.data == "wake":
                    try:
                        os.read(self.wake_r, 4096)
                    except BlockingIOError:
                        pass
                    self.reap()
                else:  # a client's connection: readable means it went away
                    pid = key.data
                    if pid in self.children:
                        self._terminate(pid)
                    try:
                        self.sel.unregister(key.fileobj)
                    except (KeyError, ValueError):
                        pass
            self.reap()
            if os.getppid() != self.parent:  # Snakemake is gone
                self.stop()
        for pid in list(self.children):
            self._terminate(pid)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def stop(self) -> None:
        self.running = False


# ------------------------------------------------------------------------------ from the Snakefile
_started: dict = {}


def start(results_dir: str | Path, local: bool = True) -> str | None:
    """Start a server for the jobs of this Snakemake process (its ``onstart``) and point them
    at it (``ENV_SOCKET`` in this process's environment, which local jobs inherit); the socket's
    path, or None where jobs run elsewhere (``local`` False: a cluster executor) or
    ``ENV_OFF`` is set. Its log is ``logs/forkserver.log``, its accounting
    ``benchmarks/forkserver.tsv`` (both under ``results_dir``)."""
    import atexit
    import subprocess
    import tempfile

    if not local or os.environ.get(ENV_OFF) or _started:
        return _started.get("path")
    folder = tempfile.mkdtemp(prefix="landscape-fork-")
    path = os.path.join(folder, "socket")
    results = Path(results_dir)
    (results / "logs").mkdir(parents=True, exist_ok=True)
    with open(results / "logs" / "forkserver.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "landscape.forkserver", path,
                                 "--accounting", str(results / "benchmarks" / ACCOUNTING_FILE)],
                                env=server_environment(), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
    _started.update(proc=proc, path=path, folder=folder)
    os.environ[ENV_SOCKET] = path
    atexit.register(stop)
    return path


def stop() -> None:
    """Stop the server ``start`` started (its ``onsuccess``/``onerror``; also at exit)."""
    import shutil
    import subprocess

    if not _started:
        return
    proc = _started.pop("proc")
    os.environ.pop(ENV_SOCKET, None)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(_started.pop("folder"), ignore_errors=True)
    _started.clear()


def preload() -> None:
    import importlib

    import matplotlib

    matplotlib.use("Agg")
    for name in PRELOAD:
        importlib.import_module(name)
    # the imported objects never die: keep them out of the children's garbage collections
    # (which would scan them all and, writing their headers, copy their pages)
    gc.collect()
    gc.freeze()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m landscape.forkserver", description=__doc__.split(
        "\n")[0])
    p.add_argument("socket", help="path of the Unix socket to listen on")
    p.add_argument("--accounting", help="TSV file to append each finished job's resources to")
    args = p.parse_args(argv)
    server = Server(args.socket, args.accounting)  # listening before the imports: jobs queue
    preload()
    server.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
