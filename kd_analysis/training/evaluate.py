"""Evaluation: accuracy for classification and multiple choice, final-number exact match for generation."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from kd_analysis.data.answers import is_correct
from kd_analysis.data.example import Example
from kd_analysis.models.scoring import choice_scores, class_logits, mc_prompt


def evaluate(loaded, examples: Sequence[Example], cfg, unwrap: Callable | None = None,
             prompt: Callable[[Example], str] | None = None) -> dict[str, Any]:
    if not examples:
        return {}
    model = loaded.model
    was_training = model.training
    model.eval()
    try:
        if loaded.task in ("classification", "multiple_choice"):
            correct = 0
            for i in range(0, len(examples), cfg.batch_size):
                chunk = list(examples[i:i + cfg.batch_size])
                with torch.no_grad():
                    out = (choice_scores(loaded, chunk, cfg.max_length) if loaded.task == "multiple_choice"
                           else class_logits(loaded, chunk, cfg.max_length))
                pred = out.argmax(-1).cpu()
                correct += int((pred == torch.tensor([ex.label for ex in chunk])).sum())
            return {"accuracy": correct / len(examples)}
        out = {"exact_match": _generation_exact_match(loaded, examples, cfg, unwrap, prompt or mc_prompt)}
        if loaded.head != "seq2seq":
            out["answer_nll"] = answer_nll(loaded, examples, cfg.max_length, cfg.batch_size, prompt or mc_prompt)
        return out
    finally:
        if was_training:
            model.train()


def _generation_exact_match(loaded, examples, cfg, unwrap, prompt) -> float:
    from kd_analysis.models.generation import generate_texts

    model = unwrap(loaded.model) if unwrap else loaded.model
    texts = generate_texts(loaded, [prompt(ex) for ex in examples], cfg.max_new_tokens, cfg.batch_size, model=model)
    return sum(is_correct(final_answer_text(t), ex.answer) for t, ex in zip(texts, examples)) / len(examples)


def answer_nll(loaded, examples: Sequence[Example], max_length: int, batch_size: int,
               prompt: Callable[[Example], str]) -> float | None:
    """Mean negative log-likelihood per token of the gold target (worked solution, `#### N`, end of text),
    teacher-forced after the prompt; None when truncation left no target token. Exact match on a few dozen
    questions moves in steps of several points; this moves with every step of training, so short runs can
    still be told apart."""
    from kd_analysis.training.batches import lm_outputs

    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        with torch.no_grad():
            out = lm_outputs(loaded, list(examples[i:i + batch_size]), max_length, prompt)
        mask = out.labels != -100
        logits = out.logits[mask].float()  # only target positions: [T, V], not [B, L, V]
        logp = torch.log_softmax(logits, -1).gather(-1, out.labels[mask].unsqueeze(-1))
        total -= float(logp.sum())
        count += int(mask.sum())
    return total / count if count else None


def final_answer_text(text: str) -> str:
    """A generated solution in our training format ends `#### N`: score the part after it when present."""
    return text.split("####")[-1] if "####" in text else text
