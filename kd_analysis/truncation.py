"""Long inputs: how many tokens a model may read, and cutting a question from the left to fit.

The limit is the smaller of a user cap (`max_tokens`, moderate by default for speed) and the model's real maximum
(its config's position count, or the tokenizer's `model_max_length` when that is a real number and not the
"no limit" sentinel). An example longer than the limit loses the start of its question (or text): the end of
the prompt, where the answer choices and the answer cue ("Answer:") sit, always stays, so the gold answer is
still part of the input. Every cut is reported: `Cut.note()` says how many tokens were kept, of how many, and
whether the cap or the model's maximum set the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kd_analysis.exceptions import KDLensError

DEFAULT_CAP = 512
_SANE = 10**6  # tokenizers without a limit report 1e30; configs never hold more than this many positions
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def model_max_tokens(model, tokenizer=None) -> int | None:
    """The most tokens `model` can read (None when neither its config nor its tokenizer says)."""
    cfg = getattr(model, "config", model)
    values = [getattr(cfg, k, None) for k in _POSITION_KEYS]
    found = [int(v) for v in values if isinstance(v, int) and not isinstance(v, bool) and 0 < v < _SANE]
    if found and "roberta" in str(getattr(cfg, "model_type", "")):
        found = [v - 2 for v in found]  # RoBERTa's positions start after the padding index
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < _SANE:
        found.append(int(tok_max))
    return min(found) if found else None


def check_cap(cap) -> int:
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise KDLensError(f"max tokens must be a positive whole number (got {cap!r})")
    return cap


@dataclass(frozen=True)
class Limit:
    """The tokens one input may hold: the cap or the model's maximum, whichever is smaller."""

    tokens: int
    cap: int
    model_max: int | None

    @property
    def by_cap(self) -> bool:
        return self.model_max is None or self.cap < self.model_max

    def describe(self) -> str:
        """'512 tokens (cap; model maximum 8,192)' or '128 tokens (model maximum; cap 512)'."""
        if self.model_max is None:
            return f"{self.tokens:,} tokens (cap; model maximum unknown)"
        if self.by_cap:
            return f"{self.tokens:,} tokens (cap; model maximum {self.model_max:,})"
        return f"{self.tokens:,} tokens (model maximum; cap {self.cap:,})"


def token_limit(loaded, cap: int = DEFAULT_CAP) -> Limit:
    """The limit for a loaded model (anything with `.model` and `.tokenizer`) under a user cap."""
    cap = check_cap(cap)
    top = model_max_tokens(loaded.model, loaded.tokenizer)
    return Limit(min(cap, top) if top else cap, cap, top)


@dataclass(frozen=True)
class Cut:
    """One example's cut: `kept` of `total` tokens of `where` (the question), the end kept."""

    kept: int
    total: int
    limit: Limit
    where: str = "question"

    def note(self) -> str:
        return (
            f"{self.where} cut from the left: kept the last {self.kept:,} of {self.total:,} tokens; "
            f"input truncated to {self.limit.describe()}"
        )

    def to_dict(self) -> dict:
        return {
            "where": self.where,
            "kept": self.kept,
            "total": self.total,
            "limit": self.limit.tokens,
            "cap": self.limit.cap,
            "model_max": self.limit.model_max,
            "note": self.note(),
        }


def _offsets(tokenizer, text: str) -> list[tuple[int, int]] | None:
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, ValueError, TypeError):
        return None
    return [tuple(o) for o in enc["offset_mapping"]]


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0


def _suffix(tokenizer, text: str, offsets, keep: int) -> str:
    """The end of `text` from its last `keep` tokens, moved forward to a word start so no word is shown in part."""
    if offsets is None:  # a slow tokenizer: decode the last tokens
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return tokenizer.decode(ids[-keep:]).strip()
    start = offsets[len(offsets) - keep][0]
    if 0 < start < len(text) and not text[start].isspace() and not text[start - 1].isspace():
        nxt = next((i for i in range(start, len(text)) if text[i].isspace()), None)
        if nxt is not None and text[nxt:].strip():
            start = nxt
    return text[start:].strip()


def fit_left(
    tokenizer, text: str, length: Callable[[str], int], limit: Limit, where: str = "question"
) -> tuple[str, Cut | None]:
    """The longest end of `text` for which `length(kept)` (the whole input's tokens, with `kept` in place of
    `text`) fits `limit`, and the cut (None when nothing was cut). A clear error when even an empty `text`
    leaves the rest of the input over the limit."""
    n = length(text)
    if n <= limit.tokens:
        return text, None
    offsets = _offsets(tokenizer, text)
    total = len(offsets) if offsets is not None else _count(tokenizer, text)
    keep = limit.tokens - (n - total)
    for _ in range(12):
        if keep < 1:
            break
        kept = _suffix(tokenizer, text, offsets, min(keep, total))
        m = length(kept)
        if m <= limit.tokens:
            return kept, Cut(_count(tokenizer, kept), total, limit, where)
        keep -= max(1, m - limit.tokens)
    rest = length("")
    raise KDLensError(
        f"the rest of the input without its {where} (choices, answer cue) takes {rest:,} tokens, "
        f"more than the limit of {limit.describe()}; raise max tokens"
    )


def keep_ends(ids: list[int], special_mask: list[int], limit: int) -> list[int]:
    """Cut a token id list from the left to `limit` ids, keeping its leading and trailing special tokens
    ([CLS] / <s> at the start, [SEP] at the end) and the end of its content."""
    if len(ids) <= limit:
        return list(ids)
    lead = 0
    while lead < len(ids) and special_mask[lead]:
        lead += 1
    trail = 0
    while trail < len(ids) - lead and special_mask[len(ids) - 1 - trail]:
        trail += 1
    if lead + trail >= limit:
        return list(ids[-limit:])
    body = ids[lead : len(ids) - trail]
    return list(ids[:lead]) + list(body[len(body) - (limit - lead - trail) :]) + list(ids[len(ids) - trail :])
