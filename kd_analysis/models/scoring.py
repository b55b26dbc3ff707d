"""Forward passes per task, so every workflow gets outputs the same way from any family.

Multiple choice is scored per choice: a choice head gives one logit per (question, choice); language models
give the log-likelihood of the choice text after the question.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.models.loading import LoadedModel

MAX_LENGTH = 256


def pad_right(rows: Sequence[list[int]], pad_id: int | None, device, fill: int | None = None):
    """Right-pad token id rows into a tensor (with `fill`, default the pad id) and its attention mask."""
    width = max(len(r) for r in rows)
    value = fill if fill is not None else (pad_id if pad_id is not None else 0)
    ids = torch.tensor([list(r) + [value] * (width - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    return ids, mask


def mc_prompt(ex: Example) -> str:
    return f"Question: {ex.text}\nAnswer:"


def _texts(examples: Sequence[Example | str]) -> list[str]:
    return [e.text if isinstance(e, Example) else str(e) for e in examples]


def class_logits(
    loaded: LoadedModel, examples: Sequence[Example | str], max_length: int = MAX_LENGTH, grad: bool = False
) -> torch.Tensor:
    enc = loaded.tokenizer(
        _texts(examples), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    ).to(loaded.device)
    with torch.set_grad_enabled(grad):
        return loaded.model(**enc).logits.float()


def _choice_grid(examples: Sequence[Example]) -> int:
    if any(not ex.choices for ex in examples):
        raise KDLensError("multiple-choice scoring needs examples with choices")
    return max(len(ex.choices) for ex in examples)


def choice_scores(
    loaded: LoadedModel, examples: Sequence[Example], max_length: int = MAX_LENGTH, grad: bool = False
) -> torch.Tensor:
    """[B, C] scores, one per choice (padding choices get -inf); softmax over C gives the choice distribution."""
    with torch.set_grad_enabled(grad):
        return _choice_scores(loaded, examples, max_length)


def _choice_scores(loaded: LoadedModel, examples: Sequence[Example], max_length: int) -> torch.Tensor:
    n_choices = _choice_grid(examples)
    if loaded.head == "choice_head":
        firsts, seconds, where = [], [], []
        for i, ex in enumerate(examples):
            for j, choice in enumerate(ex.choices):
                firsts.append(ex.text)
                seconds.append(choice)
                where.append((i, j))
        enc = loaded.tokenizer(
            firsts, seconds, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        # The multiple-choice head expects [B, C, L]; here each "example" is one (question, choice) pair.
        enc = {k: v.unsqueeze(1).to(loaded.device) for k, v in enc.items()}
        flat = loaded.model(**enc).logits.float().reshape(-1)
    else:
        flat = torch.cat(
            [
                _continuation_logprobs(loaded, mc_prompt(ex), [f" {c}" for c in ex.choices], max_length)
                for ex in examples
            ]
        )
        where = [(i, j) for i, ex in enumerate(examples) for j in range(len(ex.choices))]
    rows = torch.tensor([i for i, _ in where], device=flat.device)
    cols = torch.tensor([j for _, j in where], device=flat.device)
    out = torch.full((len(examples), n_choices), float("-inf"), device=flat.device)
    return out.index_put((rows, cols), flat)  # differentiable scatter of the scores into the grid


@torch.no_grad()
def continuation_logprobs(
    loaded: LoadedModel, prompt: str, continuations: Sequence[str], max_length: int = MAX_LENGTH
) -> torch.Tensor:
    return _continuation_logprobs(loaded, prompt, continuations, max_length).cpu()


def _continuation_logprobs(
    loaded: LoadedModel, prompt: str, continuations: Sequence[str], max_length: int = MAX_LENGTH
) -> torch.Tensor:
    """Mean log-probability per token of each continuation after `prompt` (length-normalised)."""
    tok = loaded.tokenizer
    if loaded.head == "seq2seq":
        enc = tok([prompt] * len(continuations), return_tensors="pt", truncation=True, max_length=max_length)
        labels = tok(list(continuations), return_tensors="pt", padding=True, truncation=True, max_length=max_length)[
            "input_ids"
        ]
        labels[labels == tok.pad_token_id] = -100
        out = loaded.model(**{k: v.to(loaded.device) for k, v in enc.items()}, labels=labels.to(loaded.device))
        logp = torch.log_softmax(out.logits.float(), -1)
        mask = labels.to(loaded.device) != -100
        picked = logp.gather(-1, labels.clamp(min=0).to(loaded.device).unsqueeze(-1)).squeeze(-1)
        return (picked * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    prompt_ids = tok(prompt, add_special_tokens=True)["input_ids"]
    rows, spans = [], []
    for cont in continuations:
        cont_ids = tok(cont, add_special_tokens=False)["input_ids"] or [tok.eos_token_id or 0]
        ids = (prompt_ids + cont_ids)[-max_length:]
        start = len(ids) - len(cont_ids)
        rows.append(ids)
        spans.append((max(start, 1), len(ids)))
    input_ids, attention = pad_right(rows, tok.pad_token_id, loaded.device)
    logits = loaded.model(input_ids=input_ids, attention_mask=attention).logits.float()
    logp = torch.log_softmax(logits, -1)
    scores = []
    for b, (s, e) in enumerate(spans):
        target = input_ids[b, s:e]
        scores.append(logp[b, s - 1 : e - 1].gather(-1, target.unsqueeze(-1)).mean())
    return torch.stack(scores)


def lm_logits(loaded: LoadedModel, examples: Sequence[Example | str], max_length: int = MAX_LENGTH) -> torch.Tensor:
    """Next-token logits [B, L, V] for decoders; for seq2seq, the first decoder step's logits [B, 1, V]."""
    with torch.no_grad():
        return _lm_logits(loaded, examples, max_length)


def _lm_logits(loaded: LoadedModel, examples: Sequence[Example | str], max_length: int) -> torch.Tensor:
    enc = loaded.tokenizer(
        _texts(examples), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    ).to(loaded.device)
    if loaded.head == "seq2seq":
        start = loaded.model.config.decoder_start_token_id
        if start is None:
            start = loaded.tokenizer.pad_token_id or 0
        dec = torch.full((enc["input_ids"].shape[0], 1), start, device=loaded.device)
        return loaded.model(**enc, decoder_input_ids=dec).logits.float()
    return loaded.model(**enc).logits.float()


def forward(loaded: LoadedModel, examples: Sequence[Example | str], grad: bool = False) -> torch.Tensor:
    """The task's natural outputs: class logits, choice scores, or LM logits."""
    if loaded.task == "classification":
        return class_logits(loaded, examples, grad=grad)
    if loaded.task == "multiple_choice":
        return choice_scores(loaded, [e for e in examples if isinstance(e, Example)], grad=grad)
    return lm_logits(loaded, examples)
