"""Crash-safe file writes: a reader never sees a half-written file, and a failed write leaves the old one."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line in a single write; readers skip a torn last line (see read_jsonl). A file that does
    not end in a newline (a line torn by a full disk or a crash) gets one first, so this line is never glued to
    the torn one and lost with it."""
    line = (json.dumps(record, default=_json_default, allow_nan=True) + "\n").encode("utf-8")
    with open(path, "a+b") as fh:
        end = fh.seek(0, os.SEEK_END)
        if end:
            fh.seek(end - 1)
            if fh.read(1) != b"\n":
                line = b"\n" + line
        fh.write(line)  # append mode: always at the end, wherever the reads left the position
        fh.flush()
        os.fsync(fh.fileno())


class NotARegularFile(OSError):
    """A run-folder file that is a FIFO, a device (/dev/zero) or a folder: reading it would block or never end."""


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """`path` opened for binary reading, only if it is a regular file (a symlink to one is fine). Opened
    non-blocking and checked on the open descriptor, so a FIFO planted in a run folder cannot hang a reader."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile(f"{Path(path).name} is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@dataclass
class JsonlRead:
    rows: list[dict] = field(default_factory=list)
    line_numbers: list[int] = field(default_factory=list)  # 1-based, one per row
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line number, why) of every skipped line


def read_jsonl_checked(path: str | os.PathLike) -> JsonlRead:
    """Every JSON object line, and which lines were skipped and why (bad bytes, bad JSON, not an object).

    Decodes line by line, so one bad byte costs one line, not the file. A missing file reads as empty."""
    out = JsonlRead()
    try:
        fh = open_regular(path)
    except FileNotFoundError:
        return out
    except OSError as exc:  # a FIFO, a device, a folder, no permission: one reason, not a hang or a crash
        out.bad.append((0, str(exc) if isinstance(exc, NotARegularFile) else f"cannot be read ({exc.strerror})"))
        return out
    with fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                out.bad.append((n, f"not UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})"))
                continue
            except json.JSONDecodeError as exc:
                out.bad.append((n, f"not JSON ({exc.msg} at column {exc.colno})"))
                continue
            except (ValueError, RecursionError) as exc:  # e.g. a 5,000-digit number, nesting 100,000 deep
                out.bad.append((n, f"not usable JSON ({type(exc).__name__})"))
                continue
            if isinstance(obj, dict):
                out.rows.append(obj)
                out.line_numbers.append(n)
            else:
                out.bad.append((n, f"a JSON {type(obj).__name__}, not an object"))
    return out


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Every complete JSON object line; a line cut short by a crash or a full disk is skipped, not fatal."""
    return read_jsonl_checked(path).rows


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def writable_target(path: str | os.PathLike, force: bool) -> Path:
    """The file a command may write to: refused in one sentence when something is already there, unless `force`
    (`--force`), and always when it is a folder. A symbolic link is refused too; with `force` the link itself is
    replaced, never the file it points to. Checked before any work, so a refusal costs nothing."""
    from kd_analysis.exceptions import KDLensError

    target = Path(path)
    if target.is_symlink():  # even to nothing yet: writing would go wherever it points
        if not force:
            raise KDLensError(
                f"{target} is a symbolic link (to {os.readlink(target)}): pass --force to replace the link itself, "
                "or name another file"
            )
        target.unlink()  # the link only, never what it points to
        return target
    if target.is_dir():
        raise KDLensError(f"{target} is a folder: name the file to write")
    if target.exists() and not force:
        raise KDLensError(f"{target} already exists: pass --force to overwrite it, or name another file")
    return target
