"""Background threads end before the interpreter does: no abort (exit code 134) when a process exits while one of
our threads is inside torch."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from kd_analysis.threads import live_threads, start_thread, stop_threads
from tests.conftest import ROOT

_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time, torch
    from kd_analysis.threads import start_thread
    stop = threading.Event()
    def work():
        x = torch.randn(64, 64)
        while not stop.is_set():
            x = torch.tanh(x @ x.T / 64).reshape(64, 64)
    if sys.argv[1] == "plain":
        threading.Thread(target=work, daemon=True).start()
    else:
        start_thread(work, "torch loop", stop=stop.set)
    time.sleep(0.3)
    """
)


def _exit_code(mode: str) -> int:
    return subprocess.run([sys.executable, "-c", _SCRIPT, mode], cwd=ROOT, capture_output=True, timeout=120).returncode


def test_a_thread_inside_torch_at_exit_is_stopped_and_joined():
    # the cause, on the pinned torch: a plain daemon thread inside torch at exit aborts the process (a shell shows
    # exit code 134 = 128 + SIGABRT)
    assert _exit_code("plain") == -signal.SIGABRT
    assert _exit_code("exit-safe") == 0


def test_stop_threads_asks_each_thread_to_stop_and_joins_it():
    stop = threading.Event()
    ran = threading.Event()

    def work() -> None:
        ran.set()
        stop.wait(30)

    thread = start_thread(work, "waits for stop", stop=stop.set)
    assert ran.wait(10) and thread in live_threads()
    started = time.monotonic()
    assert stop_threads(timeout=10) == [] and not thread.is_alive()
    assert time.monotonic() - started < 5 and thread not in live_threads()
    short = start_thread(lambda: None, "ends by itself")  # no stop: joined as it is
    short.join(10)
    assert short not in live_threads()


@pytest.mark.slow
def test_a_process_that_trains_and_opens_the_app_exits_cleanly():
    """The combination that aborted at exit: a training run, then the whole app (which warms the Summary story in
    a background thread) in one process."""
    tests = [
        "tests/training/test_balance.py::test_training_logs_the_monitor_every_n_steps_and_warns_once",
        "tests/training/test_balance.py::test_the_run_page_plots_the_monitor_and_warns",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *tests],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
