"""The HTML report (self-contained, escaped, numbers equal to the workspace's), saved slices, and the CLI commands
`errors report|explain|save-slice|saved-slices`."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kd_analysis.error_analysis.explain import EXPLANATIONS
from kd_analysis.error_analysis.notes import NotesStore
from kd_analysis.error_analysis.report import MAX_PINS, report_html, write_report
from kd_analysis.error_analysis.slices import Slice, slice_metrics
from kd_analysis.error_analysis.workspace import matrix, pair_view
from kd_analysis.exceptions import KDLensError
from kd_analysis.fileio import append_jsonl
from kd_analysis.runs import RunStore
from tests.helpers.error_runs import EVIL, OTHER, RUN, explanation

ROOT = Path(__file__).resolve().parents[2]


def _plotly_free(text: str) -> str:
    """The report without its inlined plotly bundle (which quotes URLs in its own source)."""
    return re.sub(r"<script type=\"text/javascript\">.*?</script>", "<script/>", text, count=1, flags=re.S)


def test_report_is_self_contained_escaped_and_matches_the_workspace(error_store):
    store: RunStore = error_store
    notes = NotesStore.at(store.root)
    notes.add_note("demo:mcq", "ex-05", f"student confuses {EVIL}", author="<b>ada</b>")
    notes.add_tags("demo:mcq", "ex-05", ["<i>hard</i>"])
    notes.save_slice("demo:mcq", "long", "text_tokens >= 11")
    append_jsonl(store.root / RUN / EXPLANATIONS, explanation(RUN, "ex-05").to_dict())

    text, result = report_html(store, RUN, pins=["ex-05", "ex-06"])
    body = _plotly_free(text)
    assert EVIL not in text and "<b>ada</b>" not in text and "<i>hard</i>" not in text  # all escaped
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in body and "&lt;b&gt;ada&lt;/b&gt;" in body
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", body)  # nothing to fetch
    assert "<link" not in body and "@import" not in body and "url(" not in body
    assert text.count("Plotly.newPlot") >= 3  # matrix, slice gaps, choice probabilities
    # the numbers are the workspace's
    counts = matrix(store, RUN)
    assert (
        f"wrong on {counts['teacher_only']} examples the teacher gets right and right on "
        f"{counts['student_only']} it gets wrong"
    ) in body
    (m,) = slice_metrics(pair_view(store, RUN).frame, [Slice("long", "text_tokens >= 11")])
    t = m.roles["teacher"]
    assert f"{t.accuracy:.1%} ({t.correct}/{t.n};" in body and result.slices == ["long"]
    assert result.pinned == ["ex-05", "ex-06"] and result.explained == ["ex-05"]
    assert "gap +2.20 nats" in body  # the student falls furthest behind at the first answer token
    assert "Attributions not computed for this example" in body  # ex-06

    with pytest.raises(KDLensError, match="'nope' is not among the 12 examples"):
        report_html(store, RUN, pins=["nope"])
    with pytest.raises(KDLensError, match="at most"):
        report_html(store, RUN, pins=[f"ex-{i}" for i in range(MAX_PINS + 1)])


def test_write_report_replaces_atomically_and_refuses_a_folder(error_store, tmp_path):
    out = tmp_path / "r.html"
    out.write_text("old report")
    res = write_report(error_store, RUN, out, against=OTHER)
    assert out.read_text().startswith("<!DOCTYPE html>") and res.bytes == len(out.read_bytes())
    assert "fixed 6 examples" in out.read_text()
    with pytest.raises(KDLensError, match="is a folder"):
        write_report(error_store, RUN, tmp_path)
    assert not list(tmp_path.glob("*.tmp*"))


def test_saved_slices_are_checked_replaced_and_migrated(tmp_path):
    notes = NotesStore.at(tmp_path)
    notes.save_slice("d", "high KL", "kl > 1")
    notes.save_slice("d", "high KL", "kl > 2")  # the same name replaces
    assert notes.slices("d") == {"high KL": "kl > 2"} and notes.slices("other") == {}
    with pytest.raises(KDLensError, match="not allowed"):
        notes.save_slice("d", "bad", "__import__('os')")
    with pytest.raises(KDLensError, match="slice name"):
        notes.save_slice("d", "two\nlines", "kl > 1")
    assert notes.slices("d") == {"high KL": "kl > 2"}
    assert notes.delete_slice("d", "high KL") and not notes.delete_slice("d", "high KL")

    old = tmp_path / "old"  # a notes file from before saved slices (schema 1) keeps its notes and gains the table
    old.mkdir()
    con = sqlite3.connect(old / "notes.sqlite")
    con.executescript("""CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, data TEXT NOT NULL,
        example_id TEXT NOT NULL, author TEXT, text TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL);
        CREATE TABLE tags (data TEXT NOT NULL, example_id TEXT NOT NULL, tag TEXT NOT NULL, author TEXT,
        created TEXT NOT NULL, PRIMARY KEY (data, example_id, tag));
        INSERT INTO notes (data, example_id, author, text, created, updated) VALUES ('d', 'e1', NULL, 'kept', 't', 't');
        PRAGMA user_version = 1;""")
    con.close()
    migrated = NotesStore.at(old)
    assert [n.text for n in migrated.notes("d")] == ["kept"]
    migrated.save_slice("d", "s", "kl > 0")
    assert migrated.slices("d") == {"s": "kl > 0"}


def _cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kd_analysis", "errors", *args, "--root", str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_report_slices_and_explain(error_store, tmp_path):
    root = error_store.root
    out = tmp_path / "report.html"
    r = _cli("save-slice", RUN, "long", "--where", "text_tokens >= 11", root=root)
    assert r.returncode == 0 and "saved slice 'long'" in r.stdout
    r = _cli("save-slice", RUN, "long", "--where", "text_tokens >= 3", root=root)
    assert r.returncode == 2 and "pass --force to replace it" in r.stderr  # the saved one is kept
    r = _cli("save-slice", RUN, "bad", "--where", "kl >> 1", root=root)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    r = _cli("saved-slices", RUN, "--json", root=root)
    assert json.loads(r.stdout) == {"data": "demo:mcq", "slices": {"long": "text_tokens >= 11"}}
    r = _cli("report", RUN, "--out", str(out), "--pin", "ex-01", "--slice", "long", "--json", root=root)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["path"] == str(out) and info["pinned"] == ["ex-01"] and info["slices"] == ["long"]
    assert out.read_text().startswith("<!DOCTYPE html>")
    for bad, message in (
        (["report", RUN, "--out", str(out)], "already exists: pass --force"),
        (["report", RUN, "--out", str(out), "--force", "--slice", "nope"], "no saved slice 'nope'"),
        (["report", "no-such-run", "--out", str(out), "--force"], "no run"),
        (["report", "test-no-records", "--out", str(out), "--force"], "no per-example records"),
        (["explain", RUN, "ex-01"], "the config needs a teacher"),
    ):
        r = _cli(*bad, root=root)
        assert r.returncode == 2 and re.search(message, r.stderr), (bad, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = _cli("saved-slices", RUN, "--delete", "long", root=root)
    assert r.returncode == 0 and r.stdout.strip() == "no saved slices"
    r = _cli("slices", RUN, "--min-n", "2", root=root)  # the text form, not only --json
    assert r.returncode == 0 and "adjusted p" in r.stdout


def test_rationale_and_priming_jobs_join_onto_the_frame_and_the_slice_finder(error_store):
    from kd_analysis.error_analysis.slices import find_slices

    store: RunStore = error_store
    job = store.create("rationales", {"data": "demo:mcq", "method": "saliency", "k": 1}, run_id="rat", state="finished")
    with open(job.path / "attributions.jsonl", "w", encoding="utf-8") as fh:
        for i in range(12):
            gold = ["apple", "chair", "river", "piano"][i % 4]
            top = gold if i < 8 else "banana"  # the top word is the answer on ex-00..07, not on ex-08..11
            words = [
                {"text": top, "score": 0.9, "segment": "question", "index": 0},
                {"text": gold if top != gold else "other", "score": 0.1, "segment": "choice A", "index": 1},
            ]
            fh.write(
                json.dumps(
                    {
                        "role": "teacher",
                        "example_id": f"ex-{i:02d}",
                        "method": "saliency",
                        "target": "predicted",
                        "words": words,
                        "tokens": [],
                        "target_label": gold,
                        "predicted_label": gold,
                        "gold_label": gold,
                        "correct": True,
                    }
                )
                + "\n"
            )
            fh.write(json.dumps({"role": "student", "example_id": f"ex-{i:02d}", "bogus": 1}) + "\n")
    outputs = store.create("teacher_outputs", {"data": "demo:mcq"}, run_id="out", state="finished")
    with open(outputs.path / "outputs.jsonl", "w", encoding="utf-8") as fh:
        for i in range(6):
            fh.write(
                json.dumps(
                    {
                        "example_id": f"ex-{i:02d}",
                        "strategy": "chain of thought",
                        "correct": i < 3,
                        "answer_logprob_per_token": -0.5 * i,
                    }
                )
                + "\n"
            )
    store.create("rationales", {"data": "other:data"}, run_id="rat-other", state="finished")

    view = pair_view(store, RUN)
    assert view.sources == ("rationales job rat (saliency, k = 1)", "teacher-outputs job out")
    frame = view.frame.set_index("example_id")
    assert frame.loc["ex-00", "rationale_overlap"] == 1 and frame.loc["ex-09", "rationale_overlap"] == 0
    assert frame.loc["ex-01", "primed_chain_of_thought_correct"] == True  # noqa: E712 - a value, maybe a numpy bool
    assert pd.isna(frame.loc["ex-07", "primed_chain_of_thought_correct"])  # the job did not cover it: missing
    assert len(view.frame) == 12 and view.features == ("primed_chain_of_thought_correct",)
    names = {f.name for f in find_slices(view.frame, columns=list(view.features), min_n=3)}
    assert "rationale overlap: yes" in names and any(n.startswith("primed_") for n in names)


def test_a_pinned_example_shows_choice_text_not_indices(tmp_path):
    """A frame hands out numpy integers: the report showed "Gold answer: 3" instead of "3: sour"."""
    import shutil
    from pathlib import Path

    import numpy as np

    from kd_analysis.error_analysis.frames import answer_label
    from kd_analysis.error_analysis.report import write_report
    from kd_analysis.runs import RunStore

    assert answer_label(np.int64(3), ["a", "b", "c", "sour"]) == "3: sour"
    assert answer_label(np.bool_(True), ["a", "b"]) == "True"  # a bool is never a choice index

    root = Path(__file__).resolve().parents[2] / "cached_runs"
    shutil.copytree(
        root / "reference-minilm-2l-kl",
        tmp_path / "reference-minilm-2l-kl",
        ignore=shutil.ignore_patterns("checkpoint"),
    )
    out = tmp_path / "r.html"
    write_report(RunStore(tmp_path), "reference-minilm-2l-kl", out, pins=["ant-112"])
    assert "Gold answer: <b>3: sour</b>" in out.read_text(encoding="utf-8")
