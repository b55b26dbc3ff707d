"""What every command area shares: the one-line-error parser, printing a result, the run store."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


# what a terminal would act on rather than show: C0/C1 controls (ANSI escapes start with ESC) and the bidi
# controls that reorder what follows (a note could make "rm x" display as "x mr")
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """Text for a terminal: every control character but newline and tab shown as its escape (\\x1b, \\u202e)."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def print_result(obj: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    """JSON (which escapes controls itself) or the human-readable text, made safe for a terminal: notes, example
    texts and run names are user data."""
    print(json.dumps(_finite(obj), indent=2, default=str, allow_nan=False) if as_json else terminal_safe(text(obj)))


def _finite(obj: Any) -> Any:
    """NaN and infinity as null: `--json` output is strict JSON, which has neither (a damaged metrics line may)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def reconciled_store(args: argparse.Namespace):
    """The run store, with runs whose worker died since anyone last looked marked failed (as the pages do)."""
    from kd_analysis.runs import RunStore, reconcile

    store = RunStore(args.root)
    reconcile(store)
    return store


def creates_runs(fn: F) -> F:
    """Marks a command that may start runs: its `--root` may name a folder that does not exist yet (it is made).
    Every other command refuses such a root, which would otherwise read as an empty store."""
    fn.creates_runs = True  # type: ignore[attr-defined]
    return fn


def add_data(q: argparse.ArgumentParser, **kw: Any) -> None:
    """`--data` and `--columns`: a data set and, for a file in no known format, which columns hold what."""
    q.add_argument("--data", help=kw.pop("help", "a data file, demo:NAME or hf:NAME"), **kw)
    q.add_argument(
        "--columns",
        metavar="ROLE=COLUMN,...",
        help="the data file's columns by role (text, label, choices, answer, solution, id), e.g. "
        "text=review,label=sentiment; kept with the data set in every record and config",
    )


def add_root(q: argparse.ArgumentParser) -> None:
    q.add_argument(
        "--root",
        help="run store folder (default: $KD_LENS_RUNS, else your runs beside the shipped reference runs)",
    )
