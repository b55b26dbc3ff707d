"""Background threads that end before the interpreter does.

A daemon thread still inside torch when Python exits is stopped while it waits for the GIL: CPython ends it with
`pthread_exit`, whose unwinding crosses torch's C++ frames (noexcept), and the process aborts ("terminate called
without an active exception", exit code 134) after all its work is done. A server stopped while the Summary story
warms, or a test process that opened a page, hit exactly that. Threads started here stay daemons (they never
block a Ctrl-C), but at exit each is asked to stop and joined, while the interpreter is still whole.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable

JOIN_S = 60.0  # the longest exit waits for the threads together (a cancelled step ends at its next check)

_live: dict[threading.Thread, Callable[[], None] | None] = {}
_guard = threading.Lock()


def start_thread(target: Callable[[], None], name: str, stop: Callable[[], None] | None = None) -> threading.Thread:
    """Run `target` in a daemon thread that exit stops (`stop`, when given, asks it to end early) and joins."""

    def body() -> None:
        try:
            target()
        finally:
            with _guard:
                _live.pop(threading.current_thread(), None)

    thread = threading.Thread(target=body, name=name, daemon=True)
    with _guard:
        _live[thread] = stop
    thread.start()
    return thread


def live_threads() -> list[threading.Thread]:
    with _guard:
        return list(_live)


def stop_threads(timeout: float = JOIN_S) -> list[threading.Thread]:
    """Ask every live thread to stop, then join them within `timeout` seconds in all; returns those still alive."""
    with _guard:
        items = list(_live.items())
    for _, stop in items:
        if stop is not None:
            stop()
    deadline = time.monotonic() + timeout
    for thread, _ in items:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t for t, _ in items if t.is_alive()]


atexit.register(stop_threads)
