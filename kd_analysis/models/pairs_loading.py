"""Load a teacher and its student in one call, with the pair check."""

from __future__ import annotations

from kd_analysis.models.loading import LoadedModel, load_model
from kd_analysis.models.pair import PairReport, check_pair
from kd_analysis.models.specs import ModelSpec, StudentSpec
from kd_analysis.models.students import derive_student


def load_pair(teacher: ModelSpec, student: StudentSpec, progress=None) -> tuple[LoadedModel, LoadedModel, PairReport]:
    t = load_model(teacher, progress)
    s = derive_student(t, student, progress)
    return t, s, check_pair(t, s)
