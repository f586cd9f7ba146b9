"""Freed memory stays in the process (landscape/allocator.py): no page faults per forward pass."""

import os
import subprocess
import sys
import textwrap

import pytest

from landscape import allocator, cli

glibc = pytest.mark.skipif(not allocator.is_glibc(), reason="glibc's mallopt only")

# twenty evaluation passes after a warm-up: minor page faults and whether the settings applied
PASSES = textwrap.dedent("""
    import resource, torch
    torch.set_num_threads(1)
    from landscape.allocator import keep_freed_memory
    applied = keep_freed_memory()
    from landscape.evaluate import evaluate
    from landscape.models import build_model
    torch.manual_seed(0)
    model = build_model("cnn", width=16, hidden=64)
    x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
    loss, _ = evaluate(model, x, y, 64)
    for _ in range(2):
        evaluate(model, x, y, 64)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        evaluate(model, x, y, 64)
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, loss.hex())
""")


def faults(**env) -> tuple[bool, int, str]:
    """Whether the settings applied, the page faults of twenty passes, the loss (hex)."""
    out = subprocess.run([sys.executable, "-c", PASSES], env={**os.environ, **env},
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1]), out[2]


@glibc
def test_evaluation_passes_reuse_freed_memory_instead_of_faulting_in_new_pages():
    kept, kept_faults, kept_loss = faults()
    system, system_faults, system_loss = faults(LANDSCAPE_MALLOC="system")
    assert kept and not system
    assert kept_loss == system_loss  # where memory comes from changes no number
    # glibc's defaults map and unmap every activation of > 128 KiB: thousands of faults per pass
    # (2,000-8,000 measured); kept memory faults only when the heap grows, now and then one
    # activation's 785 pages (0 to 1,569 measured over twenty passes)
    assert system_faults > 20_000, system_faults
    assert kept_faults < system_faults / 8, (kept_faults, system_faults)


def test_every_stage_keeps_freed_memory_and_a_bad_choice_is_one_line(tmp_path, monkeypatch,
                                                                       capsys):
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setenv(allocator.ENV, "jemalloc")
    rc = cli.main(["gather", "--table", "runs", "--out", str(tmp_path / "o.parquet"),
                   "--inputs", str(tmp_path / "missing.parquet")])
    err = capsys.readouterr().err
    assert rc == 1 and not (tmp_path / "o.parquet").exists()
    assert err.count("\n") == 1 and "LANDSCAPE_MALLOC='jemalloc'" in err and "'system'" in err
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setenv(allocator.ENV, "system")
    assert allocator.keep_freed_memory() is False
    monkeypatch.setattr(allocator, "_applied", None)
