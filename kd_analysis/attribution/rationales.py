"""From token attributions to rationales (top-k words) and their overlap with the gold answer.

Overlap definitions (switchable, all over word positions of the input):
- any: at least one rationale word lies in an occurrence of the gold answer text (our reading of the 68%);
- fraction: share of rationale words inside the answer;
- f1: token-F1 between rationale positions and answer positions;
- iou: intersection over union of the same sets.
An example whose answer text does not occur in the input is undefined: excluded, never counted as 0.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from kd_analysis.attribution.methods import METHODS
from kd_analysis.attribution.targets import MAX_TOKENS, Target, build_target
from kd_analysis.exceptions import KDLensError

DEFINITIONS = ("any", "fraction", "f1", "iou")
PAPER_OVERLAP = 0.68  # Ballout et al. 2024, multiple-choice data
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "by",
        "with",
        "from",
        "and",
        "or",
        "but",
        "if",
        "then",
        "than",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "has",
        "have",
        "had",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "which",
        "who",
        "whom",
        "what",
        "when",
        "where",
        "why",
        "how",
        "not",
        "no",
        "nor",
        "so",
        "too",
        "very",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "i",
        "you",
        "he",
        "she",
        "we",
        "they",
        "me",
        "him",
        "her",
        "us",
        "them",
        "my",
        "your",
        "his",
        "our",
        "their",
        "mine",
        "yours",
        "also",
        "just",
        "only",
        "such",
        "own",
        "same",
        "other",
        "into",
        "about",
        "over",
        "under",
        "again",
        "further",
        "once",
        "more",
        "most",
        "some",
        "any",
        "each",
        "few",
        "all",
        "both",
        "either",
        "neither",
        "one",
    ]
)
_PUNCT = set(string.punctuation) | {"’", "‘", "“", "”", "…", "–", "—"}


def normalise(word: str) -> str:
    return word.strip().strip("".join(_PUNCT)).lower()


@dataclass
class Word:
    text: str
    score: float
    segment: str
    index: int


@dataclass
class Attribution:
    example_id: str
    method: str
    target: str | int  # "gold", "predicted", or the choice index explained
    words: list[Word]
    tokens: list[tuple[str, float, str]]  # (token, score, segment)
    target_label: str
    predicted_label: str
    gold_label: str | None
    correct: bool | None
    delta: float | None = None
    notes: list[str] = field(default_factory=list)
    truncated: bool = False  # the input was cut (from the left of the question) to fit the token limit; see notes
    prediction_computed: bool = True  # False: a free-text gold answer was scored, the model answered nothing here

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attribution:
        d = dict(d)
        d["words"] = [Word(**w) for w in d["words"]]
        d["tokens"] = [tuple(t) for t in d["tokens"]]
        # saved before the flag existed: their cut was only in the notes ("input truncated to the model's maximum")
        d.setdefault("truncated", any("truncated" in n for n in d.get("notes") or []))
        return cls(**d)


def _words_from(target: Target, scores: torch.Tensor, tokenizer) -> tuple[list[Word], list[tuple[str, float, str]]]:
    words: list[Word] = []
    tokens: list[tuple[str, float, str]] = []
    for seg in target.segments:
        groups: dict[int, list[int]] = {}
        order: list[int] = []
        for i, wid in enumerate(seg.word_ids):
            key = wid if wid is not None else -1 - i
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(i)
        for i, tok in enumerate(seg.tokens):
            r, c = seg.positions[i]
            tokens.append((tok, float(scores[r, c]), seg.name))
        for key in order:
            idx = groups[key]
            text = tokenizer.convert_tokens_to_string([seg.tokens[i] for i in idx]).strip()
            score = float(sum(scores[seg.positions[i][0], seg.positions[i][1]] for i in idx))
            if text:
                words.append(Word(text, score, seg.name, len(words)))
    return words, tokens


def attribute(
    loaded, example, *, method: str = "ig", target: str | int = "gold", max_tokens: int = MAX_TOKENS, **params
) -> Attribution:
    """Attributions of one example. `max_tokens` caps the input (the model's own maximum applies when smaller);
    a longer input loses the start of its question, and the cut is in `truncated` and `notes`."""
    if method not in METHODS:
        raise KDLensError(f"unknown attribution method {method!r}; one of {', '.join(METHODS)}")
    tgt = build_target(loaded, example, target=target, max_tokens=max_tokens)
    scores, delta = METHODS[method].fn(tgt, loaded=loaded, **params)
    words, tokens = _words_from(tgt, scores.detach().float().cpu(), loaded.tokenizer)
    return Attribution(
        example_id=example.id,
        method=method,
        target=target,
        words=words,
        tokens=tokens,
        target_label=tgt.target_label,
        predicted_label=tgt.predicted_label,
        gold_label=tgt.gold_label,
        correct=tgt.correct,
        delta=delta,
        notes=list(tgt.notes),
        truncated=tgt.truncated,
        prediction_computed=tgt.prediction_computed,
    )


def attribute_many(
    loaded,
    examples: Sequence,
    *,
    method: str = "ig",
    target: str = "gold",
    max_tokens: int = MAX_TOKENS,
    progress: Callable[[int, int], None] | None = None,
    on_each: Callable[[Attribution], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    **params,
) -> list[Attribution]:
    """`attribute` for each example; `on_each` sees every attribution as it is made (a job saves it at once),
    and `should_stop` ends the loop between examples with InterruptedError."""
    out = []
    for i, ex in enumerate(examples):
        if should_stop and should_stop():
            raise InterruptedError(f"cancelled after {i} of {len(examples)} examples")
        out.append(attribute(loaded, ex, method=method, target=target, max_tokens=max_tokens, **params))
        if on_each:
            on_each(out[-1])
        if progress:
            progress(i + 1, len(examples))
    return out


@dataclass
class Rationale:
    words: list[str]
    indices: list[int]  # word positions in the input, original order
    note: str | None = None

    @property
    def text(self) -> str:
        return " ".join(self.words)


def candidates(attr: Attribution, filter_stopwords: bool = True, filter_punct: bool = True) -> list[Word]:
    """The words a rationale may use: punctuation and stopwords left out when filtered."""
    return [
        w
        for w in attr.words
        if not (filter_punct and not normalise(w.text)) and not (filter_stopwords and normalise(w.text) in STOPWORDS)
    ]


def select_rationale(
    attr: Attribution,
    k: int | None = 5,
    *,
    fraction: float | None = None,
    filter_stopwords: bool = True,
    filter_punct: bool = True,
    absolute: bool = False,
) -> Rationale:
    """The top-k (or top fraction of) words by attribution, kept in their original order."""
    pool = candidates(attr, filter_stopwords, filter_punct)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise KDLensError(f"fraction must be in (0, 1] (got {fraction})")
        k = max(1, round(fraction * len(pool)))
    if k is None or k < 1:
        raise KDLensError(f"k must be a positive number of words (got {k})")
    note = None
    if k > len(pool):
        note = f"k = {k} is more than the {len(pool)} candidate words; all of them are used"
        k = len(pool)
    key = (lambda w: abs(w.score)) if absolute else (lambda w: w.score)
    chosen = sorted(sorted(pool, key=key, reverse=True)[:k], key=lambda w: w.index)
    return Rationale([w.text for w in chosen], [w.index for w in chosen], note)


def answer_positions(attr: Attribution) -> set[int] | None:
    """Word positions covered by occurrences of the gold answer text in the input; None when it is absent."""
    gold = [normalise(w) for w in (attr.gold_label or "").split()]
    gold = [g for g in gold if g]
    if not gold:
        return None
    words = [normalise(w.text) for w in attr.words]
    hits: set[int] = set()
    for i in range(len(words) - len(gold) + 1):
        if words[i : i + len(gold)] == gold:
            hits.update(attr.words[j].index for j in range(i, i + len(gold)))
    return hits or None


@dataclass
class Overlap:
    defined: bool
    any: float | None = None
    fraction: float | None = None
    f1: float | None = None
    iou: float | None = None

    def get(self, definition: str) -> float | None:
        return getattr(self, definition)


def overlap(attr: Attribution, rationale: Rationale) -> Overlap:
    gold = answer_positions(attr)
    if gold is None or not rationale.indices:
        return Overlap(defined=False)
    chosen = set(rationale.indices)
    inter = len(chosen & gold)
    precision, recall = inter / len(chosen), inter / len(gold)
    f1 = 0.0 if inter == 0 else 2 * precision * recall / (precision + recall)
    return Overlap(True, any=float(inter > 0), fraction=precision, f1=f1, iou=inter / len(chosen | gold))


def chance_overlap(attr: Attribution, k: int, filter_stopwords: bool = True, filter_punct: bool = True) -> Overlap:
    """Expected overlap of k words drawn at random from the same candidates: the floor a rationale must beat.

    The number of answer words drawn is hypergeometric, so every definition has an exact expectation. With few
    candidates (a question plus five one-word choices) "any" is high by chance alone.
    """
    from math import comb

    gold = answer_positions(attr)
    pool = candidates(attr, filter_stopwords, filter_punct)
    if gold is None or not pool or k < 1:
        return Overlap(defined=False)
    n, k = len(pool), min(k, len(pool))
    g = sum(1 for w in pool if w.index in gold)
    out = {"any": 0.0, "fraction": 0.0, "f1": 0.0, "iou": 0.0}
    for i in range(max(0, k - (n - g)), min(k, g) + 1):
        p = comb(g, i) * comb(n - g, k - i) / comb(n, k)
        out["any"] += p * (i > 0)
        out["fraction"] += p * i / k
        out["f1"] += p * 2 * i / (k + len(gold))
        out["iou"] += p * i / (k + len(gold) - i)
    return Overlap(True, **out)


def aggregate(attrs: Sequence[Attribution], ks: Sequence[int] = (1, 3, 5, 10), **select_kw) -> list[dict[str, Any]]:
    """Mean overlap per k and definition (and its random-rationale chance level), split by whether the attributed
    model answered right, over defined examples only; "truncated" counts the examples whose input was cut."""
    rows = []
    for k in ks:
        per = [(a, overlap(a, select_rationale(a, k, **select_kw)), chance_overlap(a, k, **select_kw)) for a in attrs]
        for group, members in (
            ("all", per),
            ("answered right", [p for p in per if p[0].correct is True]),
            ("answered wrong", [p for p in per if p[0].correct is False]),
        ):
            defined = [(o, c) for _, o, c in members if o.defined]
            row = {
                "k": k,
                "group": group,
                "examples": len(members),
                "defined": len(defined),
                "undefined": len(members) - len(defined),
                "truncated": sum(a.truncated for a, _, _ in members),
            }
            for d in DEFINITIONS:
                row[d] = sum(o.get(d) for o, _ in defined) / len(defined) if defined else None
                row[f"chance {d}"] = sum(c.get(d) for _, c in defined) / len(defined) if defined else None
            rows.append(row)
    return rows
