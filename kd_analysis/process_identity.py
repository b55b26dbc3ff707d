"""Who is behind a pid: the proof a run's worker gives before anyone signals it.

A pid alone names a process only while it lives: after a reboot, a copied run folder or a hand-edited
status.json it may name any process. A worker is identified by its pid *and* its start time (clock ticks since
boot, from /proc/<pid>/stat, or psutil elsewhere) *and* the boot it started in *and* a per-run token on its
command line. Cancel signals only a process that matches all of them.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
from dataclasses import dataclass
from typing import Any

from kd_analysis.schema import PID_MAX


def new_token() -> str:
    return secrets.token_hex(16)


def boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def start_time(pid: int) -> str | None:
    """The process's start time as an opaque string (kernel ticks since boot on Linux), None if unknown."""
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
        return fields[19]  # field 22 of stat, counting pid and name
    except (OSError, IndexError, ValueError):
        pass
    try:
        import psutil

        return repr(psutil.Process(int(pid)).create_time())
    except Exception:  # psutil missing, no such process, access denied
        return None


def _command_line(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as fh:
            return [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        pass
    try:
        import psutil

        return psutil.Process(int(pid)).cmdline()
    except Exception:
        return None


def _zombie_or_gone(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def this_process() -> dict[str, Any]:
    """What a worker records about itself in status.json."""
    pid = os.getpid()
    return {"pid": pid, "pgid": os.getpgrp(), "proc_start": start_time(pid), "boot_id": boot_id()}


def child_process(pid: int, token: str) -> dict[str, Any]:
    """What the starter records about a worker it has just spawned in a new session (pgid = pid)."""
    return {"pid": pid, "pgid": pid, "proc_start": start_time(pid), "boot_id": boot_id(), "token": token}


@dataclass
class Verdict:
    alive: bool  # a process with this pid, start time and boot exists (the worker, or one we cannot tell)
    verified: bool  # ... and it carries this run's token: safe to signal
    reason: str


def _as_int(value: Any) -> int | None:
    """A pid from a status file that anyone could have edited: a whole number in (0, PID_MAX], else None (so
    a forged 2³¹ or "12" or true names no process, and no signal call ever sees it)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= PID_MAX:
        return None
    return value


_TOKEN = re.compile(r"^[0-9a-f]{32}$")


def _carries(argv: list[str], option: str, value: str) -> bool:
    """`option value` as adjacent arguments (a value elsewhere on the command line proves nothing)."""
    return any(a == option and b == value for a, b in itertools.pairwise(argv))


def worker_command_matches(argv: list[str], token: str, run_id: str | None = None, root: str | None = None) -> bool:
    """The command line `start_run` gives a worker: `... job --run-id ID --root ROOT --token TOKEN`."""
    if not _TOKEN.match(token) or not _carries(argv, "--token", token):
        return False
    if run_id is not None and not _carries(argv, "--run-id", run_id):
        return False  # e.g. a copy of a live run folder: the token names the original's worker
    if root is not None:
        given = next((b for a, b in itertools.pairwise(argv) if a == "--root"), None)
        if given is None or os.path.realpath(given) != os.path.realpath(root):
            return False
    return True


def check(status: dict[str, Any], run_id: str | None = None, root: str | None = None) -> Verdict:
    """Is the worker that `status` names still the process running under its pid (and, with `run_id` and
    `root`, the worker of that run in that store)?"""
    pid = _as_int(status.get("pid"))
    if pid is None:
        return Verdict(False, False, "no worker pid recorded")
    if _zombie_or_gone(pid):
        return Verdict(False, False, f"process {pid} is gone")
    recorded_boot, recorded_start = status.get("boot_id"), status.get("proc_start")
    if recorded_boot and boot_id() and recorded_boot != boot_id():
        return Verdict(False, False, f"process {pid} belongs to an earlier boot")
    if recorded_start is None:
        return Verdict(True, False, f"process {pid} is alive but its start time was not recorded")
    if str(recorded_start) != start_time(pid):
        return Verdict(False, False, f"pid {pid} now names a different process (start time differs)")
    token = status.get("token")
    if not token:
        return Verdict(True, False, f"process {pid} carries no run token (a foreground run)")
    argv = _command_line(pid)
    if argv is None or not worker_command_matches(argv, str(token), run_id, root):
        return Verdict(
            True, False, f"process {pid} is not this run's worker (its command line lacks the run's id and token)"
        )
    return Verdict(True, True, "verified")
