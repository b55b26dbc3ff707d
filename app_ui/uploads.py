"""Store uploaded data files on disk (never overwriting a different file of the same name)."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from kd_analysis.models.builtins import cache_root


def save_upload(name: str, data: bytes) -> Path:
    folder = cache_root() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name) or "upload.csv"
    target = folder / safe
    if target.exists() and target.read_bytes() != data:
        digest = hashlib.sha256(data).hexdigest()[:8]
        target = folder / f"{target.stem}-{digest}{target.suffix}"
    if not target.exists():
        target.write_bytes(data)
    return target
