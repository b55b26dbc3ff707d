"""What the teacher does under each strategy, cached per (model, template, example) so reruns are instant.

Two views, both ours (Goyal et al.'s teacher saved full-vocabulary logits of one forward pass over prompt +
question, without the answer, and generated no text):
- scores: the teacher's log-probability of the gold answer tokens after the primed prompt (one forward pass),
  summed and per token;
- generations (optional): its greedy answer, the number parsed from it by the scoring rules of the authors'
  README (the first \\boxed{}; the first line's number when it is the only one or all its numbers are equal; the
  number after "the answer is"; the last number), and whether it is right. An answer with no parseable number
  counts as wrong and says so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from kd_analysis.data.answers import extract_number, is_correct
from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.fileio import append_jsonl, read_jsonl
from kd_analysis.prompting.prompts import format_prompt, render_template

MAX_PROMPT_TOKENS = 1024


@dataclass
class TeacherOutput:
    example_id: str
    strategy: str
    prompt_tokens: int
    answer_tokens: int
    answer_logprob: float | None = None  # sum over the gold answer's tokens
    answer_logprob_per_token: float | None = None
    generated: str | None = None
    predicted: str | None = None  # parsed final number; None = no parseable number (counted wrong)
    correct: bool | None = None
    truncated: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _fingerprint(loaded) -> str:
    """Model identity for the cache: its source, plus file times for a local folder (retrained = new key)."""
    spec = loaded.spec
    parts = [spec.source, str(spec.revision), str(loaded.task)]
    folder = Path(spec.source)
    if folder.is_dir():
        parts += [f"{p.name}:{p.stat().st_mtime_ns}" for p in sorted(folder.iterdir()) if p.is_file()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class OutputCache:
    """One JSONL file per (model, template); lines keyed by example id and what was computed."""

    def __init__(self, root: Path | None):
        self.root = root

    def _file(self, loaded, template: str) -> Path | None:
        if self.root is None:
            return None
        digest = hashlib.sha256(template.encode()).hexdigest()[:16]
        return self.root / _fingerprint(loaded) / f"{digest}.jsonl"

    def load(self, loaded, template: str, kind: str) -> dict[str, dict]:
        f = self._file(loaded, template)
        if f is None or not f.exists():
            return {}
        return {row["example_id"]: row for row in read_jsonl(f) if row.get("kind") == kind}

    def save(self, loaded, template: str, kind: str, rows: list[dict]) -> None:
        f = self._file(loaded, template)
        if f is None:
            return
        f.parent.mkdir(parents=True, exist_ok=True)
        for row in rows:
            append_jsonl(f, {"kind": kind, **row})


def default_cache() -> OutputCache:
    from kd_analysis.locations import cache_root

    return OutputCache(cache_root() / "priming")


def _prompts(loaded, examples: Sequence[Example], template: str) -> list[str]:
    return [format_prompt(loaded.tokenizer, render_template(template, ex)) for ex in examples]


def score_answers(
    loaded,
    examples: Sequence[Example],
    template: str,
    strategy: str,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> list[TeacherOutput]:
    """Log-probability of each gold answer (worked solution and `#### N`) after the primed prompt."""
    from kd_analysis.models.scoring import pad_right
    from kd_analysis.training.batches import lm_target

    tok = loaded.tokenizer
    out = []
    for i in range(0, len(examples), batch_size):
        chunk = list(examples[i : i + batch_size])
        rows, meta = [], []
        for ex, prompt in zip(chunk, _prompts(loaded, chunk, template)):
            p = tok(prompt, add_special_tokens=True)["input_ids"]
            t = tok(lm_target(ex), add_special_tokens=False)["input_ids"]
            truncated = len(p) > MAX_PROMPT_TOKENS
            p = p[-MAX_PROMPT_TOKENS:]  # keep the end: the question and the opened answer turn
            rows.append(p + t)
            meta.append((len(p), len(t), truncated))
        ids, mask = pad_right(rows, tok.pad_token_id, loaded.device)
        with torch.no_grad():
            logp = torch.log_softmax(loaded.model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        for b, (ex, (n_p, n_t, truncated)) in enumerate(zip(chunk, meta)):
            tgt = ids[b, n_p : n_p + n_t]
            lp = logp[b, n_p - 1 : n_p + n_t - 1].gather(-1, tgt.unsqueeze(-1)).sum().item() if n_t else None
            out.append(TeacherOutput(ex.id, strategy, n_p, n_t, lp, lp / n_t if n_t else None, truncated=truncated))
        if progress:
            progress(len(out), len(examples))
    return out


def generate_answers(
    loaded,
    examples: Sequence[Example],
    template: str,
    strategy: str,
    max_new_tokens: int = 96,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    on_token: Callable[[int, int, int, int], None] | None = None,
) -> list[TeacherOutput]:
    from kd_analysis.models.generation import generate_texts

    prompts = _prompts(loaded, examples, template)
    texts = generate_texts(loaded, prompts, max_new_tokens, batch_size, progress=progress, on_token=on_token)
    out = []
    for ex, prompt, text in zip(examples, prompts, texts):
        n_p = len(loaded.tokenizer(prompt)["input_ids"])
        out.append(
            TeacherOutput(
                ex.id,
                strategy,
                n_p,
                0,
                generated=text,
                predicted=extract_number(text),
                correct=is_correct(text, ex.answer) if ex.answer is not None else None,
            )
        )
    return out


def check_gold_answers(examples: Sequence[Example], source: str) -> list[Example]:
    """Priming scores the gold answer, so every example needs one; returns the examples when they do."""
    if any(ex.answer is None for ex in examples):
        raise KDLensError(f"{source} has examples without a gold answer; priming needs GSM8K-style data")
    return list(examples)


def teacher_outputs(
    loaded,
    examples: Sequence[Example],
    templates: dict[str, str],
    *,
    generate: bool = False,
    max_new_tokens: int = 96,
    cache: OutputCache | None = None,
    batch_size: int = 8,
    progress: Callable[[str, int, int], None] | None = None,
    on_token: Callable[[str, int, int, int, int], None] | None = None,
) -> dict[str, list[TeacherOutput]]:
    """Strategy -> one output per example (scores, plus generations when asked); cached work is not redone.
    `progress(strategy, done, total)` after each batch; `on_token(strategy, done, total, tokens, budget)` at every
    generated token (a long batch says where it is, and a hook that raises stops it there)."""
    cache = cache if cache is not None else default_cache()
    say = progress or (lambda s, i, n: None)
    result: dict[str, list[TeacherOutput]] = {}
    for strategy, template in templates.items():
        kinds = {"score": {}}
        if generate:
            kinds[f"generate:{max_new_tokens}"] = {}
        for kind in kinds:
            found = cache.load(loaded, template, kind)
            todo = [ex for ex in examples if ex.id not in found]
            if todo:
                say(strategy, 0, len(todo))
                if kind == "score":
                    new = score_answers(
                        loaded, todo, template, strategy, batch_size, progress=lambda i, n, s=strategy: say(s, i, n)
                    )
                else:
                    new = generate_answers(
                        loaded,
                        todo,
                        template,
                        strategy,
                        max_new_tokens,
                        batch_size,
                        progress=lambda i, n, s=strategy: say(s, i, n),
                        on_token=None if on_token is None else (lambda i, n, t, b, s=strategy: on_token(s, i, n, t, b)),
                    )
                rows = [o.to_dict() for o in new]
                cache.save(loaded, template, kind, rows)
                found.update({r["example_id"]: r for r in rows})
            kinds[kind] = found
        merged = []
        for ex in examples:
            row = dict(kinds["score"][ex.id])
            for kind, found in kinds.items():
                if kind != "score":
                    g = found[ex.id]
                    row.update(generated=g["generated"], predicted=g["predicted"], correct=g["correct"])
            row.pop("kind", None)
            row["strategy"] = strategy
            merged.append(TeacherOutput(**row))
        result[strategy] = merged
    return result


def _wilson_text(k: int, n: int) -> str:
    from kd_analysis.stats.intervals import wilson_interval

    lo, hi = wilson_interval(k / n, n)
    return f"{lo:.0%}–{hi:.0%} (n = {n})"


def summarise(outputs: dict[str, list[TeacherOutput]]) -> list[dict]:
    """Per strategy: mean gold-answer log-probability per token, and accuracy when answers were generated."""
    rows = []
    for strategy, outs in outputs.items():
        lps = [o.answer_logprob_per_token for o in outs if o.answer_logprob_per_token is not None]
        gen = [o for o in outs if o.generated is not None]
        rows.append(
            {
                "strategy": strategy,
                "examples": len(outs),
                "gold log-prob / token": sum(lps) / len(lps) if lps else None,
                "accuracy": sum(bool(o.correct) for o in gen) / len(gen) if gen else None,
                "95% CI": _wilson_text(sum(bool(o.correct) for o in gen), len(gen)) if gen else None,
                "unparseable": sum(o.predicted is None for o in gen) if gen else None,
                "mean prompt tokens": sum(o.prompt_tokens for o in outs) / len(outs) if outs else None,
            }
        )
    return rows


def to_jsonl(outputs: dict[str, list[TeacherOutput]]) -> str:
    return "".join(json.dumps(o.to_dict()) + "\n" for outs in outputs.values() for o in outs)
