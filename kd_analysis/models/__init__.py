"""Models: one loading path for built-ins, local folders and hub ids; students derived from teachers; pair checks."""

from kd_analysis.models.builtins import BUILTINS, cache_root
from kd_analysis.models.specs import STUDENT_KINDS, TASKS, ModelSpec, StudentSpec

__all__ = [
    "BUILTINS",
    "STUDENT_KINDS",
    "TASKS",
    "LoadedModel",
    "ModelSpec",
    "PairReport",
    "StudentSpec",
    "cache_root",
    "check_pair",
    "derive_student",
    "estimate_memory",
    "load_model",
    "load_pair",
]


def __getattr__(name):  # torch-heavy parts load on first use, so `models list` and --help stay instant
    if name in ("load_model", "estimate_memory", "LoadedModel", "attention_weights"):
        from kd_analysis.models import loading

        return getattr(loading, name)
    if name in ("derive_student", "drop_layers", "shrink", "evenly_spaced"):
        from kd_analysis.models import students

        return getattr(students, name)
    if name in ("check_pair", "PairReport"):
        from kd_analysis.models import pair

        return getattr(pair, name)
    if name == "load_pair":
        from kd_analysis.models.pairs_loading import load_pair

        return load_pair
    raise AttributeError(name)
