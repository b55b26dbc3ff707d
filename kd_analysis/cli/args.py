"""Every count, limit, size and rate argument of the CLI, checked in one place after parsing.

argparse's `type=int` accepts -1, and Python slicing then reads `--limit -1` as "all but the last example":
a quiet misreading. Each option's bounds live in this table, so a new option is one line.
"""

from __future__ import annotations

import argparse
import math
import os

from kd_analysis.exceptions import KDLensError

# dest -> (lowest allowed, highest allowed or None, whether the lowest is itself allowed)
BOUNDS: dict[str, tuple[float, float | None, bool]] = {
    "limit": (1, None, True),
    "port": (1, 65535, True),
    "start": (0, None, True),
    "example": (0, None, True),
    "batch": (1, None, True),
    "batch_size": (1, None, True),
    "jobs": (1, None, True),
    "k": (1, None, True),
    "top": (1, None, True),
    "steps": (1, None, True),
    "iters": (1, None, True),
    "layers": (1, None, True),
    "student_layers": (1, None, True),
    "num_labels": (1, None, True),
    "max_tokens": (8, None, True),
    "max_new_tokens": (1, None, True),
    "min_n": (1, None, True),
    "tau": (0, None, False),
    "eps": (0, None, False),
    "lr": (0, None, False),
    "alpha": (0, 1, True),
    "threshold": (0, 1, True),
}


def _ascii(kind, words: str):
    """An argparse type that reads `kind` from ASCII text only: int() and float() also read other scripts'
    digits (e.g. '١٠'), which a config file refuses."""

    def read(text: str):
        if not text.strip().isascii():
            raise argparse.ArgumentTypeError(f"{text!r} is not {words} written in ASCII digits")
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {words}") from None

    return read


whole_number = _ascii(int, "a whole number")  # argparse's type for counts
number = _ascii(float, "a number")  # argparse's type for numbers


def _with_columns(data: str, spec: str) -> str:
    from kd_analysis.data.loaders import ColumnMapping
    from kd_analysis.data.refs import ROLES, with_columns

    pairs = [p.partition("=") for p in spec.split(",") if p.strip()]
    bad = [role for role, eq, col in pairs if not eq or role.strip() not in ROLES or not col.strip()]
    if not pairs or bad:
        raise KDLensError(
            f"--columns takes ROLE=COLUMN pairs, the roles being {', '.join(ROLES)} (got {spec!r:.80}), "
            "e.g. text=review,label=sentiment"
        )
    chosen = {role.strip(): col.strip() for role, _, col in pairs}
    if len(chosen) != len(pairs):
        raise KDLensError(f"--columns names a role twice (got {spec!r:.80})")
    return with_columns(data, ColumnMapping(**chosen))


def check_args(args: argparse.Namespace) -> None:
    """Refuse any out-of-range value with one line naming the option, the rule and the value given."""
    if isinstance(getattr(args, "device", None), str):
        from kd_analysis.training.config import check_device

        check_device("--device", args.device)
    for name in ("out", "root"):  # an empty path would quietly mean "here" or the default store
        if getattr(args, name, None) == "":
            raise KDLensError(f"--{name} is empty: name a path")
    if getattr(args, "columns", None) is not None:  # --columns text=review,label=sentiment: into the data's key
        args.data = _with_columns(args.data, args.columns)
    root = getattr(args, "root", None)
    if root and not os.path.exists(root) and not getattr(getattr(args, "fn", None), "creates_runs", False):
        raise KDLensError(f"--root {root} does not exist: there is no run store there to read")
    for dest, (low, high, inclusive) in BOUNDS.items():
        value = getattr(args, dest, None)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        option = "--" + dest.replace("_", "-")
        whole = isinstance(value, int)
        if isinstance(value, float) and not math.isfinite(value):
            raise KDLensError(f"{option} must be a finite number (got {value})")
        too_low = value < low if inclusive else value <= low
        if too_low or (high is not None and value > high):
            rule = f"between {low:g} and {high:g}" if high is not None else f"{'≥' if inclusive else '>'} {low:g}"
            raise KDLensError(f"{option} must be {'a whole number ' if whole else ''}{rule} (got {value:g})")
