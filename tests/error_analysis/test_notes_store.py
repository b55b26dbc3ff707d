"""Notes and tags per example (kd_analysis.error_analysis.notes): CRUD, validation, export/import merging, and that
concurrent writers (threads and processes) and readers never lose or half-see a write."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kd_analysis.error_analysis.notes import MAX_TAG, MAX_TEXT, SCHEMA_VERSION, NotesStore
from kd_analysis.exceptions import KDLensError
from tests.helpers.notes import run_threads, write_many

PER_WRITER = 200
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path) -> NotesStore:
    return NotesStore(tmp_path / "notes.sqlite")


def _same(notes) -> list[tuple]:
    """Notes without their local ids, which differ between stores."""
    return sorted((n.data, n.example_id, n.author, n.text, n.created, n.updated) for n in notes)


# --- CRUD --------------------------------------------------------------------------------------------------------


def test_default_path_is_under_the_run_store(run_root):
    assert NotesStore.at().path == run_root / "notes.sqlite"
    assert NotesStore.at(run_root / "x").path == run_root / "x" / "notes.sqlite"


def test_note_crud(store):
    a = store.add_note("boolq", "ex1", "teacher right, student copies the negation", author="ann")
    b = store.add_note("boolq", "ex2", "label looks wrong")
    c = store.add_note("arc", "ex1", "same id, other data set")
    assert a.author == "ann" and b.author is None and a.created == a.updated and a.created.endswith("+00:00")
    assert [n.id for n in store.notes()] == [a.id, b.id, c.id]
    assert store.notes("boolq") == [a, b]
    assert store.notes("boolq", "ex1") == [a]
    assert store.notes(example_id="ex1") == [a, c]

    edited = store.edit_note(a.id, "student ignores the negation")
    assert edited.text == "student ignores the negation" and edited.created == a.created
    assert edited.updated > a.updated
    assert store.notes("boolq", "ex1") == [edited]

    assert store.delete_note(b.id) is True
    assert store.delete_note(b.id) is False
    assert store.notes("boolq") == [edited]
    with pytest.raises(KDLensError, match="no note"):
        store.edit_note(b.id, "gone")
    assert store.add_note("boolq", 7, "int ids are taken as text").example_id == "7"


def test_tags_are_unique_per_example(store):
    assert store.add_tags("boolq", "ex1", ["negation", "label-noise", "negation"], author="ann") == [
        "negation",
        "label-noise",
    ]
    assert store.add_tags("boolq", "ex1", [" negation ", "long-context"]) == ["long-context"]
    assert store.add_tags("boolq", "ex2", "negation") == ["negation"]  # one string is one tag, not letters
    store.add_tags("arc", "ex1", ["negation"])
    assert store.tags("boolq") == {"ex1": ["label-noise", "long-context", "negation"], "ex2": ["negation"]}
    assert store.tags("boolq", "ex2") == {"ex2": ["negation"]}
    assert store.tags("boolq", "nothing") == {}
    assert store.examples_with_tag("boolq", "negation") == ["ex1", "ex2"]
    assert store.examples_with_tag("arc", "negation") == ["ex1"]

    assert store.remove_tag("boolq", "ex1", "negation") is True
    assert store.remove_tag("boolq", "ex1", "negation") is False
    assert store.examples_with_tag("boolq", "negation") == ["ex2"]
    with sqlite3.connect(store.path) as con:
        assert con.execute("SELECT COUNT(*) FROM tags").fetchone()[0] == 4


def test_database_is_wal_with_a_schema_version(store):
    store.notes()  # first use creates the file
    con = sqlite3.connect(store.path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        con.close()
    own = store._open()
    try:
        assert own.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    finally:
        own.close()


def test_newer_or_damaged_database_is_refused_in_one_line(tmp_path):
    newer = tmp_path / "newer.sqlite"
    NotesStore(newer).notes()
    with sqlite3.connect(newer) as con:
        con.execute("PRAGMA user_version = 99")
    with pytest.raises(KDLensError, match="newer kd-lens"):
        NotesStore(newer).notes()

    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"this is not a database" * 100)
    with pytest.raises(KDLensError, match="cannot be used") as err:
        NotesStore(damaged).add_note("d", "e", "x")
    assert "\n" not in str(err.value)


# --- validation --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda s: s.add_note("boolq", "", "x"), "example id is empty"),
        (lambda s: s.add_note("boolq", "   ", "x"), "example id is empty"),
        (lambda s: s.add_note("", "ex", "x"), "data set name is empty"),
        (lambda s: s.add_note("boolq", "ex", ""), "note text is empty"),
        (lambda s: s.add_note("boolq", "ex", "x" * (MAX_TEXT + 1)), "at most 20,000"),
        (lambda s: s.add_note("boolq", "ex", "x", author="a\nb"), "line break"),
        (lambda s: s.add_note("boolq", None, "x"), "must be text"),
        (lambda s: s.add_tags("boolq", "ex", ["fine", "two\nlines"]), "line break"),
        (lambda s: s.add_tags("boolq", "ex", ["t" * (MAX_TAG + 1)]), "longer than 64"),
        (lambda s: s.add_tags("boolq", "ex", ["  "]), "tag is empty"),
        (lambda s: s.add_tags("boolq", "", ["x"]), "example id is empty"),
        (lambda s: s.edit_note(1, "y" * (MAX_TEXT + 1)), "at most 20,000"),
        (lambda s: s.edit_note("1", "y"), "whole number"),
    ],
)
def test_bad_input_is_one_plain_sentence(store, call, words):
    with pytest.raises(KDLensError, match=words) as err:
        call(store)
    message = str(err.value)
    assert "\n" not in message and message.endswith(".") and len(message) < 200
    assert store.notes() == [] and store.tags("boolq") == {}  # nothing half-written


def test_limits_themselves_are_allowed(store):
    store.add_note("boolq", "ex", "x" * MAX_TEXT)
    assert store.add_tags("boolq", "ex", ["t" * MAX_TAG]) == ["t" * MAX_TAG]


# --- export and import -------------------------------------------------------------------------------------------


def _fill(store: NotesStore) -> None:
    store.add_note("boolq", "ex1", "negation flipped", author="ann")
    store.add_note("boolq", "ex1", "second thought: label noise", author="bob")
    store.add_note("arc", "q9", "unicode ✓ and\nline breaks")
    store.add_tags("boolq", "ex1", ["negation", "label-noise"], author="ann")
    store.add_tags("arc", "q9", ["multi-step"])


def test_export_import_round_trip_and_twice_adds_nothing(store, tmp_path):
    _fill(store)
    out = tmp_path / "export.jsonl"
    assert store.export_jsonl(out) == 6
    fresh = NotesStore(tmp_path / "fresh" / "notes.sqlite")
    first = fresh.import_jsonl(out)
    assert (first.notes_added, first.tags_added, first.skipped, first.bad_lines) == (3, 3, 0, [])
    assert _same(fresh.notes()) == _same(store.notes())
    assert fresh.tags("boolq") == store.tags("boolq") and fresh.tags("arc") == store.tags("arc")

    again = fresh.import_jsonl(out)
    assert (again.added, again.notes_skipped, again.tags_skipped) == (0, 3, 3)
    assert len(fresh.notes()) == 3
    assert "0 notes and 0 tags added" in again.summary()

    # a colleague's store: their own note and tag merge in, shared ones do not double
    colleague = NotesStore(tmp_path / "colleague.sqlite")
    colleague.import_jsonl(out)
    colleague.add_note("boolq", "ex2", "new from colleague", author="cy")
    colleague.add_tags("boolq", "ex1", ["negation", "attention-sink"])
    buf = io.StringIO()
    assert colleague.export_jsonl(buf, data="boolq") == 3 + 3  # boolq only: 3 notes, 3 tags
    back = tmp_path / "colleague.jsonl"
    back.write_text(buf.getvalue(), encoding="utf-8")
    merged = store.import_jsonl(back)
    assert (merged.notes_added, merged.notes_skipped, merged.tags_added, merged.tags_skipped) == (1, 2, 1, 2)
    assert store.tags("boolq")["ex1"] == ["attention-sink", "label-noise", "negation"]

    binary = io.BytesIO()
    assert store.export_jsonl(binary, data="arc") == 2
    assert json.loads(binary.getvalue().decode().splitlines()[1])["text"] == "unicode ✓ and\nline breaks"


def test_author_default_fills_records_without_an_author(store, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(
        json.dumps(
            {"kind": "note", "data": "d", "example_id": "e", "text": "t", "created": "2024-01-01T00:00:00+00:00"}
        )
        + "\n",
        encoding="utf-8",
    )
    assert store.import_jsonl(path, author_default="dana").notes_added == 1
    assert store.notes()[0].author == "dana"
    assert store.import_jsonl(path, author_default="dana").notes_skipped == 1


def test_bad_lines_are_counted_not_fatal(store, tmp_path):
    good_note = {
        "kind": "note",
        "data": "d",
        "example_id": "e1",
        "author": "a",
        "text": "ok",
        "created": "2024-05-01T10:00:00+00:00",
        "updated": "2024-05-02T10:00:00+00:00",
    }
    lines = [
        json.dumps({"kind": "kd-lens-notes", "schema": 1}),  # 1: header, skipped silently
        json.dumps(good_note),  # 2
        "{not json",  # 3
        json.dumps([1, 2]),  # 4: not an object
        json.dumps({**good_note, "text": ""}),  # 5: empty text
        "",  # 6: blank, ignored
        json.dumps({"kind": "comment"}),  # 7: unknown kind
        json.dumps({"kind": "tag", "data": "d", "example_id": "e1", "tag": "x" * 65}),  # 8: long tag
        json.dumps({**good_note, "created": "yesterday"}),  # 9: bad time
        json.dumps({"kind": "tag", "data": "d", "example_id": "e1", "tag": "fine"}),  # 10
        json.dumps({**good_note, "example_id": ""}),  # 11: empty id
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe broken bytes\n")  # 12: not UTF-8
    result = store.import_jsonl(path)
    assert (result.notes_added, result.tags_added) == (1, 1)
    assert [n for n, _ in result.bad_lines] == [3, 4, 5, 7, 8, 9, 11, 12]
    assert all("\n" not in why for _, why in result.bad_lines)
    assert "8 bad lines (first: line 3" in result.summary()
    assert store.notes()[0].updated == "2024-05-02T10:00:00+00:00"


def test_a_file_that_is_not_jsonl_is_refused(store, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("just some notes\nnot json at all\n", encoding="utf-8")
    with pytest.raises(KDLensError, match="not JSON lines"):
        store.import_jsonl(text)
    with pytest.raises(KDLensError, match="does not exist"):
        store.import_jsonl(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    assert store.import_jsonl(empty).added == 0


# --- concurrency -------------------------------------------------------------------------------------------------


def test_processes_and_threads_writing_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "shared" / "notes.sqlite")  # not created yet: the writers race to create it
    # fresh interpreters (a spawn, not a fork): nothing shared with this process but the file
    child = (
        "import sys; sys.path.insert(0, sys.argv[1]); from tests.helpers.notes import writer_process; "
        "writer_process(sys.argv[2], sys.argv[3], 2, int(sys.argv[4]))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", child, str(ROOT), path, f"p{k}", str(PER_WRITER)], stderr=subprocess.PIPE, text=True
        )
        for k in range(2)
    ]
    errors = run_threads([lambda t=t: write_many(path, f"main{t}", PER_WRITER) for t in range(2)])
    outcomes = [(p.wait(timeout=120), p.stderr.read()[-2000:]) for p in procs]
    assert errors == [] and outcomes == [(0, ""), (0, "")]

    writers = [f"p{k}t{t}" for k in range(2) for t in range(2)] + ["main0", "main1"]
    store = NotesStore(path)
    notes = store.notes("conc")
    assert len(notes) == len(writers) * PER_WRITER
    assert {(n.author, n.example_id) for n in notes} == {(w, f"{w}-{i}") for w in writers for i in range(PER_WRITER)}
    tags = store.tags("conc")
    assert len(tags) == len(writers) * PER_WRITER
    assert all(tags[f"{w}-{i}"] == sorted(["shared", f"by-{w}"]) for w in writers for i in range(PER_WRITER))
    assert len(store.examples_with_tag("conc", "shared")) == len(writers) * PER_WRITER


def test_a_reader_during_writes_sees_whole_writes_only(tmp_path):
    store = NotesStore(tmp_path / "notes.sqlite")
    batches, per_batch = 15, 8
    files = []
    for b in range(batches):  # each import adds a note and two tags to each of its examples, in one transaction
        rows = []
        for e in range(per_batch):
            ex = f"b{b}e{e}"
            rows.append(
                {
                    "kind": "note",
                    "data": "r",
                    "example_id": ex,
                    "text": "t",
                    "created": f"2024-01-01T00:00:{b:02d}+00:00",
                }
            )
            rows += [{"kind": "tag", "data": "r", "example_id": ex, "tag": tag} for tag in ("x", "y")]
        files.append(tmp_path / f"batch{b}.jsonl")
        files[-1].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    done = threading.Event()
    seen: list[int] = []

    def write() -> None:
        try:
            for f in files:
                store.import_jsonl(f)
                store.add_tags("r", f"solo{f.stem}", ["a", "b", "c", "d"])
        finally:
            done.set()

    def check() -> None:
        buf = io.StringIO()
        store.export_jsonl(buf, data="r")
        records = [json.loads(line) for line in buf.getvalue().splitlines()[1:]]
        noted = {r["example_id"] for r in records if r["kind"] == "note"}
        tagged: dict[str, set[str]] = {}
        for r in records:
            if r["kind"] == "tag":
                tagged.setdefault(r["example_id"], set()).add(r["tag"])
        assert len(noted) % per_batch == 0  # whole imports only
        assert all(tagged.get(ex) == {"x", "y"} for ex in noted)
        assert all(
            tags == ({"a", "b", "c", "d"} if ex.startswith("solo") else {"x", "y"}) for ex, tags in tagged.items()
        )
        assert all(ex in noted for ex in tagged if not ex.startswith("solo"))
        assert all(len(t) == 4 for t in store.tags("r").values() if len(t) != 2)
        seen.append(len(noted))

    def read() -> None:
        while not done.is_set():
            check()
        check()  # once more after the last write: everything is there

    errors = run_threads([write, read])
    assert errors == []
    assert seen == sorted(seen) and seen[-1] == batches * per_batch
    assert len(store.notes("r")) == batches * per_batch
