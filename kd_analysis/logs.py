"""Where the library's log lines go. Modules log through `logging.getLogger(__name__)` (all below the
`kd_analysis` logger); a caller chooses the destination for a stretch of work: a run's `log.txt` (the worker),
stderr (the CLI), or any callback (a page's progress box, a test). Warnings keep their "warning: " prefix in
those lines, as the run pages and `runs show` expect."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator

ROOT = "kd_analysis"


class _LineHandler(logging.Handler):
    def __init__(self, write: Callable[[str], None]):
        super().__init__(logging.INFO)
        self.write = write

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            self.write(f"warning: {text}" if record.levelno == logging.WARNING else text)
        except Exception:  # a log line must never end the work it describes
            self.handleError(record)


@contextlib.contextmanager
def lines_to(write: Callable[[str], None]) -> Iterator[None]:
    """Send the library's INFO and WARNING lines to `write` (one string per line) while the block runs."""
    logger = logging.getLogger(ROOT)
    handler = _LineHandler(write)
    previous = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def to_stderr() -> contextlib.AbstractContextManager[None]:
    """The CLI's destination: one line per message on stderr, flushed (progress shows as it happens)."""

    def write(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return lines_to(write)
