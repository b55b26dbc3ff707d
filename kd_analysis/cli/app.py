"""`app`: start the web app on this machine, with the same settings as the README's first command (bound to
127.0.0.1, no file watcher), from wherever the command is typed."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from kd_analysis.exceptions import KDLensError


def app_file() -> Path:
    """The app's entry point (app.py, with pages/ beside it): the checkout's, or the installed copy's."""
    from kd_analysis.locations import app_root

    root = app_root()
    if root is None:
        raise KDLensError(
            "the app's files (app.py and pages/) are not beside this install: reinstall kd-lens from its "
            "repository (pip install . or pip install -e .)"
        )
    return root / "app.py"


def app_command(args: argparse.Namespace) -> list[str]:
    """The streamlit command line `app` runs: its flags, then whatever followed `--` (streamlit's own)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_file()),
        "--server.address",
        args.address,
        "--server.port",
        str(args.port),
        "--server.fileWatcherType",
        "none",
        "--server.headless",
        "true" if args.headless else "false",
        *(args.streamlit[1:] if args.streamlit[:1] == ["--"] else args.streamlit),
    ]


def cmd_app(args: argparse.Namespace) -> None:
    if args.address not in ("127.0.0.1", "localhost", "::1") and not args.allow_remote:
        raise KDLensError(
            f"--address {args.address} would serve the app (and every run) to other machines; add --allow-remote "
            "if that is what you want"
        )
    command = app_command(args)
    if args.print:
        print(" ".join(command))
        return
    # the checkout is the working folder: the app's .streamlit/config.toml and the configs' relative paths apply
    raise SystemExit(subprocess.call(command, cwd=app_file().parent))


def add_app(sub) -> None:
    app = sub.add_parser("app", help="start the web app (http://127.0.0.1:8501), with the demo built in")
    app.add_argument("--port", type=int, default=8501, help="port to serve on (default: 8501)")
    app.add_argument("--address", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine)")
    app.add_argument("--allow-remote", action="store_true", help="allow an --address other machines can reach")
    app.add_argument("--headless", action="store_true", help="do not open a browser")
    app.add_argument("--print", action="store_true", help="print the streamlit command instead of running it")
    app.add_argument("streamlit", nargs=argparse.REMAINDER, help="after --: streamlit's own flags")
    app.set_defaults(fn=cmd_app)
