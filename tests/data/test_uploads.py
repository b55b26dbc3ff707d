"""Uploaded data files: streamed in chunks, stored once per content, listed and removed (library and page)."""

from __future__ import annotations

import io

import pytest
from streamlit.testing.v1 import AppTest

from kd_analysis.data.uploads import (
    CHUNK,
    format_bytes,
    is_upload,
    list_uploads,
    remove_uploads,
    store_upload,
    total_size,
    uploads_root,
)
from kd_analysis.exceptions import DataError

CSV = b"sentence,label\ngood film,1\nbad film,0\n"


class RecordingFile:
    """A file-like upload that records every read size and refuses whole-file reads."""

    def __init__(self, data: bytes, name: str = "data.csv") -> None:
        self._buf = io.BytesIO(data)
        self.name = name
        self.sizes: list = []

    def read(self, size=None):
        self.sizes.append(size)
        if size is None or size < 0:
            raise AssertionError("read() without a size loads the whole upload into memory")
        return self._buf.read(size)

    def seek(self, pos, whence=0):
        return self._buf.seek(pos, whence)

    def getvalue(self):
        raise AssertionError("getvalue() copies the whole upload")


def test_streams_in_bounded_chunks(tmp_path):
    data = bytes(range(256)) * (3 * CHUNK // 256 + 7)  # a bit over 3 MiB
    f = RecordingFile(data)
    path = store_upload("big.csv", f, root=tmp_path)
    assert path.read_bytes() == data and path.suffix == ".csv"
    assert len(f.sizes) >= 4 and all(isinstance(s, int) and 0 < s <= CHUNK for s in f.sizes)
    assert not list(tmp_path.rglob("*.part"))  # no temp file left behind


def test_same_content_twice_is_one_file(tmp_path):
    a = store_upload("train.csv", io.BytesIO(CSV), root=tmp_path)
    b = store_upload("train.csv", io.BytesIO(CSV), root=tmp_path)
    assert a == b and len(list_uploads(tmp_path)) == 1
    # the same bytes under another name: the user's name is kept, the content is stored once
    c = store_upload("copy.csv", io.BytesIO(CSV), root=tmp_path)
    assert c.name == "copy.csv" and c.read_bytes() == CSV and c.parent == a.parent
    assert total_size(list_uploads(tmp_path)) == len(CSV)


def test_different_content_same_name_is_two_files(tmp_path):
    a = store_upload("train.csv", io.BytesIO(CSV), root=tmp_path)
    b = store_upload("train.csv", io.BytesIO(CSV + b"ok film,1\n"), root=tmp_path)
    assert a != b and a.name == b.name == "train.csv"
    assert a.read_bytes() == CSV and b.read_bytes() == CSV + b"ok film,1\n"  # nothing overwritten
    assert len(list_uploads(tmp_path)) == 2


def test_unsafe_names_stay_inside_the_store(tmp_path):
    p = store_upload("../../etc/pass wd.tsv", io.BytesIO(b"a\tb\n"), root=tmp_path)
    assert tmp_path in p.parents and p.name == "pass_wd.tsv" and is_upload(p, root=tmp_path)
    assert store_upload(".hidden", io.BytesIO(b"x"), root=tmp_path).name == "hidden"


def test_remove_lists_and_deletes_keeping_the_one_in_use(tmp_path):
    a = store_upload("a.csv", io.BytesIO(CSV), root=tmp_path)
    b = store_upload("b.jsonl", io.BytesIO(b'{"text": "x", "label": 1}\n'), root=tmp_path)
    legacy = tmp_path / "old.csv"  # the flat layout of earlier versions is listed (and removable) too
    legacy.write_bytes(CSV)
    listed = list_uploads(tmp_path)
    assert {u.path for u in listed} == {a, b, legacy}
    result = remove_uploads(keep=[str(b)], root=tmp_path)
    assert {u.path for u in result.removed} == {a, legacy} and [u.path for u in result.kept] == [b]
    assert result.freed_bytes == 2 * len(CSV) and not result.failed
    assert not a.exists() and not legacy.exists() and b.exists()
    assert not a.parent.exists()  # its emptied folder went too
    assert remove_uploads(root=tmp_path).removed[0].path == b and list_uploads(tmp_path) == []


def test_store_uses_the_cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_LENS_CACHE", str(tmp_path))
    assert uploads_root() == tmp_path / "uploads"
    p = store_upload("x.csv", io.BytesIO(CSV))
    assert p.parent.parent == tmp_path / "uploads" and format_bytes(len(CSV)) == f"{len(CSV)} bytes"
    assert format_bytes(195 * 2**20) == "195.0 MB"


def test_app_save_upload_streams_the_uploaded_file(tmp_path, monkeypatch):
    from app_ui.uploads import save_upload

    monkeypatch.setenv("KD_LENS_CACHE", str(tmp_path))
    f = RecordingFile(CSV, name="movie reviews.csv")
    f.file_id = "abc"
    path = save_upload(f)
    assert path.read_bytes() == CSV and path.name == "movie_reviews.csv"
    assert all(isinstance(s, int) and s > 0 for s in f.sizes)
    assert save_upload("legacy.csv", CSV).read_bytes() == CSV  # the old (name, bytes) call still works


# --- page -------------------------------------------------------------------------------------------------------
@pytest.fixture
def upload_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_LENS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _removal_caption(at):
    return next((c.value for c in at.caption if "uploaded in this session" in c.value), None)


MINE, THEIRS = "a" * 16, "b" * 16  # two browser sessions' upload owners


def _open_as(owner: str, path: str) -> AppTest:
    """The page as the browser session whose upload owner is `owner`."""
    from tests.helpers.pages import HOME, TIMEOUT

    at = AppTest.from_file(HOME, default_timeout=TIMEOUT)
    at.session_state["_kd_upload_owner"] = owner
    at.run()
    at.switch_page(path).run()
    return at


REMOVE = "Remove this session's uploaded files"


def test_page_removes_this_sessions_uploads_and_never_another_sessions(upload_cache):
    from tests.helpers.pages import MODELS

    store_upload("a.csv", io.BytesIO(CSV), owner=MINE)
    store_upload("b.csv", io.BytesIO(CSV + b"ok film,1\n"), owner=MINE)
    theirs = store_upload("a.csv", io.BytesIO(CSV), owner=THEIRS)  # the same file, uploaded by someone else
    at = _open_as(MINE, MODELS)
    assert not at.exception
    assert _removal_caption(at).startswith("2 files uploaded in this session")
    next(b for b in at.button if b.label == REMOVE).click().run()
    assert not at.exception
    assert any(s.value.startswith("Removed 2 uploaded files") for s in at.success)
    assert list_uploads(owner=MINE) == [] and theirs.exists() and theirs.read_bytes() == CSV
    assert not any(b.label == REMOVE for b in at.button)
    assert any("This session has stored no uploaded files" in c.value for c in at.caption)


def test_page_keeps_the_upload_in_use(upload_cache):
    from tests.helpers.pages import MODELS

    in_use = store_upload("reviews.csv", io.BytesIO(CSV), owner=MINE)
    other = store_upload("other.csv", io.BytesIO(CSV + b"ok film,1\n"), owner=MINE)
    at = _open_as(MINE, MODELS)
    at.radio[2].set_value("Path on this machine").run()
    next(t for t in at.text_input if t.label == "File path").set_value(str(in_use)).run()
    next(b for b in at.button if b.label == "Use this data set").click().run()
    assert at.sidebar.selectbox(key="w_data_source").value == str(in_use)
    assert "will be kept" in _removal_caption(at)
    next(b for b in at.button if b.label == REMOVE).click().run()
    assert not at.exception
    message = next(s.value for s in at.success if s.value.startswith("Removed 1 uploaded file"))
    assert "Kept reviews" in message and "current data set" in message
    assert in_use.exists() and not other.exists()
    assert at.sidebar.selectbox(key="w_data_source").value == str(in_use)
    assert not at.error  # the data set in use still loads


def test_page_keeps_an_upload_a_run_trained_on(upload_cache, tmp_path, monkeypatch):
    from kd_analysis.runs import RunStore, uploads_used_by_runs
    from tests.helpers.pages import MODELS

    trained_on = store_upload("train.csv", io.BytesIO(CSV), owner=MINE)
    spare = store_upload("spare.csv", io.BytesIO(CSV + b"ok film,1\n"), owner=MINE)
    store = RunStore(tmp_path / "runs")
    store.create("train", {"name": "on my upload", "data": str(trained_on)}, run_id="r1")
    monkeypatch.setenv("KD_LENS_RUNS", str(store.root))
    assert uploads_used_by_runs(store) == {str(trained_on): "r1"}
    at = _open_as(MINE, MODELS)
    next(b for b in at.button if b.label == REMOVE).click().run()
    assert not at.exception
    message = next(s.value for s in at.success if s.value.startswith("Removed 1 uploaded file"))
    assert "run r1 trained on it" in message and "Kept train" in message
    assert trained_on.exists() and not spare.exists()


def test_an_upload_owner_is_a_token_never_a_path(tmp_path):
    with pytest.raises(DataError, match="hex token"):
        store_upload("x.csv", io.BytesIO(CSV), root=tmp_path, owner="../../etc")


def test_uploads_of_ended_sessions_are_pruned_but_live_sessions_and_runs_data_stay(tmp_path):
    """A reload starts a new browser session, so an old session's uploads can no longer be listed or removed from
    the page: a week after that session's last page view they go, except the files runs trained on."""
    import os
    import time

    from kd_analysis.data.uploads import ENDED_AFTER_S, prune_ended_sessions, touch_owner

    ended, live, runs_data = "c" * 16, "d" * 16, "e" * 16
    gone = store_upload("old.csv", io.BytesIO(CSV), root=tmp_path, owner=ended)
    alive = store_upload("old.csv", io.BytesIO(CSV), root=tmp_path, owner=live)
    trained_on = store_upload("train.csv", io.BytesIO(CSV + b"ok film,1\n"), root=tmp_path, owner=runs_data)
    ownerless = store_upload("cli.csv", io.BytesIO(b"text,label\nx,1\n"), root=tmp_path)
    week_ago = time.time() - ENDED_AFTER_S - 60
    for p in tmp_path.rglob("*"):
        os.utime(p, (week_ago, week_ago))
    touch_owner(live, root=tmp_path)  # that session viewed a page just now
    result = prune_ended_sessions(keep=[str(trained_on)], root=tmp_path)
    assert {u.path for u in result.removed} == {gone} and [u.path for u in result.kept] == [trained_on]
    assert not gone.exists() and not gone.parent.parent.exists()  # the ended session's folder is gone too
    assert alive.exists() and trained_on.exists() and ownerless.exists()
    again = prune_ended_sessions(keep=[str(trained_on)], root=tmp_path, now=time.time() + ENDED_AFTER_S / 2)
    assert again.removed == [] and alive.exists()  # the live session has a week from its last page view
