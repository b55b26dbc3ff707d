"""Count, limit and size arguments are checked in one place: negatives and zeros are refused with one line."""

from __future__ import annotations

import argparse

import pytest

from kd_analysis import cli
from kd_analysis.cli.args import BOUNDS


def _numeric_options(parser: argparse.ArgumentParser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _numeric_options(sub, path + (name,))
        elif action.type in (int, float):
            yield path, action


def test_every_numeric_option_has_bounds():
    missing = [
        f"{' '.join(path)} {action.option_strings[0]}"
        for path, action in _numeric_options(cli.build_parser())
        if action.dest not in BOUNDS
    ]
    assert not missing, f"add these options to kd_analysis.cli.args.BOUNDS: {missing}"


@pytest.mark.parametrize(
    "argv, option",
    [
        (["rationales", "--teacher", "minilm-l6", "--data", "demo:mcq", "--limit", "-1"], "--limit"),
        (["rationales", "--teacher", "minilm-l6", "--data", "demo:mcq", "--k", "0"], "--k"),
        (["rationales", "--teacher", "minilm-l6", "--data", "demo:mcq", "--start", "-3"], "--start"),
        (["losses", "toy", "--steps", "-5"], "--steps"),
        (["losses", "toy", "--tau", "0"], "--tau"),
        (["losses", "toy", "--alpha", "1.5"], "--alpha"),
        (["losses", "toy", "--eps", "nan"], "--eps"),
        (["losses", "pair", "--teacher", "minilm-l6", "--data", "demo:mcq", "--batch", "0"], "--batch"),
        (
            ["prime", "outputs", "--teacher", "smollm2-135m-instruct", "--data", "demo:gsm8k", "--limit", "-1"],
            "--limit",
        ),
        (["attention", "stats", "--data", "demo:mcq", "--limit", "0"], "--limit"),
    ],
)
def test_out_of_range_values_are_refused_with_one_line(argv, option, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {option} must be") and err.count("\n") == 1 and "Traceback" not in err
