"""Results shared by every browser session of one server, keyed by their inputs.

Streamlit's session state is per tab: ten tabs opening the Saliency page computed the same attributions ten
times at once (the load benchmark's 13× slowdown). Here the first session computes and any other session asking
for the same key waits for that result instead of starting its own; the oldest entries are dropped past
`max_entries`. Plain threading, so it is tested without Streamlit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class SharedResults:
    def __init__(self, max_entries: int = 8):
        self.max_entries = max_entries
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._pending: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def has(self, key: str) -> bool:
        with self._guard:
            return key in self._data

    def peek(self, key: str) -> Any | None:
        """The stored result, or None (never computes)."""
        with self._guard:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            return None

    def put(self, key: str, value: Any) -> None:
        with self._guard:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def in_progress(self, key: str) -> bool:
        """Another session is computing `key` right now (so this one will wait for it)."""
        with self._guard:
            return key in self._pending and key not in self._data

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        """The stored result for `key`, computing it once however many sessions ask at the same time. A failed
        computation stores nothing: the next caller tries again (and sees its own error)."""
        with self._guard:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            lock = self._pending.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                if key in self._data:
                    return self._data[key]
            try:
                value = compute()
            except BaseException:
                with self._guard:
                    self._pending.pop(key, None)
                raise
            with self._guard:
                self._data[key] = value
                self._pending.pop(key, None)
                while len(self._data) > self.max_entries:
                    self._data.popitem(last=False)
            return value


RATIONALES = SharedResults(max_entries=8)  # saliency page: one report per (pair, data, method, target, n, cap)
PAIR_OUTPUTS = SharedResults(max_entries=2)  # loss explorer: teacher and student outputs per batch (B×L×V
# logits for an LM: a few GB each, so only the latest two)
PAIR_LOSSES = SharedResults(max_entries=32)  # loss explorer: every loss and its gradient per batch and setting
PRIME_OUTPUTS = SharedResults(max_entries=8)  # priming page: teacher outputs per (teacher, data, n, templates, ...)
INSIDE = SharedResults(max_entries=8)  # models & data: the inside views per (pair, data, examples, threshold)
