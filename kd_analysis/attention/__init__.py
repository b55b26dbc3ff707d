"""Attention heads: per layer x head statistics across examples and strategies, comparisons, offline views."""

from kd_analysis.attention.stats import STATS, HeadStats, head_matrix, head_stats

__all__ = ["STATS", "HeadStats", "head_matrix", "head_stats"]
