"""Where kd-lens keeps files: the cache it makes for itself (dequantised models, uploads, teacher outputs), the
user's own runs, and the reference runs it ships. A foundation module, so data, models and methods can all find
them.

- cache: `$KD_LENS_CACHE`, else ~/.cache/kd-lens;
- the user's runs: `$KD_LENS_RUNS`, else a per-user data folder (`$XDG_DATA_HOME/kd-lens/runs`, on Windows
  `%LOCALAPPDATA%\\kd-lens\\runs`, on macOS `~/Library/Application Support/kd-lens/runs`);
- the shipped reference runs: `$KD_LENS_REFERENCE_RUNS` (empty: none), else the top-level `cached_runs/` of the
  checkout this code runs from (or of the copy `pip install .` puts in `<prefix>/share/kd-lens`). The app reads
  them and never writes there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SHIPPED = "cached_runs"  # the reference runs' folder at the top of the repository, as configs name it
_CHECKOUT = Path(__file__).resolve().parent.parent  # kd_analysis/ sits at the checkout's top level


def cache_root() -> Path:
    return Path(os.environ.get("KD_LENS_CACHE", Path.home() / ".cache" / "kd-lens"))


def user_data_root() -> Path:
    """The per-user folder kd-lens keeps its data in (the user's runs, notes)."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "kd-lens"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "kd-lens"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "kd-lens"


def app_root() -> Path | None:
    """The folder that holds the app (app.py, pages/) and the shipped runs: the checkout this code runs from, else
    the copy a plain `pip install .` puts under `<prefix>/share/kd-lens`; None when neither is there."""
    if (_CHECKOUT / "app.py").is_file() and (_CHECKOUT / "pages").is_dir():
        return _CHECKOUT
    import site
    import sysconfig

    for prefix in (sysconfig.get_path("data"), site.USER_BASE):
        folder = Path(prefix or "") / "share" / "kd-lens"
        if prefix and (folder / "app.py").is_file():
            return folder
    return None


def shipped_runs() -> Path | None:
    """The reference runs kd-lens ships, or None (`$KD_LENS_REFERENCE_RUNS` empty, or none beside the code).
    `$KD_LENS_REFERENCE_RUNS` names another folder."""
    if "KD_LENS_REFERENCE_RUNS" in os.environ:
        named = os.environ["KD_LENS_REFERENCE_RUNS"].strip()
        return Path(named) if named else None
    root = app_root()
    folder = root / SHIPPED if root is not None else None
    return folder if folder is not None and folder.is_dir() else None


def shipped_path(source: str) -> Path | None:
    """A path written as the shipped configs write it, `cached_runs/<run>/checkpoint`, where it really is when the
    working folder is not the checkout (the app started from elsewhere); None for any other path."""
    parts = Path(source).parts
    root = shipped_runs()
    if len(parts) < 2 or parts[0] != SHIPPED or root is None or Path(source).exists():
        return None
    return root.joinpath(*parts[1:])


def local_folder(source: str) -> Path:
    """A model source as a folder on this machine: a shipped reference teacher wherever kd-lens started from, any
    other path as written (with ~ expanded)."""
    return shipped_path(source) or Path(source).expanduser()
