"""Prompting strategies: a registry of name -> default template, so adding one is one function and one line.

A template is plain text with a `{question}` slot; `{answer}` (the gold final number) and `{solution}` (the
gold worked solution) are filled for strategies that show the teacher the truth. The first four are Goyal et
al.'s strategies (none, Teacher, "Ground Truth" = AI-to-AI, Confidence); their prompt texts are our
paraphrases of each strategy's purpose (docs/methods.md §2), not the paper's words, and each says only what its
strategy asks for: no "step by step" or other chain-of-thought wording, which belongs to `cot` alone. Each
strategy records this in `wording`, which its description repeats. Despite its name the paper's "Ground
Truth" prompt does not show the answer, so `gold` is ours: it really does. `gold` and `cot` are our own
strategies, with our own wording.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Goyal et al.'s repository, GSM8K test accuracy of the 8B student per strategy (docs/methods.md §2)
PAPER_ACCURACY = {
    "no distillation": 0.122,
    "fine-tune (CE only)": 0.250,
    "none": 0.306,
    "confidence": 0.340,
    "teacher": 0.423,
    "ai_to_ai": 0.481,
}
PAPER_GAIN = 0.55  # the abstract: "Ground Truth" prompting, relative to distillation without a prompt


PAPER_WORDING = "our wording of the paper's prompt"
OWN_WORDING = "ours"


@dataclass(frozen=True)
class Strategy:
    name: str
    title: str
    template: str
    description: str  # what the strategy does, ending with where its prompt text comes from (`wording`)
    paper: bool  # one of the paper's strategies (else ours)
    uses_gold: bool  # the template shows the gold answer or solution
    wording: str = OWN_WORDING  # PAPER_WORDING for the paper's strategies (our paraphrase), OWN_WORDING for ours


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str, title: str, description: str, *, paper: bool = False):
    wording = PAPER_WORDING if paper else OWN_WORDING
    full = f"{description} Prompt text: {wording}."

    def deco(fn: Callable[[], str]):
        template = fn()
        STRATEGIES[name] = Strategy(
            name,
            title,
            template,
            full,
            paper,
            uses_gold="{answer}" in template or "{solution}" in template,
            wording=wording,
        )
        return fn

    return deco


@register_strategy("none", "None (base KD)", "The question alone, no prompt: distillation without priming.", paper=True)
def _none() -> str:
    return "{question}"


@register_strategy(
    "teacher", "Teacher", "The model acts as a teacher guiding a student with a clear, simple explanation.", paper=True
)
def _teacher() -> str:
    return (
        "Act as a teacher guiding a student through the problem below. Give a clear, simple explanation.\n\n{question}"
    )


@register_strategy(
    "ai_to_ai",
    'AI-to-AI ("Ground Truth" in the paper)',
    "Asks for a detailed answer that smaller models can learn from; shows no answer, despite the paper's name.",
    paper=True,
)
def _ai_to_ai() -> str:
    return "Answer the question below in detail. Smaller AI models will learn from your answer.\n\n{question}"


@register_strategy(
    "confidence", "Confidence", "Appended: asks the model to double-check its answer at the end.", paper=True
)
def _confidence() -> str:
    return "{question}\n\nAt the end, double-check your answer."


@register_strategy(
    "gold",
    "True ground truth (ours)",
    "The teacher is shown the gold final answer and asked to explain how to reach it.",
)
def _gold() -> str:
    return "{question}\n\nThe correct final answer is {answer}. Explain step by step how to reach it."


@register_strategy("cot", "Chain of thought (ours)", "Asks the model to reason step by step before answering.")
def _cot() -> str:
    return "{question}\n\nLet's think step by step."
