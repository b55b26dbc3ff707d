"""The run worker: `python -m kd_analysis train --config FILE` in its own process group.

It owns its run folder: status.json (with a heartbeat every few seconds), metrics.jsonl and log.txt. A crash
marks the run failed with the traceback in the log and one line in the status; SIGTERM cancels it cleanly.
Runs on the same device kind wait for each other through a lock file that the OS releases even after kill -9.
"""

from __future__ import annotations

import errno
import fcntl
import importlib
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from kd_analysis import process_identity
from kd_analysis.exceptions import KDLensError, user_message
from kd_analysis.logs import lines_to
from kd_analysis.runs import HEARTBEAT_PERIOD_S, Heartbeat, PhaseReporter, Run, RunStore, layout
from kd_analysis.runs.kinds import JOB_KINDS, TRAIN

logger = logging.getLogger(__name__)

HEARTBEAT_S = HEARTBEAT_PERIOD_S  # read when a job starts (a test shortens it)


def _is_main_rank() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def _device_kind(cfg) -> str:
    import torch

    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return "cpu"
    return "gpu"


_QUEUE_HELD_BY_PARENT = False


def queue_held_by_parent() -> None:
    """Steps in this process run for a parent that holds the device locks itself (`make-reference --jobs N`)."""
    global _QUEUE_HELD_BY_PARENT
    _QUEUE_HELD_BY_PARENT = True


def hold_device_queue(root: Path, kinds: tuple[str, ...] = ("cpu", "gpu")):
    """Take the device locks for a whole plan (blocking: a job started from the app finishes first)."""
    root.mkdir(parents=True, exist_ok=True)
    held = []
    for kind in kinds:
        fh = open(root / f".{kind}.lock", "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info(f"waiting for the run already using the {kind.upper()}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        held.append(fh)
    return held


def _wait_for_device(run: Run, root: Path, kind: str, stop: threading.Event | None = None):
    """Wait until this run holds the device's lock (None if stopped first); the status says it is queued
    meanwhile. Polls, so a cancel or Ctrl-C while queued is honoured at once."""
    root.mkdir(parents=True, exist_ok=True)
    fh = open(root / f".{kind}.lock", "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        run.set_status("queued", reason=f"waiting for the run already using the {kind.upper()}")
        run.log(f"queued: another run holds the {kind} lock")
        while True:
            if stop is not None and stop.is_set():
                fh.close()
                return None
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.5)
    return fh


def failure_reason(exc: BaseException) -> str:
    import torch

    if isinstance(exc, KDLensError):
        return str(exc)
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return (
            "out of GPU memory: lower batch_size (use grad_accum to keep the effective batch), shorten "
            "max_length, or use precision bf16"
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "the disk is full: free space and start the run again (metrics written so far are intact)"
    return f"{user_message(exc, limit=200, kind=True)} (traceback in the log)"


def supervise(
    run: Run, root: Path, device_kind: str, body: Callable[[threading.Event], tuple[str, str | None, dict]]
) -> int:
    """Run `body` as this run's job: heartbeat, device queue, SIGTERM -> stop flag, any failure -> a reason.

    `body(stop)` returns (final state, reason, extra status fields). Shared by every background job kind.
    """
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run.set_status(run.status().get("state", "queued"), **process_identity.this_process())
    if run.cancel_requested():
        stop.set()
    beat = Heartbeat(run, stop, HEARTBEAT_S)
    beat.start()
    lock = None
    try:
        lock = None if _QUEUE_HELD_BY_PARENT else _wait_for_device(run, root, device_kind, stop)
        if stop.is_set():
            run.set_status("cancelled", reason="cancelled while queued")
            return 0
        run.set_status("running", reason=None, started=time.time())
        state, reason, extra = body(stop)
        run.set_status(state, reason=reason, **extra)
        return 0
    except BaseException as exc:  # the run folder must say why, whatever happened
        run.failure = failure_reason(exc)  # kept here too: a full disk may refuse the status write below
        try:
            run.log("".join(traceback.format_exception(exc)))
            run.set_status("failed", reason=run.failure)
        except OSError:
            pass
        return 1 if not isinstance(exc, KDLensError) else 2
    finally:
        beat.stopped.set()
        beat.join()  # a beat already under way must land before the caller may move or delete the folder
        if lock:
            lock.close()


def run_worker(
    config_path: str | os.PathLike | None, run_id: str | None = None, root: str | None = None, config=None
) -> int:
    """Train one config in this process. `config` (a TrainConfig, e.g. a resolved preset) replaces the file."""
    from kd_analysis.training.config import TrainConfig
    from kd_analysis.training.loop import train

    store = RunStore(root)
    run = store.get(run_id) if run_id else None
    if run is not None and _is_main_rank():
        executes_once(run)
    try:
        cfg = config if config is not None else TrainConfig.load(config_path)
    except KDLensError as exc:
        if run and _is_main_rank():
            run.set_status("failed", reason=str(exc))
        raise
    if not _is_main_rank():  # extra ranks under `accelerate launch` train but write nothing
        train(cfg, out_dir=None)
        return 0
    if run is None:
        run = store.create(TRAIN, cfg.to_dict(), state="queued", name=cfg.name)
        print(run.run_id, flush=True)

    def body(stop: threading.Event) -> tuple[str, str | None, dict]:
        run.log(f"started: {cfg.name or run.run_id}")
        digest = data_digest(cfg.data)
        if digest:  # what the run trained on, even if the file (an upload, say) later changes or goes
            run.set_status("running", data_sha256=digest)
            run.log(f"data {cfg.data}: sha256 {digest}")
        with lines_to(run.log):  # the library's log lines go to the run's log.txt
            result = train(
                cfg,
                out_dir=run.path,
                on_metrics=run.append_metrics,
                should_stop=stop.is_set,
                on_phase=PhaseReporter(run).say,
            )
        run.write_json(layout.RESULT, result.to_dict())
        run.log(f"{result.state} after {result.steps} steps")
        if result.state == "cancelled":
            return "cancelled", f"cancelled at step {result.steps}", {}
        return "finished", None, {"warnings": result.warnings}

    code = supervise(run, store.root, _device_kind(cfg), body)
    if code:
        print_failure(run)
    return code


def data_digest(data: str) -> str | None:
    """sha256 of a data file (None for a demo or hub data set): recorded with the run, so a later reader can tell
    whether the file it finds is the one the run trained on."""
    import hashlib

    from kd_analysis.data.refs import data_ref

    path = Path(data_ref(data).source).expanduser()  # the file; its column mapping is in the config beside it
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def print_failure(run: Run) -> None:
    """The CLI's one line for a failed run (the traceback is in the run's log), as every other command does."""
    reason = run.failure or run.status().get("reason") or "the run failed"
    print(f"error: {reason} (log: {run.path / 'log.txt'})", file=sys.stderr, flush=True)


def run_job(run_id: str, root: str | None = None) -> int:
    """Execute a queued run of any kind (what the pages start): dispatch on the kind in its config."""
    store = RunStore(root)
    return run_one(store.get(run_id), store)


def executes_once(run: Run) -> None:
    """A run folder is executed once, from `queued`: `job --run-id` on a finished (or running) run would train
    it again over the files it wrote. Refused without touching its status."""
    state = run.status().get("state")
    if state not in (None, "queued"):
        raise KDLensError(
            f"run {run.run_id} is {state}: a run executes once, and its folder keeps what it wrote; start a new run"
        )


def run_one(run: Run, store: RunStore) -> int:
    executes_once(run)
    kind = run.config().get("kind")
    if kind == TRAIN:
        return run_worker(run.path / layout.CONFIG, run_id=run.run_id, root=str(store.root))
    if kind in JOB_KINDS:
        module, _, name = JOB_KINDS[kind].entry.partition(":")
        job = getattr(importlib.import_module(module), name)
        code = supervise(run, store.root, "cpu" if not _cuda() else "gpu", lambda stop: job(run, stop, store))
        if code:
            print_failure(run)
        return code
    run.set_status("failed", reason=f"unknown job kind {kind!r}")
    return 2


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
