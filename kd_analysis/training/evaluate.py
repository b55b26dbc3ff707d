"""Evaluation: accuracy for classification and multiple choice, final-number exact match for generation."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from kd_analysis.data.answers import extract_number
from kd_analysis.data.example import Example
from kd_analysis.models.scoring import choice_scores, class_logits, mc_prompt


def evaluate(loaded, examples: Sequence[Example], cfg, unwrap: Callable | None = None) -> dict[str, Any]:
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
        return {"exact_match": _generation_exact_match(loaded, examples, cfg, unwrap)}
    finally:
        if was_training:
            model.train()


def _generation_exact_match(loaded, examples, cfg, unwrap) -> float:
    model = unwrap(loaded.model) if unwrap else loaded.model
    tok = loaded.tokenizer
    hits = 0
    for ex in examples:
        enc = tok(mc_prompt(ex), return_tensors="pt").to(next(model.parameters()).device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=cfg.max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        text = tok.decode(out[0, enc["input_ids"].shape[1]:] if not model.config.is_encoder_decoder else out[0],
                          skip_special_tokens=True)
        pred = extract_number(text.split("####")[-1] if "####" in text else text)
        hits += int(pred is not None and pred == str(ex.answer))
    return hits / len(examples)
