"""What every command area shares: the one-line-error parser, printing a result, the run store."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, NoReturn


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def print_result(obj: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    print(json.dumps(obj, indent=2, default=str) if as_json else text(obj))


def reconciled_store(args: argparse.Namespace):
    """The run store, with runs whose worker died since anyone last looked marked failed (as the pages do)."""
    from kd_analysis.runs import RunStore, reconcile

    store = RunStore(args.root)
    reconcile(store)
    return store


def add_root(q: argparse.ArgumentParser) -> None:
    q.add_argument("--root", help="run store folder (default: cached_runs/ or $KD_LENS_RUNS)")
