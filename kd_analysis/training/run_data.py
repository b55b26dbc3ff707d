"""What a run trains and evaluates on: the train/held-out split, the task check, the few-label regime (which examples keep their labels) and token counts for the length checks."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.training.config import TrainConfig


def split_examples(examples: Sequence[Example], cfg: TrainConfig) -> tuple[list[Example], list[Example]]:
    """Deterministic shuffle by split_seed (else seed), then eval_size held out (at most half the set);
    train_size caps the rest."""
    items = list(examples)
    random.Random(cfg.seed if cfg.split_seed is None else cfg.split_seed).shuffle(items)
    n_eval = min(cfg.eval_size, max(len(items) // 2, 1))  # never more than half: the rest must train
    evals, train = items[:n_eval], items[n_eval:]
    if cfg.train_size:
        train = train[: cfg.train_size]
    if not train:
        raise KDLensError(f"{cfg.data} has too few examples to train on ({len(items)})")
    return train, evals


def check_task(task: str, examples: Sequence[Example], data: str) -> None:
    if task == "multiple_choice" and any(not ex.choices or ex.label is None for ex in examples):
        raise KDLensError(f"multiple-choice training needs choices and a gold answer in every example of {data}")
    if task == "classification" and any(ex.label is None for ex in examples):
        raise KDLensError(f"classification training needs a label in every example of {data}")
    if task in ("causal_lm", "seq2seq") and any(ex.answer is None for ex in examples):
        raise KDLensError(f"generation training needs an answer in every example of {data}")


def few_labels(cfg: TrainConfig, train_set: list[Example], task: str) -> tuple[list[Example], set[str] | None, str]:
    """The few-label regime's training set, the ids that keep their labels, and the log line saying so."""
    if not cfg.labels:
        return train_set, None, ""
    if task not in ("classification", "multiple_choice"):
        raise KDLensError(f"labels (few-label regime) works for classification and multiple choice, not {task}")
    if cfg.labels > len(train_set):  # taking the first `labels` would silently keep fewer than the user asked
        raise KDLensError(
            f"labels is {cfg.labels} but the training set has {len(train_set)} examples; "
            "name at most that many labelled examples"
        )
    labelled = {ex.id for ex in train_set[: cfg.labels]}
    if not cfg.kd_terms and not cfg.rationales:  # nothing learns from unlabelled inputs: train on the labels alone
        return (
            train_set[: cfg.labels],
            labelled,
            f"few labels: {len(labelled)} labelled examples, no transfer set (CE only)",
        )
    return (
        train_set,
        labelled,
        (
            f"few labels: {len(labelled)} labelled examples + {len(train_set) - len(labelled)} "
            "unlabelled ones that only the distillation terms see"
        ),
    )


def text_tokens(tokenizer, examples) -> dict[str, int]:
    """Tokens in each example's text alone (no prompt, choices or special tokens), by example id."""
    texts = [ex.text for ex in examples]
    if not texts:
        return {}
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return {str(ex.id): len(t) for ex, t in zip(examples, ids)}


def over_length(tokenizer, examples, max_length: int) -> int:
    """Examples whose text alone is longer than `max_length` tokens: a lower bound on the inputs a run cuts
    (prompts, choices and answers only add tokens), so the warning it feeds is never an overstatement."""
    return sum(n > max_length for n in text_tokens(tokenizer, examples).values())


def prepare_examples(cfg: TrainConfig, task: str, tokenizer, say: Callable[[str], None], warn: Callable[[str], None]):
    """(train set, held-out set, the ids that keep their labels): the data set split, checked against the task,
    cut to the few-label regime when asked, with warnings for a shrunk held-out set and over-long texts."""
    from kd_analysis.data.sources import load_dataset

    everything = load_dataset(cfg.data).examples
    train_set, eval_set = split_examples(everything, cfg)
    check_task(task, train_set + eval_set, cfg.data)
    train_set, labelled, few = few_labels(cfg, train_set, task)
    say(f"data {cfg.data}: {len(train_set)} train / {len(eval_set)} eval examples, task {task}")
    if len(eval_set) < cfg.eval_size:  # at most half the set is held out: say so where the run's warnings go
        warn(
            f"eval_size is {cfg.eval_size} but {cfg.data} has {len(everything)} examples, so "
            f"{len(eval_set)} were held out (at most half the set, the rest trains)"
        )
    if few:
        say(few)
    long = over_length(tokenizer, train_set + eval_set, cfg.max_length)
    if long:
        warn(
            f"at least {long} of {len(train_set) + len(eval_set)} examples have a text longer than "
            f"max_length ({cfg.max_length} tokens) and are cut on the right; raise max_length to keep "
            "their ends (choices, answer cue)"
        )
    return train_set, eval_set, labelled
