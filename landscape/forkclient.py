"""The client side of the fork server (``landscape.forkserver``): what a job's own process runs.

``landscape.cli.main`` calls ``submit`` first: with a server named in ``ENV_SOCKET`` it hands over
its command line, working directory, environment and standard streams and waits for the forked
job's status; without one (or when the server declines) it returns None and the command runs in
this process as before. Only the standard library is imported here: a client stays light.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path

ENV_SOCKET = "LANDSCAPE_FORK_SERVER"  # path of the server's socket; unset: fresh processes
ENV_OFF = "LANDSCAPE_NO_FORK_SERVER"  # set (to anything) to never start one
ACCOUNTING_FILE = "forkserver.tsv"  # in the study's benchmarks folder (read by landscape.cost)
_HEADER = struct.Struct("!Q")


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def interpreter() -> list[str]:
    """The interpreter binary (links resolved: `python` and `python3.11` of a venv are one) and
    its environment (``sys.prefix``: the venv, hence its site-packages)."""
    return [os.path.realpath(sys.executable), sys.prefix, sys.version]


# ----------------------------------------------------------------------------------- wire format
def send_message(sock: socket.socket, obj: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(obj).encode()
    payload = _HEADER.pack(len(data)) + data
    if fds:
        socket.send_fds(sock, [payload], fds)
    else:
        sock.sendall(payload)


def recv_message(sock: socket.socket, want_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One message (None at end of stream) and the descriptors that came with it."""
    buf, fds = b"", []
    while len(buf) < _HEADER.size or len(buf) < _HEADER.size + _HEADER.unpack(
            buf[:_HEADER.size])[0]:
        if want_fds and not fds:
            chunk, got, _, _ = socket.recv_fds(sock, 1 << 16, want_fds)
            fds += got
        else:
            chunk = sock.recv(1 << 16)
        if not chunk:
            for fd in fds:
                os.close(fd)
            return None, []
        buf += chunk
    n = _HEADER.unpack(buf[:_HEADER.size])[0]
    return json.loads(buf[_HEADER.size:_HEADER.size + n]), fds


# ----------------------------------------------------------------------------------- client side
def submit(argv: list[str]) -> int | None:
    """Run ``python -m landscape *argv`` in a child of the server named by ``ENV_SOCKET``; its
    exit status, or None when no server is there or it declines (then run it here)."""
    path = os.environ.get(ENV_SOCKET)
    if not path or os.environ.get(ENV_OFF):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        send_message(sock, {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ),
                     "interpreter": interpreter(), "package": str(package_dir())},
              [0, 1, 2])
        reply, _ = recv_message(sock)
    except OSError:
        sock.close()
        return None
    if reply is None or "pid" not in reply:  # declined (or gone) before forking: run it here
        sock.close()
        return None
    child = int(reply["pid"])

    def forward(signum, _frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                done, _ = recv_message(sock)
                break
            except InterruptedError:
                continue
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sock.close()
    if done is None:
        sys.stderr.write(f"landscape: the fork server ended before job process {child} did\n")
        forward(signal.SIGTERM, None)
        return 1
    return int(done["rc"])
