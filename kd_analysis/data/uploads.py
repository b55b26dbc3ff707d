"""Uploaded data files on disk: streamed in chunks, content-addressed, listable and removable.

Layout: `<cache>/uploads/session-<owner>/<sha256[:16]>/<safe original name>`, the owner being the browser session
that uploaded it (the library and tests may store without one, directly under `<cache>/uploads/`). Within an owner the same content is stored once (a second
name for it is a hard link where the file system allows); a different file never overwrites another; the original
suffix is kept so the loaders recognise the format. Removing uploads only ever touches one owner's folder, and
keeps what the caller names (the data set in use, the files runs trained on).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kd_analysis.exceptions import DataError

CHUNK = 1 << 20  # 1 MiB: never the whole upload in one read
_TMP_PREFIX = ".upload-"
_STALE_S = 3600  # a temp file this old is left over from a failed upload


def uploads_root() -> Path:
    from kd_analysis.locations import cache_root

    return cache_root() / "uploads"


_OWNER = re.compile(r"^[0-9a-f]{16,64}$")
_SESSION = "session-"


def owner_folder(root: Path, owner: str | None) -> Path:
    """Where `owner`'s uploads live (the store itself without an owner); an owner is a hex token, never a path."""
    if owner is None:
        return root
    if not _OWNER.match(owner):
        raise DataError("an upload owner is a hex token")
    return root / f"{_SESSION}{owner}"  # prefixed: an owner's folder never looks like a content folder


def safe_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(str(name).replace("\\", "/")).name).lstrip(".")
    return safe or "upload.csv"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def store_upload(name: str, stream: BinaryIO, root: Path | None = None, owner: str | None = None) -> Path:
    """Copy `stream` (read in 1 MiB chunks while hashing) into `owner`'s part of the upload store; return the
    stored path."""
    folder = owner_folder(Path(root) if root is not None else uploads_root(), owner)
    safe = safe_name(name)
    if hasattr(stream, "seek"):
        try:
            stream.seek(0)  # a rerun hands the same file object again, already read
        except (OSError, ValueError):
            pass
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".part", dir=folder)
    except OSError as exc:
        raise DataError(f"cannot store the upload in {folder} ({exc.strerror or exc})") from None
    tmp = Path(tmp_name)
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        full = digest.hexdigest()
        for sub in (full[:16], full):  # the full digest only if a different file already took the short one
            target_dir = folder / sub
            existing = [p for p in target_dir.iterdir() if p.is_file()] if target_dir.is_dir() else []
            same = [p for p in existing if p.stat().st_size == size and _sha256(p) == full]
            if existing and not same:
                continue  # a 64-bit prefix collision: never mix different contents in one folder
            target = target_dir / safe
            if target in same:
                return target
            target_dir.mkdir(exist_ok=True)
            if same:  # the same bytes under another name: link, so they are stored once
                try:
                    os.link(same[0], target)
                    return target
                except FileExistsError:
                    return target if _sha256(target) == full else same[0]
                except OSError:
                    pass  # no hard links here: keep a copy under the user's name
            os.replace(tmp, target)  # only ever replaces a file with the same digest (a racing twin)
            return target
        raise DataError(f"cannot store {safe}: the upload store at {folder} holds a conflicting file")
    except OSError as exc:
        raise DataError(f"cannot store the upload {safe} in {folder} ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class StoredUpload:
    path: Path
    size: int
    modified: float
    inode: tuple[int, int] = (0, 0)  # (device, inode): hard-linked names of one content share it

    @property
    def name(self) -> str:
        return self.path.name


def list_uploads(root: Path | None = None, owner: str | None = None) -> list[StoredUpload]:
    """Every stored upload of `owner` (all of them without one), newest first, including files left over from
    failed uploads."""
    folder = owner_folder(Path(root) if root is not None else uploads_root(), owner)
    if not folder.is_dir():
        return []
    now, found = time.time(), []
    for p in folder.rglob("*"):
        try:
            st = p.stat()
        except OSError:
            continue
        if not p.is_file():
            continue
        if p.name.startswith(_TMP_PREFIX) and now - st.st_mtime < _STALE_S:
            continue  # an upload being written right now
        found.append(StoredUpload(p, st.st_size, st.st_mtime, (st.st_dev, st.st_ino)))
    return sorted(found, key=lambda u: u.modified, reverse=True)


def total_size(uploads: Iterable[StoredUpload]) -> int:
    """Bytes on disk: hard-linked names of the same content count once."""
    seen, total = set(), 0
    for u in uploads:
        key = u.inode if u.inode != (0, 0) else str(u.path)
        if key not in seen:
            seen.add(key)
            total += u.size
    return total


@dataclass
class Removal:
    removed: list[StoredUpload]
    kept: list[StoredUpload]  # in use: not removed
    failed: list[str]  # "path (reason)"

    @property
    def freed_bytes(self) -> int:
        return total_size(self.removed)


def _resolved(p: str | Path) -> Path | None:
    """The file `p` names: a data key's source (a key may carry a column mapping, `kd_analysis.data.refs`)."""
    from kd_analysis.data.refs import data_ref

    try:
        if isinstance(p, str):
            p = data_ref(p).source
        return Path(p).expanduser().resolve()
    except (OSError, RuntimeError, ValueError, DataError):  # DataError: a key whose mapping is malformed
        return None


def is_upload(path: str | Path, root: Path | None = None) -> bool:
    """Does `path` lie in the upload store?"""
    folder = _resolved(Path(root) if root is not None else uploads_root())
    p = _resolved(path)
    return bool(folder and p and p != folder and folder in p.parents)


def remove_uploads(keep: Iterable[str | Path] = (), root: Path | None = None, owner: str | None = None) -> Removal:
    """Delete `owner`'s stored uploads (every one without an owner) except those in `keep` (the data set in use,
    files runs trained on); empty folders go too."""
    folder = owner_folder(Path(root) if root is not None else uploads_root(), owner)
    keep_set = {k for k in (_resolved(k) for k in keep if k) if k is not None}
    removed, kept, failed = [], [], []
    for u in list_uploads(folder):
        if _resolved(u.path) in keep_set:
            kept.append(u)
            continue
        try:
            u.path.unlink()
            removed.append(u)
        except FileNotFoundError:
            pass
        except OSError as exc:
            failed.append(f"{u.path} ({exc.strerror or exc})")
    if folder.is_dir():
        for d in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                d.rmdir()  # only when empty, deepest first
            except OSError:
                pass
    return Removal(removed, kept, failed)


ENDED_AFTER_S = 7 * 24 * 3600  # an upload owner untouched this long belongs to a browser session that has ended


def touch_owner(owner: str, root: Path | None = None) -> None:
    """Mark `owner`'s uploads as belonging to a live session (each page view of that session does this), so
    `prune_ended_sessions` never takes them however old the files are."""
    folder = owner_folder(Path(root) if root is not None else uploads_root(), owner)
    try:
        os.utime(folder)
    except OSError:
        pass  # nothing uploaded yet (no folder), or a read-only store: nothing to keep alive


def _last_touched(folder: Path) -> float:
    times = [folder.stat().st_mtime]
    for p in folder.rglob("*"):
        try:
            times.append(p.stat().st_mtime)
        except OSError:
            continue
    return max(times)


def prune_ended_sessions(
    keep: Iterable[str | Path] = (),
    root: Path | None = None,
    ended_after_s: float = ENDED_AFTER_S,
    now: float | None = None,
) -> Removal:
    """Remove the uploads of browser sessions that have ended: owner folders that no page view has touched for
    `ended_after_s` (a reload starts a new session, so nobody can list or remove them any more). Files in `keep`
    (those runs trained on) stay, as in `remove_uploads`; uploads stored without an owner (the CLI's) are never
    touched."""
    store = Path(root) if root is not None else uploads_root()
    now = time.time() if now is None else now
    keep = list(keep)
    total = Removal([], [], [])
    if not store.is_dir():
        return total
    for folder in sorted(store.iterdir()):
        owner = folder.name.removeprefix(_SESSION)
        if not (folder.name.startswith(_SESSION) and _OWNER.match(owner) and folder.is_dir()) or folder.is_symlink():
            continue
        try:
            if now - _last_touched(folder) < ended_after_s:
                continue
        except OSError:
            continue
        done = remove_uploads(keep=keep, root=store, owner=owner)
        total.removed += done.removed
        total.kept += done.kept
        total.failed += done.failed
        try:
            folder.rmdir()  # only when nothing was kept
        except OSError:
            pass
    return total


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GB"
