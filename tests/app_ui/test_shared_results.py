"""Results shared across browser sessions: concurrent requests for one key compute once."""

from __future__ import annotations

import threading
import time

import pytest

from app_ui.shared_results import SharedResults


def test_concurrent_sessions_compute_once_and_get_the_same_result():
    shared, calls = SharedResults(), []

    def compute():
        calls.append(1)
        time.sleep(0.3)
        return object()

    got = []
    threads = [threading.Thread(target=lambda: got.append(shared.get("k", compute))) for _ in range(10)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    assert shared.in_progress("k")
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 10 and all(g is got[0] for g in got)
    assert shared.has("k") and not shared.in_progress("k")


def test_different_keys_do_not_wait_for_each_other_and_old_entries_go():
    shared = SharedResults(max_entries=2)
    for k in "abc":
        shared.get(k, lambda k=k: k.upper())
    assert not shared.has("a") and shared.get("c", lambda: "other") == "C"


def test_a_failure_is_not_stored_and_the_next_caller_retries():
    shared = SharedResults()

    def boom():
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError):
        shared.get("k", boom)
    assert not shared.in_progress("k") and shared.get("k", lambda: 42) == 42
