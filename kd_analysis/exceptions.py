"""The exceptions kd-lens raises for the user: one clear sentence that the CLI prints as one line and pages
show in a box. The lowest layer: every unit may raise them, and they import nothing of kd-lens."""


class KDLensError(Exception):
    """A problem with the user's input or environment, explained in plain words (never a traceback)."""


class ModelLoadError(KDLensError):
    """A model could not be found, read or built."""


class DataError(KDLensError):
    """A data file or data set could not be read or mapped to examples."""


class RunStoreError(KDLensError):
    """A run folder is missing or unreadable."""


def user_message(exc: BaseException, *, limit: int = 300, kind: bool = False) -> str:
    """The one line a page, the CLI or a run's status shows for an exception: its first line of text (the class
    name when it has none), cut at `limit`. `kind` names the class first, for failures that are bugs rather than
    bad input, where the class is part of what a user reports."""
    lines = str(exc).strip().splitlines()
    name = type(exc).__name__
    if not lines:
        return name
    first = lines[0][:limit]
    return f"{name}: {first}" if kind else first
