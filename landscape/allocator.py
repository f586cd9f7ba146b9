"""Keep freed memory inside the process instead of handing it back to the kernel at every free.

glibc's ``malloc`` serves blocks above its mmap threshold with a fresh ``mmap`` and returns them
with ``munmap`` when freed, and trims the heap top when more than the trim threshold is free.
A forward pass allocates activations of a few MiB per layer (64 images × 16 channels × 28² floats
is 3.2 MiB), so with those defaults every layer of every batch faults in fresh zeroed pages.
On this project's 2-core development machine that was about half of an evaluation's CPU time,
spent in the kernel, and two processes evaluating at once slowed each other in the kernel's
page handling, which kept ``slices.shards: 2`` from scaling. ``bench/bench_allocator.py``
measures both against glibc's defaults (evaluation, training, two processes at once).

:func:`keep_freed_memory` sets glibc's ``M_MMAP_THRESHOLD`` (32 MiB, glibc's maximum on 64-bit),
``M_TRIM_THRESHOLD`` (256 MiB) and ``M_TOP_PAD`` (64 MiB) with ``mallopt``; the command-line
entry calls it before any stage runs. The price is that a process keeps up to ~256 MiB of freed
memory for reuse. It changes no number, only where memory comes from. Elsewhere than glibc
(macOS, musl) it does nothing; ``LANDSCAPE_MALLOC=system`` keeps the C library's defaults
(for comparisons: ``bench/bench_allocator.py``).
"""

from __future__ import annotations

import ctypes
import os

from .errors import UserError

ENV = "LANDSCAPE_MALLOC"
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's <malloc.h>
SETTINGS = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 256 << 20), (M_TOP_PAD, 64 << 20))

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply :data:`SETTINGS` once per process (glibc only); True when they are in effect."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    choice = os.environ.get(ENV, "keep")
    if choice == "system":
        return False
    if choice != "keep":
        raise UserError(f"{ENV}={choice!r} is not allowed: expected 'keep' (default) or "
                         "'system'")
    if not is_glibc():
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS)


def is_glibc() -> bool:
    """Whether this process runs on glibc (whose ``mallopt`` takes :data:`SETTINGS`)."""
    confstr = getattr(os, "confstr", None)  # POSIX only
    try:
        return bool(confstr) and (confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # the name is unknown where the C library is not glibc
        return False
