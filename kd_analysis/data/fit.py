"""Whether a model's task can score a data set's examples, said before anything runs.

A multiple-choice teacher on the sentiment demo fails deep inside scoring ("needs examples with choices"); the
sidebar and the CLI ask here first and show one sentence that names the mismatch and what to change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from kd_analysis.data.example import Example

KIND_WORDS = {
    "multiple_choice": "multiple-choice questions",
    "classification": "labelled texts",
    "generation": "questions with free-text answers",
}


def data_kinds(examples: Sequence[Example], sample: int = 200) -> Counter:
    """How many of the first `sample` examples are of each kind (multiple_choice, classification, generation)."""
    return Counter(ex.task for ex in list(examples)[:sample])


def task_fit(task: str | None, examples: Sequence[Example], data_name: str = "this data set") -> str | None:
    """None when a model serving `task` can score these examples; otherwise one sentence: what does not fit and
    what to change. Causal and seq2seq LMs score choices and generate answers, so they fit every kind."""
    kinds = data_kinds(examples)
    if not task or not kinds or task in ("causal_lm", "seq2seq"):
        return None
    main = kinds.most_common(1)[0][0]
    holds = f"{data_name} holds {KIND_WORDS[main]}"
    if task == "multiple_choice" and kinds.get("multiple_choice", 0) < sum(kinds.values()):
        return (
            f"The teacher is a multiple-choice model and {holds}, without answer choices to score: pick a data set "
            "with choices (such as demo:mcq), or a teacher for this data (Task: classification for labelled "
            "texts, causal_lm for free-text answers)."
        )
    if task == "classification" and main == "generation":
        return (
            f"The teacher is a classification model and {holds}, which a class head cannot produce: pick a "
            "causal language model (Task: causal_lm), or a data set of labelled texts."
        )
    if task == "classification" and main == "multiple_choice":
        return (
            f"The teacher is a classification model and {holds}: a class head reads only the question and "
            "would treat the gold choice's position as a class. Set Task to multiple_choice to score the choices."
        )
    return None
