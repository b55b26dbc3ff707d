"""Helpers shared by several test files."""

from __future__ import annotations

import os
import subprocess


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`kd-lens ARGS` run by `main()` in this process: its exit code and what it printed, as a finished process."""
    import contextlib
    import io

    from kd_analysis.cli import main

    saved = {name: os.environ.get(name) for name in (env or {})}
    os.environ.update(env or {})
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's --help and usage errors
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return subprocess.CompletedProcess(["kd-lens", *args], code, out.getvalue(), err.getvalue())


def assert_clean_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
