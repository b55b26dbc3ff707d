"""The Summary page's story, cached once per server and warmed in the background when the server first draws a
page, so that opening Summary reads a finished story (reading the shipped records takes 2–3 s on 2 cores)."""

from __future__ import annotations

import threading

import streamlit as st

from kd_analysis.runs import RunStore, layout
from kd_analysis.threads import start_thread

_started = threading.Event()


def store_stamp(store: RunStore, files: tuple[str, ...] = (layout.STATUS,)) -> tuple:
    """Changes when one of these files of any run changes (a run finished, was regenerated, backfilled or removed):
    the key of caches that read the store."""
    out = []
    for r in store.list():
        for name in files:
            try:
                stat = (store.folder(r.run_id) / name).stat()
                out.append((r.run_id, name, stat.st_mtime_ns, stat.st_size))
            except OSError:
                pass
    return tuple(out)


@st.cache_resource(show_spinner="Reading the shipped runs…", max_entries=4)
def cached_story(root: str, stamp: tuple):
    """Shared by every session of the server: the story changes only when a run does."""
    from kd_analysis.demo.story import build_story

    return build_story(RunStore(root))


def warm_in_background() -> None:
    """Build the story once per server process in a background thread (a failure there only means a cold first
    open)."""
    if _started.is_set():
        return
    _started.set()

    def work() -> None:
        try:
            store = RunStore()
            cached_story(str(store.root), store_stamp(store))
        except Exception:
            pass

    start_thread(work, "kd-lens-story-warm")  # joined at exit: it may be inside torch (the toy fit)
