"""User-facing errors: one clear sentence that the CLI prints as one line and pages show in a box."""


class KDLensError(Exception):
    """A problem with the user's input or environment, explained in plain words (never a traceback)."""


class ModelLoadError(KDLensError):
    """A model could not be found, read or built."""


class DataError(KDLensError):
    """A data file or data set could not be read or mapped to examples."""


class RunStoreError(KDLensError):
    """A run folder is missing or unreadable."""
