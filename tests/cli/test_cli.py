"""The CLI contract: exit codes, one-line errors, JSON output. Most tests call `main()` in this process (a new
interpreter costs seconds of imports per call); the process itself, as scripts call it, is checked by
`cli_process` for help, bad input and the entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import assert_clean_error, cli

ROOT = Path(__file__).resolve().parents[2]


def cli_process(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m kd_analysis ARGS` in a new process, exactly as scripts call it."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "kd_analysis", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


def test_help_lists_every_subcommand():
    proc = cli_process("--help")
    assert proc.returncode == 0
    for sub in ("models", "data", "runs"):
        assert sub in proc.stdout


def test_models_list():
    proc = cli("models", "list", "--json")
    names = {m["name"] for m in json.loads(proc.stdout)}
    assert {"minilm", "smollm2-135m-instruct"} <= names
    assert "minilm" in cli("models", "list").stdout


@pytest.mark.parametrize("family", ["bert", "llama", "t5"])
@pytest.mark.slow
def test_models_inspect_json(tiny_dir, family):
    proc = cli("models", "inspect", str(tiny_dir / family), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    for key in ("family", "task", "parameters", "layers", "heads", "vocab_size"):
        assert key in info
    assert info["family"] == family and info["layers"] == 2 and info["heads"] == 4


@pytest.mark.slow
def test_models_inspect_builtin_offline():
    proc = cli("models", "inspect", "minilm", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["family"] == "bert" and info["parameters"] > 22_000_000


@pytest.mark.slow
def test_models_pair_json(tiny_dir):
    proc = cli("models", "pair", "--teacher", str(tiny_dir / "llama"), "--layers", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["student"]["layers"] == 1 and "kl" in out["pair"]["applicable"]


def test_data_inspect_json(tmp_path):
    f = tmp_path / "g.jsonl"
    f.write_text(json.dumps({"question": "1+1?", "answer": "1 + 1 = 2\n#### 2"}) + "\n")
    out = json.loads(cli("data", "inspect", str(f), "--json").stdout)
    assert out["format"] == "gsm8k" and out["examples"] == 1 and out["fields"] == ["question", "answer"]
    demo = json.loads(cli("data", "inspect", "demo:mcq", "--json").stdout)
    assert demo["format"] == "commonsenseqa" and demo["examples"] > 200


def test_data_demo_writes_a_file(tmp_path):
    proc = cli("data", "demo", "sentiment", "--out", str(tmp_path / "s.tsv"))
    assert proc.returncode == 0
    out = json.loads(cli("data", "inspect", str(tmp_path / "s.tsv"), "--json").stdout)
    assert out["format"] == "sst2"


def test_runs_list_and_show(run_root):
    from kd_analysis.runs import RunStore

    run = RunStore(run_root).create("train", {"lr": 0.1}, run_id="r1")
    run.append_metrics({"step": 1, "loss": 0.5})
    env = {"KD_LENS_RUNS": str(run_root)}
    listed = json.loads(cli("runs", "list", "--json", env=env).stdout)
    assert [r["run_id"] for r in listed] == ["r1"]
    shown = json.loads(cli("runs", "show", "r1", "--json", env=env).stdout)
    assert shown["config"]["lr"] == 0.1 and shown["metrics"][0]["loss"] == 0.5
    assert_clean_error(cli("runs", "show", "nope", env=env), "no run")


@pytest.mark.parametrize(
    "args,words",
    [
        (("models", "inspect", "/definitely/not/here"), ("not found",)),
        (("models", "inspect", "some-org/missing-model"), ("some-org/missing-model", "offline")),
        (("data", "inspect", "/definitely/not/here.csv"), ("not found",)),
        (("models", "frobnicate"), ("invalid choice",)),
        (("data", "inspect"), ("required",)),
    ],
)
def test_bad_input_exit_2_one_line(args, words):
    assert_clean_error(cli_process(*args), *words)


def test_bad_data_file(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_bytes(b"sentence,label\n\xff\xfe broken\n")
    assert_clean_error(cli("data", "inspect", str(f)), "not UTF-8")


def _all_parsers(parser, path=()):
    """Every parser in the CLI tree with its command path (argparse keeps subparsers in `choices`)."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, path + (name,))


def test_help_of_every_subcommand_formats():
    """argparse %-formats help strings: a stray '%' crashes `--help` with a traceback (it did for attention)."""
    from kd_analysis.cli import build_parser

    paths = []
    for path, parser in _all_parsers(build_parser()):
        text = parser.format_help()
        assert "usage:" in text, path
        paths.append(path)
    assert ("attention", "stats") in paths and ("runs", "start") in paths and len(paths) > 20


@pytest.mark.parametrize("command", [("attention",), ("attention", "stats"), ("prime", "table"), ("train",)])
def test_help_through_subprocess(command):
    proc = cli_process(*command, "--help")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "usage:" in proc.stdout


def test_user_message_is_one_line_of_the_exception():
    from kd_analysis.exceptions import user_message

    assert user_message(ValueError("first line\nsecond line")) == "first line"
    assert user_message(ValueError("bad thing"), kind=True) == "ValueError: bad thing"
    assert user_message(KeyError()) == "KeyError" and user_message(RuntimeError("  "), kind=True) == "RuntimeError"
    assert user_message(ValueError("x" * 500), limit=10) == "x" * 10


@pytest.mark.parametrize(
    "args",
    [
        ["data", "demo", "mcq"],
        ["story"],
        ["errors", "report", "any-run"],
        ["rationales", "--teacher", "minilm", "--data", "demo:mcq"],
        ["prime", "outputs", "--teacher", "smollm2-135m-instruct", "--data", "demo:arithmetic"],
        ["attention", "view", "--model", "smollm2-135m-instruct", "--data", "demo:arithmetic"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_no_command_overwrites_a_file_without_force(tmp_path, args):
    """An --out that exists (say, the notes database) is refused before any work, and left as it was; a folder
    is refused too."""
    kept = tmp_path / "notes.sqlite"
    kept.write_text("every note")
    res = cli(*args, "--out", str(kept))
    assert res.returncode == 2 and "already exists: pass --force to overwrite it" in res.stderr
    assert kept.read_text() == "every note" and "Traceback" not in res.stderr
    res = cli(*args, "--out", str(tmp_path))
    assert res.returncode == 2 and "is a folder" in res.stderr


def test_an_out_file_that_is_a_dangling_link_is_refused(tmp_path):
    """A link to a file not there yet would be written through, wherever it points."""
    from kd_analysis.exceptions import KDLensError
    from kd_analysis.fileio import writable_target

    link = tmp_path / "report.html"
    link.symlink_to(tmp_path / "elsewhere" / "planted.html")
    with pytest.raises(KDLensError, match="is a symbolic link .* pass --force to replace the link itself"):
        writable_target(link, force=False)
    kept = tmp_path / "notes.sqlite"
    kept.write_text("every note")
    (tmp_path / "out.html").symlink_to(kept)
    assert writable_target(tmp_path / "out.html", force=True) == tmp_path / "out.html"
    assert not (tmp_path / "out.html").exists() and kept.read_text() == "every note"  # the link went, not its file


def test_force_overwrites_the_out_file(tmp_path):
    out = tmp_path / "mcq.jsonl"
    out.write_text("old")
    assert cli("data", "demo", "mcq", "--out", str(out), "--force").returncode == 0
    assert out.read_text().startswith("{")


def test_runs_list_into_a_closed_pipe_ends_quietly(tmp_path):
    """`runs list | head -1`: the reader closes the pipe early; no BrokenPipeError, no traceback."""
    from kd_analysis.runs import RunStore

    store = RunStore(tmp_path / "runs")
    for i in range(300):
        store.create("train", {"name": f"run {i}"}, run_id=f"r{i:03d}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kd_analysis", "runs", "list", "--root", str(store.root)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.stdout is not None and proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.wait(timeout=120) == 0 and "BrokenPipe" not in err and "Traceback" not in err


def test_a_root_that_is_a_file_is_a_sentence(tmp_path):
    not_a_folder = tmp_path / "runs.txt"
    not_a_folder.write_text("x")
    res = cli("runs", "list", "--root", str(not_a_folder))
    assert res.returncode == 2 and "is a file, not a run store folder" in res.stderr


def test_terminal_output_shows_control_characters_instead_of_obeying_them():
    from kd_analysis.cli.common import terminal_safe

    assert terminal_safe("ok\x1b[2J\u202egnp.exe\tend\n") == "ok\\x1b[2J\\u202egnp.exe\tend\n"


def test_a_note_with_neither_text_nor_tag_is_refused(tmp_path):
    res = cli("errors", "note", "any-run", "ex-1", "--root", str(tmp_path))
    assert res.returncode == 2 and "give the note's text, a --tag, or both" in res.stderr


@pytest.mark.parametrize(
    "param,words",
    [
        ("iters=100000000", "sinkhorn's iters must be a whole number in [1, 500]"),  # once a hang
        ("iters=0.5", "sinkhorn's iters must be a whole number"),
        ("ab_alpha=nan", "alpha_beta's ab_alpha must be a number in [0, 2]"),
        ("eps=1e-300", "sinkhorn's eps must be a number in [0.001, 2]"),
    ],
)
def test_toy_loss_parameters_keep_the_registrys_ranges(param, words):
    res = cli("losses", "toy", "--param", param, "--only", "sinkhorn")
    assert res.returncode == 2 and words in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    "args,words",
    [
        (["data", "demo", "mcq", "--out", "/nonexistent-dir/sub/x.jsonl"], "No such file or directory"),
        (["data", "demo", "mcq", "--out", ""], "--out is empty"),
        (["runs", "list", "--root", ""], "--root is empty"),
        (["models", "inspect", "minilm", "--estimate-only", "--device", "banana"], "--device must be auto, cpu"),
    ],
)
def test_file_and_device_mistakes_are_a_sentence_without_a_class_name(args, words):
    res = cli(*args)
    assert res.returncode == 2 and words in res.stderr
    assert "Error" not in res.stderr.split(":", 1)[1][:25]  # "error: FileNotFoundError: ..." no more


def test_compare_refuses_a_run_against_itself(tmp_path):
    res = cli("runs", "compare", "x", "x", "--root", str(tmp_path))
    assert res.returncode == 2 and "compare two different runs or groups" in res.stderr


@pytest.mark.parametrize(
    "args",
    [["errors", "examples", "x", "--limit", "١٠"], ["losses", "toy", "--tau", "١"], ["losses", "toy", "--steps", "٥"]],
)
def test_numbers_on_the_command_line_are_ascii(args):
    """int() and float() also read other scripts' digits; an option takes what a config file takes."""
    res = cli(*args)
    assert res.returncode == 2 and "written in ASCII digits" in res.stderr
