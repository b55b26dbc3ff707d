"""Evaluation: accuracy for classification and multiple choice, final-number exact match for generation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from kd_analysis.data.answers import is_correct
from kd_analysis.data.example import Example
from kd_analysis.models.scoring import choice_scores, class_logits, mc_prompt


def evaluate(
    loaded,
    examples: Sequence[Example],
    cfg,
    unwrap: Callable | None = None,
    prompt: Callable[[Example], str] | None = None,
    records: list | None = None,
    teacher_probs: dict[str, list[float]] | None = None,
    teacher_lm: tuple[Any, Callable | None] | None = None,
    on_token: Callable[[int, int, int, int], None] | None = None,
) -> dict[str, Any]:
    """Aggregate metrics; with `records` (a list), also one `ExampleRecord` per example appended to it
    (`teacher_probs` by example id adds KL(teacher ‖ model) to classification and multiple-choice records;
    `teacher_lm` = (teacher, its prompt) adds it to generation records, per gold-answer token). `on_token` hears
    every generated token of a generation task (`kd_analysis.models.generation.TokenHook`)."""
    from kd_analysis.training.choice_records import choice_records

    if not examples:
        return {}
    model = loaded.model
    was_training = model.training
    model.eval()
    try:
        if loaded.task in ("classification", "multiple_choice"):
            correct = 0
            for i in range(0, len(examples), cfg.batch_size):
                chunk = list(examples[i : i + cfg.batch_size])
                with torch.no_grad():
                    out = (
                        choice_scores(loaded, chunk, cfg.max_length)
                        if loaded.task == "multiple_choice"
                        else class_logits(loaded, chunk, cfg.max_length)
                    )
                pred = out.argmax(-1).cpu()
                correct += int((pred == torch.tensor([ex.label for ex in chunk])).sum())
                if records is not None:
                    records.extend(choice_records(chunk, out, teacher_probs))
            return {"accuracy": correct / len(examples)}
        prompt = prompt or mc_prompt
        per_example: list[float | None] | None = [] if records is not None else None
        out = {"exact_match": _generation_exact_match(loaded, examples, cfg, unwrap, prompt, records, on_token)}
        if loaded.head != "seq2seq":
            out["answer_nll"] = answer_nll(loaded, examples, cfg.max_length, cfg.batch_size, prompt, per_example)
            if records is not None:
                for rec, nll in zip(records[-len(examples) :], per_example):
                    rec.ce = nll
                if teacher_lm is not None and teacher_lm[0].head != "seq2seq":
                    stats = answer_kl(
                        loaded,
                        teacher_lm[0],
                        examples,
                        cfg.max_length,
                        cfg.batch_size,
                        prompt,
                        teacher_lm[1] or mc_prompt,
                    )
                    for rec, got in zip(records[-len(examples) :], stats):
                        if got is not None:
                            rec.kl, rec.entropy, rec.teacher_entropy = got
        return out
    finally:
        if was_training:
            model.train()


def _generation_exact_match(
    loaded, examples, cfg, unwrap, prompt, records: list | None = None, on_token: Callable | None = None
) -> float:
    from kd_analysis.models.generation import generate_texts
    from kd_analysis.runs.records import generation_records

    model = unwrap(loaded.model) if unwrap else loaded.model
    texts = generate_texts(
        loaded, [prompt(ex) for ex in examples], cfg.max_new_tokens, cfg.batch_size, model=model, on_token=on_token
    )
    parsed = [final_answer_text(t) for t in texts]
    correct = [is_correct(a, ex.answer) for a, ex in zip(parsed, examples)]
    if records is not None:
        records.extend(generation_records(examples, texts, [a.strip() for a in parsed], correct))
    return sum(correct) / len(examples)


def answer_nll(
    loaded,
    examples: Sequence[Example],
    max_length: int,
    batch_size: int,
    prompt: Callable[[Example], str],
    per_example: list | None = None,
) -> float | None:
    """Mean negative log-likelihood per token of the gold target (worked solution, `#### N`, end of text),
    teacher-forced after the prompt; None when truncation left no target token. Exact match on a few dozen
    questions moves in steps of several points; this moves with every step of training, so short runs can
    still be told apart. `per_example` (a list) receives each example's own mean NLL per token (None: no
    target token left)."""
    from kd_analysis.training.batches import lm_outputs

    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        with torch.no_grad():
            out = lm_outputs(loaded, list(examples[i : i + batch_size]), max_length, prompt)
        mask = out.labels != -100
        logits = out.logits[mask].float()  # only target positions: [T, V], not [B, L, V]
        logp = torch.log_softmax(logits, -1).gather(-1, out.labels[mask].unsqueeze(-1)).squeeze(-1)
        total -= float(logp.sum())
        count += int(mask.sum())
        if per_example is not None:
            rows = mask.nonzero()[:, 0]  # the example each target token belongs to, in mask order
            for b in range(mask.shape[0]):
                mine = logp[rows == b]
                per_example.append(float(-mine.mean()) if len(mine) else None)
    return total / count if count else None


def answer_kl(
    student,
    teacher,
    examples: Sequence[Example],
    max_length: int,
    batch_size: int,
    prompt: Callable[[Example], str],
    teacher_prompt: Callable[[Example], str],
) -> list[tuple[float, float, float] | None]:
    """Per example: (KL(teacher ‖ student), student entropy, teacher entropy), each the mean over the gold-answer
    tokens both models score, teacher-forced after each model's own prompt (a primed teacher's longer prompt keeps
    the same answer tokens as the student, as in training). None where the two do not score the same token ids
    (different tokenizers or vocabularies: no token-level KL exists)."""
    from kd_analysis.training.batches import lm_outputs, prompt_and_target

    out: list[tuple[float, float, float] | None] = []
    for i in range(0, len(examples), batch_size):
        chunk = list(examples[i : i + batch_size])
        keep, same = [], []
        for ex in chunk:
            sp, st = prompt_and_target(student.tokenizer, ex, prompt)
            tp, tt = prompt_and_target(teacher.tokenizer, ex, teacher_prompt)
            k = max(0, min(len(st), max_length - len(sp), len(tt), max_length - len(tp)))
            keep.append(k)
            same.append(st[:k] == tt[:k])
        with torch.no_grad():
            s_out = lm_outputs(student, chunk, max_length, prompt, keep_targets=keep)
            t_out = lm_outputs(teacher, chunk, max_length, teacher_prompt, keep_targets=keep)
        if s_out.logits.shape[-1] != t_out.logits.shape[-1]:
            out.extend([None] * len(chunk))
            continue
        for b in range(len(chunk)):
            s_mask, t_mask = s_out.labels[b] != -100, t_out.labels[b] != -100
            if not same[b] or not keep[b] or int(s_mask.sum()) != int(t_mask.sum()):
                out.append(None)
                continue
            # float64: a KL near 0 is the difference of two cross-entropies near log V, and float32 rounds each to
            # ~1e-7 (0.2% of a KL of 8e-5 on the tiny test pair, more on a large vocabulary); the rows are few
            s_logp = torch.log_softmax(s_out.logits[b][s_mask].double(), -1)
            t_logp = torch.log_softmax(t_out.logits[b][t_mask].double(), -1)
            t_p = t_logp.exp()
            kl = (t_p * (t_logp - s_logp)).sum(-1).clamp_min(0).mean()  # rounding can dip a hair below 0
            s_ent = -(s_logp.exp() * s_logp).sum(-1).mean()
            t_ent = -(t_p * t_logp).sum(-1).mean()
            out.append((float(kl), float(s_ent), float(t_ent)))
    return out


def final_answer_text(text: str) -> str:
    """A generated solution in our training format ends `#### N`: score the part after it when present."""
    return text.split("####")[-1] if "####" in text else text
