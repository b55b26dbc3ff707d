"""Response-priming prompts (Goyal et al. 2024): the teacher answers under a prompting strategy, a student
learns from its outputs."""

from kd_analysis.prompting.prompts import format_prompt, render_template, student_prompt
from kd_analysis.prompting.strategies import STRATEGIES, Strategy, register_strategy

__all__ = ["STRATEGIES", "Strategy", "format_prompt", "register_strategy", "render_template", "student_prompt"]
