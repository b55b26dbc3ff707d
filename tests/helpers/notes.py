"""Helpers shared by several test files."""

from __future__ import annotations

import threading

from kd_analysis.error_analysis.notes import NotesStore


def write_many(path: str, who: str, n: int) -> None:
    store = NotesStore(path)
    for i in range(n):
        store.add_note("conc", f"{who}-{i}", f"note {i} by {who}", author=who)
        store.add_tags("conc", f"{who}-{i}", ["shared", f"by-{who}"], author=who)


def writer_process(path: str, name: str, threads: int, n: int) -> None:
    """Several threads in one process, each with its own examples, all writing the same file; a thread's
    error fails the process."""
    errors = run_threads([lambda t=t: write_many(path, f"{name}t{t}", n) for t in range(threads)])
    if errors:
        raise errors[0]


def run_threads(targets) -> list[BaseException]:
    errors: list[BaseException] = []

    def guard(fn):
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guard, args=(fn,)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors
