"""Errors, both kinds: the exceptions kd-lens raises for the user (one clear sentence that the CLI prints as one
line and pages show in a box), and, in submodules, the analysis of where a student's answers go wrong
(`.records` written at evaluation, `.frames`, `.matrix`, `.significance`, `.filters`, `.slices`, `.notes`,
`.workspace` for the run store)."""


class KDLensError(Exception):
    """A problem with the user's input or environment, explained in plain words (never a traceback)."""


class ModelLoadError(KDLensError):
    """A model could not be found, read or built."""


class DataError(KDLensError):
    """A data file or data set could not be read or mapped to examples."""


class RunStoreError(KDLensError):
    """A run folder is missing or unreadable."""
