"""Attribution and rationales (Ballout et al. 2024): which input tokens drive the teacher's answer."""

from kd_analysis.attribution.methods import METHODS, register_method
from kd_analysis.attribution.rationales import (
    DEFINITIONS,
    PAPER_OVERLAP,
    Attribution,
    Overlap,
    Rationale,
    aggregate,
    attribute,
    attribute_many,
    overlap,
    select_rationale,
)
from kd_analysis.attribution.report import PaperReference, data_kind, paper_reference

__all__ = [
    "DEFINITIONS",
    "METHODS",
    "PAPER_OVERLAP",
    "Attribution",
    "Overlap",
    "PaperReference",
    "Rationale",
    "aggregate",
    "attribute",
    "attribute_many",
    "data_kind",
    "overlap",
    "paper_reference",
    "register_method",
    "select_rationale",
]
