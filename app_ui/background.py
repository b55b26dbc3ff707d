"""Expensive page work in a background thread: started by a button, polled for progress, cancellable, and its
result kept by its inputs so that going back to the same settings is instant.

A Streamlit script run must not block: a slider change that recomputes attributions for two minutes freezes the
tab. Here the work runs in a plain thread (no Streamlit calls in it); the page shows `Task.done / total` and a
Cancel button in a fragment that polls while the task runs, and reads the result from `SharedResults` when it is
there. One task per key for the whole server: a second tab asking for the same inputs follows the first one's
progress instead of starting its own. Plain threading, so it is tested without Streamlit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app_ui.shared_results import SharedResults
from kd_analysis.exceptions import user_message
from kd_analysis.threads import start_thread

RUNNING, FINISHED, FAILED, CANCELLED = "running", "finished", "failed", "cancelled"
CANCEL_PENDING = (
    "Cancelling: the work stops at its next step. Loading a model is one step (the first load of SmolLM2 also "
    "de-quantises it, minutes on a CPU) and finishes first; what it cached is kept for the next start."
)


class Cancelled(Exception):
    """Raised inside the work by `Task.progress` once Cancel was pressed; the task ends cancelled."""


@dataclass
class Task:
    key: str
    label: str
    state: str = RUNNING
    done: int = 0
    total: int | None = None
    message: str = "starting"
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    error: str | None = None  # one line, for the page
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Report progress from the work; raises Cancelled when the user cancelled (the work stops there)."""
        self.done, self.total = int(done), (int(total) if total is not None else self.total)
        if message is not None:
            self.message = message
        if self.cancel_event.is_set():
            raise Cancelled()

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started


class BackgroundTasks:
    """At most one task per key; results land in `results` under the same key."""

    def __init__(self, results: SharedResults):
        self.results = results
        self._tasks: dict[str, Task] = {}
        self._guard = threading.Lock()

    def get(self, key: str) -> Task | None:
        with self._guard:
            return self._tasks.get(key)

    def start(self, key: str, label: str, work: Callable[[Task], Any]) -> Task:
        """Run `work(task)` in a thread unless a task for `key` is already running (then that one is returned)."""
        with self._guard:
            current = self._tasks.get(key)
            if current is not None and current.state == RUNNING:
                return current
            task = Task(key, label)
            self._tasks[key] = task

        def body() -> None:
            try:
                value = work(task)
            except Cancelled:
                task.state = CANCELLED
            except BaseException as exc:
                task.error = user_message(exc)
                task.state = FAILED
            else:
                self.results.put(key, value)
                task.state = FINISHED
            finally:
                task.ended = time.monotonic()

        start_thread(body, f"kd-lens task {label}", stop=task.cancel)  # exit cancels it and waits for the stop
        return task

    def cancel(self, key: str) -> None:
        task = self.get(key)
        if task is not None:
            task.cancel()


def task_panel(st, tasks: BackgroundTasks, key: str, work: Callable[[Task], Any], label: str, prefix: str) -> None:
    """The page side of a task: a start button, then live progress with Cancel (a fragment polling every second
    while it runs), then a full rerun once the result is stored. `st` is streamlit (passed in, so this module
    stays importable without it); widget keys start with `prefix`."""
    from app_ui.safe_text import md

    current = tasks.get(key)
    running = current is not None and current.state == RUNNING

    @st.fragment(run_every=1 if running else None)
    def panel() -> None:
        task = tasks.get(key)
        if task is not None and task.state == RUNNING:
            st.progress(task.fraction, text=f"{md(task.message)} · {task.seconds:.0f} s so far")
            if task.cancel_event.is_set():  # the work stops at its next progress report, not before
                st.info(CANCEL_PENDING, icon=":material/hourglass_top:")
            elif st.button("Cancel", key=f"{prefix}_cancel"):
                task.cancel()
                st.rerun(scope="fragment")
            return
        if task is not None and task.state == FINISHED and tasks.results.has(key):
            st.rerun()  # the result is there: draw it
        if running:
            st.rerun()  # it ended while this panel polled: redraw the page without polling
        if task is not None and task.state == CANCELLED:
            st.info(f"Cancelled after {task.seconds:.0f} s ({md(task.message)}).", icon=":material/cancel:")
        elif task is not None and task.state == FAILED:
            st.error(f"It failed: {md(task.error or '')}", icon=":material/error:")
        if st.button(label, type="primary", key=f"{prefix}_start"):
            tasks.start(key, label, work)
            st.rerun()

    panel()


def _tasks() -> dict[str, BackgroundTasks]:
    from app_ui.shared_results import INSIDE, PRIME_OUTPUTS, RATIONALES

    return {
        "rationales": BackgroundTasks(RATIONALES),
        "teacher_outputs": BackgroundTasks(PRIME_OUTPUTS),
        "inside": BackgroundTasks(INSIDE),
    }


TASKS = _tasks()  # one registry per result store, shared by every session of the server
