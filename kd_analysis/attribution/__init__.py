"""Attribution and rationales (Ballout et al. 2024): which input tokens drive the teacher's answer."""
from kd_analysis.attribution.methods import METHODS, register_method
from kd_analysis.attribution.rationales import (DEFINITIONS, PAPER_OVERLAP, Attribution, Overlap, Rationale,
                                                aggregate, attribute, attribute_many, overlap, select_rationale)

__all__ = ["DEFINITIONS", "METHODS", "PAPER_OVERLAP", "Attribution", "Overlap", "Rationale", "aggregate",
           "attribute", "attribute_many", "overlap", "register_method", "select_rationale"]
