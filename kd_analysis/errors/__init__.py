"""Errors, both kinds: the exceptions kd-lens raises for the user (one clear sentence that the CLI prints as one
line and pages show in a box), and, in submodules, the analysis of where a student's answers go wrong
(`kd_analysis.errors.records`, `.analysis`, `.notes`)."""


class KDLensError(Exception):
    """A problem with the user's input or environment, explained in plain words (never a traceback)."""


class ModelLoadError(KDLensError):
    """A model could not be found, read or built."""


class DataError(KDLensError):
    """A data file or data set could not be read or mapped to examples."""


class RunStoreError(KDLensError):
    """A run folder is missing or unreadable."""
