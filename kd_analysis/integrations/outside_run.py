"""A kd-lens run folder for training that kd-lens does not drive: a Trainer with the callback, a custom loop with
`kd_analysis.track`, or a finished Trainer folder imported.

The folder has the layout of every kd-lens run (`kd_analysis.runs.layout`), so the pages and commands read it as
they read their own. Its config says where it came from (`origin`) and holds only what is known; nothing is
filled in with kd-lens defaults. While the training lives, a heartbeat thread keeps its status fresh: a killed
process stops beating, and the run is then listed as failed. Cancel on the Runs page is a request the training
reads at its next step (`cancel_requested`)."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from kd_analysis import process_identity
from kd_analysis.runs import HEARTBEAT_PERIOD_S, Heartbeat, Run, RunStore
from kd_analysis.runs.kinds import TRAIN
from kd_analysis.runs.records import save_run_records

HEARTBEAT_S = HEARTBEAT_PERIOD_S  # read when a run starts (a test shortens it)


def is_main_process() -> bool:
    """Under `accelerate launch` or torchrun only rank 0 writes the run folder."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def finite_metrics(values: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
    """The numbers among `values` that a run's metrics may hold (finite ints and floats), and the names of those
    left out (NaN or infinite losses, strings, tensors' reprs)."""
    kept: dict[str, float] = {}
    dropped = []
    for name, value in values.items():
        if hasattr(value, "item") and callable(value.item):  # a 0-d tensor or numpy scalar
            try:
                value = value.item()
            except (TypeError, ValueError, RuntimeError):
                pass
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            dropped.append(str(name))
            continue
        kept[str(name)] = value
    return kept, dropped


class OutsideRun:
    """One run of training that happens elsewhere. Only the main process writes; on the others every method
    does nothing."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        root: str | os.PathLike | None = None,
        run_id: str | None = None,
        live: bool = True,
        main_process: bool | None = None,
    ):
        self.main = is_main_process() if main_process is None else main_process
        self.run: Run | None = None
        self.stop = threading.Event()
        self._beat: Heartbeat | None = None
        self._dropped: set[str] = set()
        if not self.main:
            return
        store = RunStore(root)
        self.run = store.create(TRAIN, config, run_id=run_id, state="running")
        if live:  # this process trains: its identity and heartbeat say whether it still does
            self.run.set_status("running", started=time.time(), **process_identity.this_process())
            self._beat = Heartbeat(self.run, self.stop, HEARTBEAT_S)
            self._beat.start()

    @property
    def run_id(self) -> str | None:
        return self.run.run_id if self.run else None

    def cancel_requested(self, now: bool = False) -> bool:
        """Cancel was pressed on the Runs page (or `runs cancel`): the training should stop at its next step.
        Per step this reads the flag the heartbeat sets from the request file (within one beat); `now` reads the
        file itself (once, at the end)."""
        if self._beat is not None and not now:  # no file read per step
            return self.stop.is_set()
        return self.stop.is_set() or (self.run is not None and self.run.cancel_requested())

    def log(self, step: int, metrics: dict[str, Any], total_steps: int | None = None) -> None:
        """One line of metrics at `step`; values that are not finite numbers are left out (the log says which)."""
        if self.run is None:
            return
        kept, dropped = finite_metrics(metrics)
        new = sorted(set(dropped) - self._dropped)
        if new:
            self._dropped.update(new)
            self.run.log(f"not logged (not a finite number): {', '.join(new)}")
        row: dict[str, Any] = {"step": int(step), **kept}
        if total_steps:
            row["total_steps"] = int(total_steps)
        self.run.append_metrics(row)

    def records(self, records: Sequence, *, role: str, step: int, data: str) -> int:
        """One evaluation's per-example records (`predictions.jsonl`), as a kd-lens run writes them."""
        if self.run is None or not records:
            return 0
        return save_run_records(self.run.path, records, role=role, step=int(step), data=data)

    def say(self, line: str) -> None:
        if self.run is not None:
            self.run.log(line)

    def finish(self, state: str = "finished", reason: str | None = None, **extra: Any) -> None:
        """The final state: finished, cancelled or failed (with a reason). The heartbeat stops first, so the last
        status written is this one."""
        if self._beat is not None:
            self._beat.stopped.set()
            self._beat.join()
            self._beat = None
        if self.run is not None and self.run.status().get("state") not in ("finished", "failed", "cancelled"):
            self.run.set_status(state, reason=reason, **extra)

    def __enter__(self) -> OutsideRun:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if exc is None:
            self.finish("cancelled" if self.cancel_requested() else "finished")
        elif isinstance(exc, KeyboardInterrupt):
            self.finish("cancelled", reason="interrupted (Ctrl-C)")
        else:
            self.finish("failed", reason=f"{type(exc).__name__}: {str(exc)[:200]}")
