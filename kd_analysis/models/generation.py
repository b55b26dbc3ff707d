"""Generation in batches (greedy unless sampling settings are given): left padding, so every row's new tokens start
at the same column."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def generate_texts(
    loaded,
    prompts: Sequence[str],
    max_new_tokens: int = 64,
    batch_size: int = 8,
    model=None,
    progress: Callable[[int, int], None] | None = None,
    sample: dict | None = None,
) -> list[str]:
    """The decoded continuation of each prompt (special tokens dropped); `model` overrides loaded.model (an
    unwrapped training model). `sample` ({"temperature": …, "top_p": …}) samples instead of greedy decoding, with
    torch's global random generator (seeded by the run)."""
    model = model if model is not None else loaded.model
    tok = loaded.tokenizer
    device = next(model.parameters()).device
    out: list[str] = []
    side = tok.padding_side
    tok.padding_side = "left"
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(prompts), batch_size):
            chunk = list(prompts[i : i + batch_size])
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=True).to(device)
            with torch.no_grad():
                gen = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=bool(sample),
                    **(
                        {"temperature": sample.get("temperature", 1.0), "top_p": sample.get("top_p", 1.0)}
                        if sample
                        else {}
                    ),
                    pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                )
            new = gen if model.config.is_encoder_decoder else gen[:, enc["input_ids"].shape[1] :]
            out += tok.batch_decode(new, skip_special_tokens=True)
            if progress:
                progress(len(out), len(prompts))
    finally:
        tok.padding_side = side
        if was_training:
            model.train()
    return out
