"""Generation in batches (greedy unless sampling settings are given): left padding, so every row's new tokens start
at the same column.

Sampling (`Sampling`) is set in full and nothing else applies: transformers fills every setting a call leaves
unset from the checkpoint's generation_config and then from its own defaults, and its default top_k of 50 would
sample from the 50 likeliest tokens only. On-policy distillation (GKD, TRL) samples the student's whole
distribution at a temperature, so a run names each setting and the checkpoint's are set aside while it samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


@dataclass(frozen=True)
class Sampling:
    """Every setting that shapes a sampled token: softmax(logits / temperature), then the nucleus top_p (1: off)
    and top_k (0: off, the whole vocabulary); no repetition penalty, no other warper."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def generation_kwargs(self) -> dict:
        return {
            **asdict(self),
            "do_sample": True,
            "num_beams": 1,
            "min_p": None,
            "typical_p": 1.0,
            "epsilon_cutoff": 0.0,
            "eta_cutoff": 0.0,
            "repetition_penalty": 1.0,
            "encoder_repetition_penalty": 1.0,
            "no_repeat_ngram_size": 0,
            "min_length": 0,
            "min_new_tokens": None,
        }


@contextmanager
def _bare_generation_config(model) -> Iterator[None]:
    """The model's generation_config reduced to its special-token ids while it samples, so no setting of the
    checkpoint's (a top_k, a repetition penalty, suppressed or forced tokens) joins the run's `Sampling`."""
    from transformers import GenerationConfig

    saved = getattr(model, "generation_config", None)
    ids = {k: getattr(saved, k, None) for k in TOKEN_IDS} if saved is not None else {}
    model.generation_config = GenerationConfig(**{k: v for k, v in ids.items() if v is not None})
    try:
        yield
    finally:
        if saved is not None:
            model.generation_config = saved


# (rows finished, rows in all, new tokens so far in the current batch, its budget max_new_tokens): called at every
# generated token, so a page or a job can say where a long batch is and stop it within one token step (a hook that
# raises ends the generation with its exception)
TokenHook = Callable[[int, int, int, int], None]


def _every_token(hook: TokenHook, done: int, total: int, budget: int):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class EveryToken(StoppingCriteria):
        def __init__(self) -> None:
            self.tokens = 0

        def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
            self.tokens += 1
            hook(done, total, self.tokens, budget)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)  # never stops a row

    return StoppingCriteriaList([EveryToken()])


def _stop_at_eos(row: list[int], eos: set[int]) -> list[int]:
    """The new tokens up to and including the first end-of-sequence token (padding after it dropped)."""
    for i, t in enumerate(row):
        if t in eos:
            return row[: i + 1]
    return row


def generate_ids(
    loaded,
    prompts: Sequence[str],
    max_new_tokens: int = 64,
    batch_size: int = 8,
    model=None,
    progress: Callable[[int, int], None] | None = None,
    sample: Sampling | None = None,
    on_token: TokenHook | None = None,
) -> list[list[int]]:
    """The new token ids of each prompt's continuation, up to and including the end-of-sequence token when one was
    produced. `model` overrides loaded.model (an unwrapped training model). `sample` samples instead of greedy
    decoding, with torch's global random generator (seeded by the run). `progress` hears after each batch,
    `on_token` at every token (see `TokenHook`)."""
    model = model if model is not None else loaded.model
    tok = loaded.tokenizer
    device = next(model.parameters()).device
    eos_ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    eos |= set(eos_ids if isinstance(eos_ids, list) else [eos_ids] if eos_ids is not None else [])
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out: list[list[int]] = []
    side = tok.padding_side
    tok.padding_side = "left"
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(prompts), batch_size):
            chunk = list(prompts[i : i + batch_size])
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=True).to(device)
            hooks = (
                {}
                if on_token is None
                else {"stopping_criteria": _every_token(on_token, i, len(prompts), max_new_tokens)}
            )
            with torch.no_grad():
                if sample is None:
                    gen = model.generate(
                        **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad, **hooks
                    )
                else:
                    with _bare_generation_config(model):
                        gen = model.generate(
                            **enc,
                            max_new_tokens=max_new_tokens,
                            pad_token_id=pad,
                            **sample.generation_kwargs(),
                            **hooks,
                        )
            # an encoder-decoder's output starts with its decoder-start token (BART's is its end-of-sequence id)
            new = gen[:, 1:] if model.config.is_encoder_decoder else gen[:, enc["input_ids"].shape[1] :]
            out += [_stop_at_eos(row, eos) for row in new.tolist()]
            if progress:
                progress(len(out), len(prompts))
    finally:
        tok.padding_side = side
        if was_training:
            model.train()
    return out


def generate_texts(
    loaded,
    prompts: Sequence[str],
    max_new_tokens: int = 64,
    batch_size: int = 8,
    model=None,
    progress: Callable[[int, int], None] | None = None,
    sample: Sampling | None = None,
    on_token: TokenHook | None = None,
) -> list[str]:
    """The decoded continuation of each prompt (special tokens dropped); see `generate_ids`."""
    ids = generate_ids(loaded, prompts, max_new_tokens, batch_size, model, progress, sample, on_token)
    return loaded.tokenizer.batch_decode(ids, skip_special_tokens=True)
