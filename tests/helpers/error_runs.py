"""Helpers shared by several test files."""

from __future__ import annotations

import json

import pytest

from kd_analysis.error_analysis.explain import Explanation
from kd_analysis.runs import RunStore

EVIL = "<script>alert('x')</script>"


def explanation(run_id: str, example_id: str) -> Explanation:
    words = [
        {"text": EVIL, "score": 0.9, "segment": "question", "index": 0},
        {"text": "apple", "score": -0.4, "segment": "choice A", "index": 1},
    ]
    attr = {
        "example_id": example_id,
        "method": "saliency",
        "target": 0,
        "words": words,
        "tokens": [],
        "target_label": "apple",
        "predicted_label": "apple",
        "gold_label": "apple",
        "correct": True,
    }
    return Explanation(
        run_id=run_id,
        example_id=example_id,
        method="input_x_gradient",
        target="predicted",
        attributions={"teacher": attr, "student": {**attr, "words": words[::-1]}},
        token_logprobs={"teacher": [[" 3", -0.1], ["<eos>", -0.5]], "student": [[" 3", -2.3], ["<eos>", -0.4]]},
        reads={"teacher": "the example as is"},
        created="2026-11-30T00:00:00+00:00",
    )


RUN, OTHER = "test-mc-kl", "test-mc-ce"


PATTERN = [(True, True)] * 5 + [(True, False)] * 4 + [(False, True)] + [(False, False)] * 2


CHOICES = ["apple", "chair", "river", "piano"]


def page_records(run_id: str, pattern) -> list[dict]:
    rows = []
    for i, (t_ok, s_ok) in enumerate(pattern):
        gold = i % 4
        for role, ok, step in (("teacher", t_ok, 0), ("student", s_ok, 50)):
            pred = gold if ok else (gold + 1) % 4
            probs = [0.1] * 4
            probs[pred] = 0.7
            rows.append(
                {
                    "run_id": run_id,
                    "data": "demo:mcq",
                    "role": role,
                    "step": step,
                    "example_id": f"ex-{i:02d}",
                    "gold": gold,
                    "prediction": pred,
                    "correct": ok,
                    "text": f"Question {i}: which word is {'number ' + str(i) if i % 3 == 0 else 'a thing'}?",
                    "choices": CHOICES,
                    "probs": probs,
                    "p_gold": probs[gold],
                    "p_pred": 0.7,
                    "kl": None if role == "teacher" else 0.05 * i,
                    "text_tokens": 8 + i % 5,
                }
            )
    return rows


@pytest.fixture
def error_store(run_root):

    store = RunStore(run_root)
    for run_id, pattern in ((RUN, PATTERN), (OTHER, [(t, not s) for t, s in PATTERN])):
        run = store.create("train", {"data": "demo:mcq", "name": run_id}, run_id=run_id, state="finished")
        with open(run.path / "predictions.jsonl", "w", encoding="utf-8") as fh:
            for row in page_records(run_id, pattern):
                fh.write(json.dumps(row) + "\n")
    store.create("train", {"data": "demo:mcq"}, run_id="test-no-records", state="finished")
    return store
