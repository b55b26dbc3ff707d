"""Store uploaded data files on disk: a thin layer over kd_analysis.data.uploads (which holds the storage logic).

Each upload is streamed once per session (keyed by Streamlit's file id), not re-hashed on every rerun, into this
browser session's own part of the store (`session_owner`), so removing uploads here never touches another's.
"""

from __future__ import annotations

import io
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import streamlit as st

from kd_analysis.data.uploads import store_upload, touch_owner
from kd_analysis.threads import start_thread

_SEEN = "_kd_upload_paths"
_OWNER = "_kd_upload_owner"


def session_owner() -> str:
    """This browser session's upload owner: a random token made once per session."""
    return st.session_state.setdefault(_OWNER, secrets.token_hex(8))


def keep_session_alive() -> None:
    """Every page view: this session's uploads are in use, so the daily pruning of ended sessions keeps them."""
    if _OWNER in st.session_state:  # a session that never uploaded has no folder to keep
        touch_owner(st.session_state[_OWNER])


_PRUNE_EVERY_S = 24 * 3600
_pruned_at = [0.0]  # per server process: when the last pruning started
_prune_lock = threading.Lock()


def prune_ended_sessions_daily() -> None:
    """At most once a day per server, in a background thread (it reads every run's config): remove the uploads of
    browser sessions idle for a week (a reload starts a new session, so nobody can list them any more), keeping
    every file a run trained on."""
    with _prune_lock:
        if time.time() - _pruned_at[0] < _PRUNE_EVERY_S:
            return
        _pruned_at[0] = time.time()

    def work() -> None:
        from kd_analysis.data.uploads import prune_ended_sessions
        from kd_analysis.runs import RunStore, uploads_used_by_runs

        try:
            prune_ended_sessions(keep=uploads_used_by_runs(RunStore()))
        except Exception:  # housekeeping must never break a page; tomorrow tries again
            pass

    start_thread(work, "kd-lens-upload-prune")


def save_upload(upload: Any, data: bytes | None = None) -> Path:
    """Store a Streamlit UploadedFile (read in chunks, never whole); `save_upload(name, data)` still works."""
    if isinstance(upload, str):
        return store_upload(upload, io.BytesIO(data or b""), owner=session_owner())
    key = getattr(upload, "file_id", None) or f"{upload.name}:{getattr(upload, 'size', '')}"
    seen = st.session_state.setdefault(_SEEN, {})
    path = seen.get(key)
    if path is None or not Path(path).exists():
        path = store_upload(upload.name, upload, owner=session_owner())
        seen[key] = path
    return Path(path)


def forget_uploads() -> None:
    """After the store was emptied: store the next upload again instead of trusting the remembered paths."""
    st.session_state.pop(_SEEN, None)
