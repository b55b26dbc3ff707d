"""What gets attributed: one example's input tokens and a differentiable score of the teacher's answer.

Every method works in embedding space: `score(embeds)` maps input embeddings to the score being explained, so
the same methods serve encoder classifiers, multiple-choice scorers and decoders:
- classifier: the logit of the target class, input = the text;
- multiple-choice head: log p(target choice | question, all choices), from one (question, choice) pair per
  choice; the input is the question followed by every choice, so the answer text is part of it;
- decoder (or seq2seq): the log-probability of the answer string after a prompt listing the choices.
The target is the gold answer or the model's prediction (`target="predicted"`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from kd_analysis.data.example import CLASS_NAMES, Example, class_label
from kd_analysis.exceptions import KDLensError
from kd_analysis.truncation import DEFAULT_CAP, Cut, Limit, fit_left, token_limit

MAX_TOKENS = DEFAULT_CAP  # the default cap; the model's own maximum applies when it is smaller


@dataclass
class Segment:
    """A run of input tokens that belongs to one text (the question, or one choice)."""

    name: str
    text: str
    tokens: list[str]
    word_ids: list[int | None]
    positions: list[tuple[int, int]]  # (row, column) of each token in the embeddings tensor


@dataclass
class Target:
    example: Example
    embeds: torch.Tensor  # [R, L, H] input embeddings (R rows: pairs for a choice head, else 1)
    score: Callable[[torch.Tensor], torch.Tensor]  # embeds [N*R, L, H] -> [N] score being explained
    segments: list[Segment]
    baseline: torch.Tensor  # [R, L, H] reference input (pad-token embeddings at content positions)
    content_mask: torch.Tensor  # [R, L] True where a segment token sits (not special tokens or padding)
    target_label: str
    predicted_label: str
    gold_label: str | None
    correct: bool | None
    truncated: bool = False
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    # False when the model's own answer was not computed: a decoder scoring one free-text gold answer has nothing
    # to choose between, so `predicted_label` is only the gold answer again
    prediction_computed: bool = True

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)


def _segment_from_encoding(name: str, text: str, enc, row: int, seq_id: int, tokenizer) -> Segment:
    ids = enc["input_ids"][row]
    seq_ids = enc.sequence_ids(row)
    word_ids = enc.word_ids(row)
    toks, wids, pos = [], [], []
    for col, (sid, wid) in enumerate(zip(seq_ids, word_ids)):
        if sid == seq_id:
            toks.append(tokenizer.convert_ids_to_tokens(int(ids[col])))
            wids.append(wid)
            pos.append((row, col))
    return Segment(name, text, toks, wids, pos)


def _embed(model, input_ids: torch.Tensor) -> torch.Tensor:
    emb = model.get_input_embeddings()
    if emb is None:
        raise KDLensError("this model exposes no input embeddings, so gradient attributions cannot be computed")
    return emb(input_ids).detach()


def _baseline(model, tokenizer, input_ids: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    base_ids = torch.where(content, torch.full_like(input_ids, pad), input_ids)
    return _embed(model, base_ids)


def mc_prompt_with_choices(ex: Example) -> str:
    opts = " ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(ex.choices or []))
    return f"Question: {ex.text}\nChoices: {opts}\nAnswer:"


def build_target(loaded, ex: Example, *, target: str | int = "gold", max_tokens: int = MAX_TOKENS) -> Target:
    """The example's target: "gold", "predicted" (the model's argmax here) or a choice/class index (e.g. the answer
    a run's own evaluation recorded). An input longer than the limit (the smaller of `max_tokens` and the model's
    maximum) loses the start of its question, never its choices or answer cue; the cut is in `truncated` and
    `notes`."""
    if target not in ("gold", "predicted") and (not isinstance(target, int) or isinstance(target, bool)):
        raise KDLensError(f"target must be 'gold', 'predicted' or a choice index (got {target!r})")
    limit = token_limit(loaded, max_tokens)
    if loaded.head == "choice_head":
        return _choice_head_target(loaded, ex, target, limit)
    if loaded.head == "class_head":
        return _class_target(loaded, ex, target, limit)
    return _lm_target(loaded, ex, target, limit)


def _fit(tok, ex: Example, length, limit: Limit, where: str = "question") -> tuple[Example, Cut | None]:
    """`ex` with its text cut from the left so that `length(text)` fits the limit."""
    from dataclasses import replace

    try:
        kept, cut = fit_left(tok, ex.text, length, limit, where)
    except KDLensError as exc:
        raise KDLensError(f"example {ex.id}: {exc}") from None
    return (replace(ex, text=kept) if cut else ex), cut


def _pick(target: str | int, gold: int | None, pred: int, count: int | None) -> int:
    """The index the target names; an index outside the choices is refused, never wrapped."""
    if isinstance(target, int):
        if count is not None and not 0 <= target < count:
            raise KDLensError(f"target index {target} is outside the {count} answers")
        return target
    return gold if target == "gold" and gold is not None else pred


def _cut_fields(cut: Cut | None) -> dict[str, Any]:
    return {"truncated": cut is not None, "notes": [cut.note()] if cut else []}


def _choice_head_target(loaded, ex, target, limit: Limit) -> Target:
    if not ex.choices:
        raise KDLensError(f"example {ex.id} has no choices; a multiple-choice model needs them")
    tok, model, dev = loaded.tokenizer, loaded.model, loaded.device
    ex, cut = _fit(tok, ex, lambda q: max(len(tok(q, c)["input_ids"]) for c in ex.choices), limit)
    enc = tok(
        [ex.text] * len(ex.choices),
        list(ex.choices),
        padding=True,
        truncation="only_first",
        max_length=limit.tokens,
        return_tensors="pt",
    )
    ids = enc["input_ids"].to(dev)
    extra = {k: v.to(dev) for k, v in enc.items() if k != "input_ids"}
    segments = [_segment_from_encoding("question", ex.text, enc, 0, 0, tok)]
    for j, c in enumerate(ex.choices):
        segments.append(_segment_from_encoding(f"choice {chr(65 + j)}", c, enc, j, 1, tok))
    content = torch.zeros_like(ids, dtype=torch.bool)
    for r in range(ids.shape[0]):
        for col, sid in enumerate(enc.sequence_ids(r)):
            content[r, col] = sid is not None
    with torch.no_grad():
        logits = model(input_ids=ids.unsqueeze(0), **{k: v.unsqueeze(0) for k, v in extra.items()}).logits[0]
    pred = int(logits.argmax())
    tgt = _pick(target, ex.label, pred, len(ex.choices))
    R = ids.shape[0]

    def score(embeds: torch.Tensor) -> torch.Tensor:
        n = embeds.shape[0] // R
        kw = {k: v.unsqueeze(0).expand(n, *v.shape).contiguous() for k, v in extra.items()}
        out = model(inputs_embeds=embeds.reshape(n, R, *embeds.shape[1:]), **kw).logits  # [n, R]
        return torch.log_softmax(out.float(), -1)[:, tgt]

    return Target(
        example=ex,
        embeds=_embed(model, ids),
        score=score,
        segments=segments,
        baseline=_baseline(model, tok, ids, content),
        content_mask=content,
        target_label=ex.choices[tgt],
        predicted_label=ex.choices[pred],
        gold_label=ex.answer
        or (ex.choices[ex.label] if ex.label is not None and 0 <= ex.label < len(ex.choices) else None),
        correct=(pred == ex.label) if ex.label is not None else None,
        **_cut_fields(cut),
        extra={"forward_kwargs": extra, "input_ids": ids},
    )


def _class_target(loaded, ex, target, limit: Limit) -> Target:
    tok, model, dev = loaded.tokenizer, loaded.model, loaded.device
    ex, cut = _fit(tok, ex, lambda q: len(tok(q)["input_ids"]), limit, where="text")
    enc = tok(ex.text, truncation=True, max_length=limit.tokens, return_tensors="pt")
    ids = enc["input_ids"].to(dev)
    extra = {k: v.to(dev) for k, v in enc.items() if k != "input_ids"}
    seg = _segment_from_encoding("text", ex.text, enc, 0, 0, tok)
    content = torch.tensor([[sid is not None for sid in enc.sequence_ids(0)]], device=dev)
    with torch.no_grad():
        logits = model(input_ids=ids, **extra).logits[0]
    pred = int(logits.argmax())
    tgt = _pick(target, ex.label, pred, int(logits.shape[-1]))
    # the data's names first (carried in meta by callers that loaded the whole set), then the checkpoint's
    names = {**(getattr(model.config, "id2label", None) or {}), **ex.meta.get(CLASS_NAMES, {})}

    def score(embeds: torch.Tensor) -> torch.Tensor:
        n = embeds.shape[0]
        kw = {k: v.expand(n, *v.shape[1:]).contiguous() for k, v in extra.items()}
        return torch.log_softmax(model(inputs_embeds=embeds, **kw).logits.float(), -1)[:, tgt]

    # the data's name for the gold class, the checkpoint's for the others (a generic LABEL_k shows as k)
    label_name = lambda i: class_label(i, ex.answer if i == ex.label else names.get(i))  # noqa: E731
    return Target(
        example=ex,
        embeds=_embed(model, ids),
        score=score,
        segments=[seg],
        baseline=_baseline(model, tok, ids, content),
        content_mask=content,
        target_label=label_name(tgt),
        predicted_label=label_name(pred),
        gold_label=label_name(ex.label) if ex.label is not None else ex.answer,  # a file's labels name it
        correct=(pred == ex.label) if ex.label is not None else None,
        **_cut_fields(cut),
        extra={"forward_kwargs": extra},
    )


def _prompt_pieces(ex: Example) -> tuple[str, list[tuple[str, str, int]]]:
    """The decoder prompt and where the question and each choice sit in it: (segment name, text, char start)."""
    pieces: list[tuple[str, str, int]] = []
    prompt = "Question: "
    pieces.append(("question", ex.text, len(prompt)))
    prompt += ex.text
    if ex.choices:
        prompt += "\nChoices:"
        for i, c in enumerate(ex.choices):
            prompt += f" ({chr(65 + i)}) "
            pieces.append((f"choice {chr(65 + i)}", c, len(prompt)))
            prompt += c
    return prompt + "\nAnswer:", pieces


def _lm_target(loaded, ex, target, limit: Limit) -> Target:
    """Decoder: log p(answer string | prompt). Choices are listed in the prompt so the answer text is input.
    A long prompt loses the start of its question; the choices, the "Answer:" cue and room for the longest
    answer always stay."""
    from dataclasses import replace

    from kd_analysis.models.scoring import continuation_logprobs

    tok, model, dev = loaded.tokenizer, loaded.model, loaded.device
    candidates = list(ex.choices) if ex.choices else ([ex.answer] if ex.answer else [])
    if not candidates or all(not str(c).strip() for c in candidates):
        raise KDLensError(f"example {ex.id} has an empty answer: there is nothing to attribute")
    room = max(len(tok(f" {c}", add_special_tokens=False)["input_ids"]) for c in candidates)
    ex, cut = _fit(tok, ex, lambda q: len(tok(_prompt_pieces(replace(ex, text=q))[0])["input_ids"]) + room, limit)
    prompt, pieces = _prompt_pieces(ex)
    scores = continuation_logprobs(loaded, prompt, [f" {c}" for c in candidates], max_length=limit.tokens)
    pred = int(scores.argmax())
    gold_idx = ex.label if ex.choices else 0
    tgt = _pick(target, gold_idx, pred, len(candidates))
    answer_ids = tok(f" {candidates[tgt]}", add_special_tokens=False)["input_ids"]
    enc = tok(prompt, return_offsets_mapping=True, return_tensors="pt")  # fits: the question was cut to make room
    p_ids = enc["input_ids"].to(dev)
    offsets = enc["offset_mapping"][0].tolist()
    full = torch.cat([p_ids, torch.tensor([answer_ids], device=dev)], 1)
    L = p_ids.shape[1]
    segments, content = [], torch.zeros_like(p_ids, dtype=torch.bool)
    for name, text, start in pieces:
        end = start + len(text)
        cols = [c for c, (a, b) in enumerate(offsets) if b > a and a >= start - 1 and b <= end]
        toks = [tok.convert_ids_to_tokens(int(p_ids[0, c])) for c in cols]
        word_of, wids, current = {}, [], -1
        for c in cols:  # a new word starts where the token's text begins after a space
            a, _ = offsets[c]
            if (
                c == cols[0]
                or prompt[a - 1 : a].isspace()
                or prompt[a : a + 1].isspace()
                or not prompt[a - 1 : a].isalnum()
            ):
                current += 1
            word_of[c] = current
            wids.append(current)
        for c in cols:
            content[0, c] = True
        segments.append(Segment(name, text, toks, wids, [(0, c) for c in cols]))
    answer_emb = _embed(model, full[:, L:])

    def score(embeds: torch.Tensor) -> torch.Tensor:
        n = embeds.shape[0]
        x = torch.cat([embeds, answer_emb.expand(n, -1, -1)], 1)
        logp = torch.log_softmax(model(inputs_embeds=x).logits[:, L - 1 : -1].float(), -1)
        return logp.gather(-1, full[:, L:].expand(n, -1).unsqueeze(-1)).squeeze(-1).sum(-1)

    correct = (pred == gold_idx) if ex.choices and ex.label is not None else None
    return Target(
        example=ex,
        embeds=_embed(model, p_ids),
        score=score,
        segments=segments,
        baseline=_baseline(model, tok, p_ids, content),
        content_mask=content,
        target_label=candidates[tgt],
        predicted_label=candidates[pred],
        gold_label=ex.answer,
        correct=correct,
        **_cut_fields(cut),
        extra={"prompt": prompt},
        prediction_computed=len(candidates) > 1,
    )
