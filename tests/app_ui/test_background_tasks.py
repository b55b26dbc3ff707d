"""Background page work: runs off the script thread, reports progress, cancels, and stores its result by key."""

from __future__ import annotations

import threading
import time

from app_ui.background import CANCELLED, FAILED, FINISHED, RUNNING, BackgroundTasks
from app_ui.shared_results import SharedResults


def _wait(task, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while task.state == RUNNING and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_task_reports_progress_and_stores_its_result():
    results = SharedResults()
    tasks = BackgroundTasks(results)
    gate = threading.Event()

    def work(task):
        for i in range(3):
            task.progress(i, 3, f"step {i}")
            gate.wait(5)
        task.progress(3, 3)
        return "done"

    task = tasks.start("k", "demo", work)
    assert tasks.start("k", "demo", work) is task  # a second tab follows the running one
    time.sleep(0.05)
    assert task.state == RUNNING and task.total == 3 and results.peek("k") is None
    gate.set()
    _wait(task)
    assert task.state == FINISHED and results.peek("k") == "done" and task.fraction == 1.0 and task.ended


def test_cancel_stops_at_the_next_progress_and_stores_nothing():
    results = SharedResults()
    tasks = BackgroundTasks(results)
    seen = []

    def work(task):
        for i in range(1000):
            seen.append(i)
            task.progress(i, 1000)
            time.sleep(0.005)
        return "never"

    task = tasks.start("k", "slow", work)
    time.sleep(0.05)
    tasks.cancel("k")
    _wait(task)
    assert task.state == CANCELLED and results.peek("k") is None and len(seen) < 1000
    again = tasks.start("k", "slow", lambda t: 42)  # a cancelled key can be started again
    _wait(again)
    assert again is not task and results.peek("k") == 42


def test_a_failure_is_one_line_and_the_next_start_retries():
    tasks = BackgroundTasks(SharedResults())

    def boom(task):
        raise ValueError("the model needs choices\nsecond line of detail")

    task = tasks.start("k", "bad", boom)
    _wait(task)
    assert task.state == FAILED and task.error == "the model needs choices"
