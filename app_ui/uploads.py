"""Store uploaded data files on disk: a thin layer over kd_analysis.data.uploads (which holds the storage logic).

Each upload is streamed once per session (keyed by Streamlit's file id), not re-hashed on every rerun, into this
browser session's own part of the store (`session_owner`), so removing uploads here never touches another's.
"""

from __future__ import annotations

import io
import secrets
from pathlib import Path
from typing import Any

import streamlit as st

from kd_analysis.data.uploads import store_upload

_SEEN = "_kd_upload_paths"
_OWNER = "_kd_upload_owner"


def session_owner() -> str:
    """This browser session's upload owner: a random token made once per session."""
    return st.session_state.setdefault(_OWNER, secrets.token_hex(8))


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
