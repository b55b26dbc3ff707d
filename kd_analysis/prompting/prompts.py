"""From a template and an example to the exact text a model reads.

Rendering checks the slots: `{question}` is required, `{answer}` / `{solution}` need gold data, anything else is
a typo the user should hear about. Formatting applies the model's chat template when it has one (as a single
user turn, with the assistant turn opened), otherwise a plain `... \\nAnswer:` prompt.
"""

from __future__ import annotations

import string

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError

SLOTS = ("question", "answer", "solution")


def check_template(template: str) -> list[str]:
    """The slots a template uses; a clear error for a missing `{question}`, unknown slots or stray braces."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise KDLensError(
            f"the template has unbalanced braces ({exc}); write a literal brace as {{{{ or }}}}"
        ) from None
    unknown = sorted({f for f in fields if f not in SLOTS})
    if unknown:
        raise KDLensError(
            f"unknown slot(s) {', '.join('{' + u + '}' for u in unknown)} in the template; use "
            f"{', '.join('{' + s + '}' for s in SLOTS)}"
        )
    if "question" not in fields:
        raise KDLensError("the template has no {question} slot, so the model would never see the question")
    return fields


def render_template(template: str, ex: Example) -> str:
    fields = check_template(template)
    if "answer" in fields and ex.answer is None:
        raise KDLensError(f"example {ex.id} has no gold answer for the template's {{answer}} slot")
    return template.format(question=ex.text, answer=ex.answer or "", solution=ex.solution or ex.answer or "")


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def format_prompt(tokenizer, text: str) -> str:
    """The model-ready prompt: the chat template when the tokenizer has one, else `text` + `\\nAnswer:`."""
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return f"{text}\nAnswer:"


def student_prompt(tokenizer, ex: Example) -> str:
    """What a primed-KD student reads: the bare question, formatted like the teacher's `none` strategy."""
    return format_prompt(tokenizer, ex.text)
