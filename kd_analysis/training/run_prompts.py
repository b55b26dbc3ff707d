"""The prompts a run gives its teacher and its student: the priming strategy's template, the `alignment: paper` mode (Goyal et al.: the student sees the teacher's prompt) or the plain question."""

from __future__ import annotations

from collections.abc import Callable

from kd_analysis.data.example import Example
from kd_analysis.training.config import TrainConfig


def paper_alignment(cfg: TrainConfig) -> bool:
    return cfg.priming is not None and cfg.priming.alignment == "paper"


def paper_prompts(cfg: TrainConfig) -> tuple[Callable[[Example], str], Callable[[Example], str]]:
    """Training inputs under Goyal et al.'s alignment, raw text as in their code: (student: the question,
    teacher: the rendered template). Evaluation keeps the chat-formatted prompts."""
    from kd_analysis.prompting.prompts import render_template

    template = cfg.priming_template
    return (lambda ex: ex.text), (lambda ex: render_template(template, ex))


def teacher_prompt(cfg: TrainConfig, teacher) -> Callable[[Example], str] | None:
    """How the teacher reads an example in a priming run (None: the standard prompt)."""
    if not cfg.priming:
        return None
    from kd_analysis.prompting.prompts import format_prompt, render_template

    template = cfg.priming_template
    return lambda ex: format_prompt(teacher.tokenizer, render_template(template, ex))


def student_prompt_fn(cfg: TrainConfig, student) -> Callable[[Example], str] | None:
    if not cfg.priming:
        return None
    from kd_analysis.prompting.prompts import student_prompt

    return lambda ex: student_prompt(student.tokenizer, ex)
