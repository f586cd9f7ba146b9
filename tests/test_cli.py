"""The command line: every stage is reachable and named after its module."""

import subprocess
import sys

from landscape import cli


def test_every_stage_named_after_its_module():
    from landscape.registry import by_module

    for name, module in cli.stage_names().items():
        mod = cli._load(module)
        if hasattr(mod, "STAGE"):  # a registered measurement: the registry names it
            assert by_module(module).command == name and callable(mod.measure)
        else:
            assert mod.NAME == name


def test_help_lists_every_stage():
    out = subprocess.run([sys.executable, "-m", "landscape", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for name in cli.stage_names():
        assert name in out


def test_a_stage_imports_only_its_own_module():
    code = ("import sys; from landscape.cli import build_parser; build_parser('gather'); "
            "print(sorted(m for m in sys.modules if m.startswith('landscape.stages.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['landscape.stages._common', 'landscape.stages.gather']" or \
        out.strip() == "['landscape.stages.gather']"
    assert "matplotlib" not in subprocess.run(
        [sys.executable, "-c", "import sys; from landscape.cli import build_parser; "
         "build_parser('gather'); print([m for m in sys.modules if 'matplotlib' in m])"],
        capture_output=True, text=True, check=True).stdout.replace("[]", "")


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path, monkeypatch, capsys):
    from landscape.stages import gather

    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    rc = cli.main(["gather", "--table", "runs", "--out", str(tmp_path / "o.parquet"),
                   "--inputs", str(bad)])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("landscape gather: error:") and "bad.parquet" in err

    def bug(args):
        raise KeyError("oops")

    monkeypatch.setattr(gather, "run", bug)
    rc = cli.main(["gather", "--table", "runs", "--out", "o", "--inputs", "i"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback (most recent call last)" in err and "KeyError: 'oops'" in err
