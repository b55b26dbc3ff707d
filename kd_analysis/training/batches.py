"""Turn examples into model outputs for training: grad-enabled, one function per head.

Language-model targets are the answer (worked solution and `#### N` when there is one) after the question
prompt; prompt and padding positions are masked out of every loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from kd_analysis.data.example import Example
from kd_analysis.losses.checks import upcast
from kd_analysis.losses.registry import LOSSES, reduce_rows
from kd_analysis.models.scoring import choice_scores, class_logits, mc_prompt, pad_right


def lm_target(ex: Example) -> str:
    if ex.solution:
        return f" {ex.solution}\n#### {ex.answer}"
    if ex.choices and ex.label is not None:
        return f" {ex.choices[ex.label]}"
    return f" {ex.answer}" if ex.answer is not None else ""


@dataclass
class LMBatch:
    logits: torch.Tensor | None  # [B, L, V]; None when only the final hidden states were asked for
    labels: torch.Tensor  # [B, L] next-token targets aligned with logits, -100 where masked
    tokens: int
    hidden: torch.Tensor | None = None  # [B, L, H] before the output layer (`hidden=True` forwards)

    def target_hidden(self) -> torch.Tensor:
        """[N, H] hidden states at the target positions, row-major (the order of `AnswerRows`)."""
        assert self.hidden is not None
        return self.hidden[self.labels != -100]


def head_parts(model) -> tuple[torch.nn.Module, torch.nn.Linear] | None:
    """(decoder body, output layer) of a causal LM, through a peft wrapper; None when the model has no such split
    or its output layer is not a plain linear map (e.g. LoRA on lm_head). Whether body → layer reproduces the
    model's logits (no soft-capping or scaling after the layer) is checked by `head_split_matches`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    get_decoder, get_head = getattr(base, "get_decoder", None), getattr(base, "get_output_embeddings", None)
    if get_decoder is None or get_head is None:
        return None
    try:
        body, head = get_decoder(), get_head()
    except (AttributeError, NotImplementedError):
        return None
    if body is None or body is base or type(head) is not torch.nn.Linear:
        return None
    return body, head


def head_split_matches(loaded, text: str = "The answer is 42.") -> bool:
    """Whether the body's last hidden state through the output layer gives the model's own logits on `text`."""
    parts = head_parts(loaded.model)
    if parts is None or loaded.head != "lm":
        return False
    body, head = parts
    ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"].to(loaded.device)
    was_training = loaded.model.training
    loaded.model.eval()
    try:
        with torch.no_grad():
            want = loaded.model(input_ids=ids).logits.float()
            got = head(body(input_ids=ids).last_hidden_state).float()
    finally:
        loaded.model.train(was_training)
    return got.shape == want.shape and bool(torch.allclose(got, want, rtol=1e-3, atol=1e-3 * (1 + want.abs().max())))


PromptFn = Callable[[Example], str]


@dataclass
class AnswerRows:
    """The student's logits at its target positions, without copying them out of the batch: `flat` is the
    [B·L, V] view of the logits and `pos` the N target rows. The logsumexp over the whole vocabulary is computed
    once per temperature: cross-entropy needs it at τ = 1 and every top-k KD term reuses it at its own τ (a term at
    τ = 1 costs no extra pass over the vocabulary). Only a value that carries the gradient is kept: one computed
    under `torch.no_grad()` (a statistic) is returned and forgotten, so a loss never reuses a detached normaliser."""

    flat: torch.Tensor  # [B·L, V]
    pos: torch.Tensor  # [N] rows of `flat` that have a target
    labels: torch.Tensor  # [N]
    seq: torch.Tensor  # [N] the sequence of the batch each row belongs to (per-sequence reductions)
    _lse: dict[float, torch.Tensor] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, batch: LMBatch) -> AnswerRows:
        assert batch.logits is not None, "a hidden-state batch has no logits rows"
        flat = batch.logits.reshape(-1, batch.logits.shape[-1])
        labels = batch.labels.reshape(-1)
        pos = (labels != -100).nonzero().squeeze(1)
        return cls(flat, pos, labels[pos], pos // batch.labels.shape[-1])

    def reduce(self, name: str, values: torch.Tensor) -> torch.Tensor:
        """A term's per-row values [N] reduced as its registry entry says (`LossSpec.reduce`)."""
        return reduce_rows(values, LOSSES[name].reduce, self.seq)

    @property
    def n(self) -> int:
        return int(self.pos.numel())

    @property
    def vocab(self) -> int:
        return int(self.flat.shape[-1])

    def lse(self, tau: float = 1.0) -> torch.Tensor:
        """[N] logsumexp(logits / τ) over the whole vocabulary (computed on all rows: no [N, V] copy)."""
        kept = self._lse.get(tau)
        if kept is not None:
            return kept if torch.is_grad_enabled() else kept.detach()
        from kd_analysis.losses.sparse import logsumexp_at

        value = logsumexp_at(upcast(self.flat), tau)[self.pos]
        if value.requires_grad or not self.flat.requires_grad:
            self._lse[tau] = value
        return value

    def rest(self, idx: torch.Tensor, tau: float) -> torch.Tensor:
        """[N] log-probability at τ of the tokens outside idx [N, k] together: the student's tail bucket, summed
        over the tail's own tokens (exact however small), with the gradient it carries."""
        from kd_analysis.losses.sparse import rest_logsumexp

        return rest_logsumexp(self.flat, idx, tau, pos=self.pos) - self.lse(tau)

    def lse_and_rest(
        self, idx: torch.Tensor, tau: float, at: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """([N] normaliser at τ, [N] log-probability of the tokens outside idx [N, k]) in one pass over the
        vocabulary where `rest` would make a second: the rest's logsumexp joined with the k logits' (`at`, the
        logits at idx when the caller has them) is the whole row's. A normaliser already kept (CE's at τ = 1) is
        reused instead; one made here is kept under the same rule as `lse`."""
        from kd_analysis.losses.sparse import rest_logsumexp

        rest = rest_logsumexp(self.flat, idx, tau, pos=self.pos)
        kept = self._lse.get(tau)
        if kept is not None:
            lse = kept if torch.is_grad_enabled() else kept.detach()
        else:
            top = torch.logsumexp((self.at(idx) if at is None else at) / tau, -1)
            lse = torch.logaddexp(rest, top.to(rest.dtype))
            if lse.requires_grad or not self.flat.requires_grad:
                self._lse[tau] = lse
        return lse, rest - lse

    def at(self, idx: torch.Tensor) -> torch.Tensor:
        """[N, k] raw logits at per-row token ids, gathered without copying [N, V] rows."""
        full = torch.zeros(self.flat.shape[0], idx.shape[-1], dtype=torch.long, device=idx.device)
        full[self.pos] = idx.long()
        return upcast(self.flat.gather(-1, full)[self.pos])

    def rows(self) -> torch.Tensor:
        """[N, V] copy of the target rows (half precision upcast to float32; float64 stays), for losses that need
        whole distributions."""
        return upcast(self.flat.index_select(0, self.pos))

    def ce(self) -> torch.Tensor:
        """Mean token cross-entropy on the gold labels (equals F.cross_entropy with ignore_index=-100)."""
        return (self.lse(1.0) - self.at(self.labels[:, None]).squeeze(1)).mean()


AnswerIds = dict[str, list[int]]  # example id -> the answer's token ids as a model sampled them (on-policy)


def prompt_and_target(
    tok, ex: Example, prompt: PromptFn, answer_ids: AnswerIds | None = None
) -> tuple[list[int], list[int]]:
    """The prompt's ids and the target's: sampled ids as they are (never decoded and re-tokenized, which can
    merge or split tokens), else the gold answer tokenized with an end-of-sequence token."""
    p = tok(prompt(ex), add_special_tokens=True)["input_ids"]
    if answer_ids is not None and ex.id in answer_ids:
        return p, list(answer_ids[ex.id])
    t = tok(lm_target(ex), add_special_tokens=False)["input_ids"]
    if tok.eos_token_id is not None:
        t = t + [tok.eos_token_id]
    return p, t


def target_lengths(tok, examples: Sequence[Example], max_length: int, prompt: PromptFn | None = None) -> list[int]:
    """How many answer tokens survive truncation at `max_length` after each prompt: a primed teacher keeps
    exactly the student's count, so their answer positions line up one to one."""
    out = []
    for ex in examples:
        p, t = prompt_and_target(tok, ex, prompt or mc_prompt)
        out.append(max(0, min(len(t), max_length - len(p))))
    return out


def lm_outputs(
    loaded,
    examples: Sequence[Example],
    max_length: int,
    prompt: PromptFn | None = None,
    keep_targets: Sequence[int] | None = None,
    hidden: bool = False,
    answer_ids: AnswerIds | None = None,
) -> LMBatch:
    """Teacher-forced logits for prompt + target; labels shifted so logits[t] predicts labels[t].

    `keep_targets` fixes each example's number of answer tokens (the prompt is then never cut). `hidden`: the
    final hidden states instead of logits (the caller applies the output layer where it needs it). `answer_ids`:
    targets given as token ids (a student's samples), by example id."""
    tok = loaded.tokenizer
    if loaded.head == "seq2seq":
        return _seq2seq_outputs(loaded, examples, max_length)
    rows, label_rows = [], []
    for i, ex in enumerate(examples):
        p, t = prompt_and_target(tok, ex, prompt or mc_prompt, answer_ids)
        if keep_targets is not None:
            t = t[: keep_targets[i]]
            ids, labels = p + t, [-100] * len(p) + t
        else:
            ids = (p + t)[:max_length]
            labels = ([-100] * len(p) + t)[:max_length]
        rows.append(ids)
        label_rows.append(labels[1:] + [-100])  # shift: position i predicts token i+1
    input_ids, attention = pad_right(rows, tok.pad_token_id, loaded.device)
    labels, _ = pad_right(label_rows, None, loaded.device, fill=-100)
    return _forward(loaded, input_ids, attention, labels, hidden)


def _forward(loaded, input_ids, attention, labels, hidden: bool) -> LMBatch:
    tokens = int(attention.sum())
    if hidden:
        parts = head_parts(loaded.model)
        assert parts is not None, "hidden states were asked of a model without a body/output-layer split"
        states = parts[0](input_ids=input_ids, attention_mask=attention).last_hidden_state
        return LMBatch(logits=None, labels=labels, tokens=tokens, hidden=states)
    logits = loaded.model(input_ids=input_ids, attention_mask=attention).logits
    return LMBatch(logits=logits, labels=labels, tokens=tokens)


def paper_answer_ids(tok, ex: Example) -> list[int]:
    """The labels of Goyal et al.'s code: the answer text (worked solution and `#### N`, GSM8K's format)
    tokenised on its own with the tokenizer's default special tokens (a BOS first for Llama tokenizers)."""
    text = f"{ex.solution}\n#### {ex.answer}" if ex.solution else ("" if ex.answer is None else str(ex.answer))
    return tok(text)["input_ids"]


def paper_rows(
    student_tok,
    teacher_tok,
    examples: Sequence[Example],
    max_length: int,
    student_prompt: PromptFn,
    teacher_prompt: PromptFn,
) -> list[int]:
    """Goyal et al.'s alignment: how many positions each example contributes, the shortest of the student's
    input, the teacher's (primed) input and the answer, each cut at `max_length`. Their prompts are raw text (no
    chat template): the student reads the question, the teacher prompt + question."""
    out = []
    for ex in examples:
        s = len(student_tok(student_prompt(ex), add_special_tokens=True)["input_ids"][:max_length])
        t = len(teacher_tok(teacher_prompt(ex), add_special_tokens=True)["input_ids"][:max_length])
        out.append(min(s, t, len(paper_answer_ids(student_tok, ex)[:max_length])))
    return out


def position_outputs(
    loaded, examples: Sequence[Example], max_length: int, prompt: PromptFn, rows: Sequence[int], hidden: bool = False
) -> LMBatch:
    """The model reads only its prompt (cut at `max_length`); its logits at positions 0..rows[b]−1 are paired
    with the answer's tokens 0..rows[b]−1, unshifted, as in Goyal et al.'s code (a crude alignment, offered to
    reproduce the paper's set-up)."""
    tok = loaded.tokenizer
    ids_rows, label_rows = [], []
    for ex, n in zip(examples, rows):
        ids = tok(prompt(ex), add_special_tokens=True)["input_ids"][:max_length]
        answer = paper_answer_ids(tok, ex)[:n]
        ids_rows.append(ids)
        label_rows.append(answer + [-100] * (len(ids) - len(answer)))
    input_ids, attention = pad_right(ids_rows, tok.pad_token_id, loaded.device)
    labels, _ = pad_right(label_rows, None, loaded.device, fill=-100)
    return _forward(loaded, input_ids, attention, labels, hidden)


def _seq2seq_outputs(loaded, examples: Sequence[Example], max_length: int) -> LMBatch:
    tok = loaded.tokenizer
    enc = tok(
        [mc_prompt(ex) for ex in examples], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    ).to(loaded.device)
    lab = tok(
        [lm_target(ex).strip() for ex in examples],
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )["input_ids"].to(loaded.device)
    lab[lab == tok.pad_token_id] = -100
    logits = loaded.model(**enc, labels=lab).logits
    return LMBatch(logits=logits, labels=lab, tokens=int(enc["attention_mask"].sum() + (lab != -100).sum()))


def task_outputs(
    loaded,
    examples: Sequence[Example],
    max_length: int,
    prompt: PromptFn | None = None,
    hidden: bool = False,
    answer_ids: AnswerIds | None = None,
):
    """[B, C] choice scores or [B, K] class logits (grad-enabled), or an LMBatch for generation tasks."""
    if loaded.task == "multiple_choice":
        return choice_scores(loaded, examples, max_length, grad=True)
    if loaded.task == "classification":
        return class_logits(loaded, examples, max_length, grad=True)
    return lm_outputs(loaded, examples, max_length, prompt, hidden=hidden, answer_ids=answer_ids)


def gold_labels(examples: Sequence[Example], device) -> torch.Tensor:
    return torch.tensor([ex.label for ex in examples], device=device)
