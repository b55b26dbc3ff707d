"""Command line: the same library functions the pages call, for scripts, CI and clusters. One module per command
area, each with its commands and an `add_*` that declares them.

Bad input exits with code 2 and one line on stderr; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from kd_analysis.cli.common import Parser
from kd_analysis.exceptions import KDLensError, user_message


def _prog() -> str:
    """`kd-lens` when started by the console script, else the module form users typed."""
    return "kd-lens" if os.path.basename(sys.argv[0]) == "kd-lens" else "python -m kd_analysis"


def build_parser() -> argparse.ArgumentParser:
    from kd_analysis.cli import app, data, errors, inside, losses, models, presets, priming, rationales, runs

    p = Parser(prog=_prog(), description="kd-lens: analyse and run knowledge distillation.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for add in (
        app.add_app,
        models.add_models,
        losses.add_losses,
        rationales.add_rationales,
        data.add_data,
        runs.add_runs,
        presets.add_story,
        presets.add_presets,
        runs.add_train,
        priming.add_priming,
        errors.add_errors,
        inside.add_inside,
        runs.add_job,
    ):
        add(sub)
    return p


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout redirected to a StringIO (in-process callers)
        pass


def main(argv: list[str] | None = None) -> int:
    from kd_analysis.cli.args import check_args

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:  # libraries' deprecation notices would come before our one line; --debug shows them
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        check_args(args)
        args.fn(args)
    except BrokenPipeError:  # `runs list | head` closed the pipe: the reader has what it wanted
        _silence_stdout()
        return 0
    except KDLensError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file the command reads or writes: say which and why, not the exception's class
        if args.debug:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not bad input: still one line, with a way to see more
        if args.debug:
            raise
        print(f"error: {user_message(exc, kind=True)} (rerun with --debug for the traceback)", file=sys.stderr)
        return 2
    return 0
