"""One model reading one example: its hidden state at the answer position after every layer, the logit lens
(each layer's state read through the model's own output: final norm and LM head, or its task head), and its
attention patterns.

The answer position is where the model's answer is read: the prompt's last token for a language model (whose
output predicts the answer's first token), the first token for an encoder's class or choice head (what its
pooler reads), the last token for a decoder's class head. Layer 0 is the embeddings' output. The last layer's
lens is the model's own output, exactly (a test holds it to that)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.models.loading import LoadedModel, attention_weights
from kd_analysis.models.scoring import mc_prompt

ENCODER_HEADS = ("bert", "distilbert", "roberta")


@dataclass
class Reading:
    states: list[torch.Tensor]  # per layer (0: embeddings), the [width] residual state at the answer position
    lens: list[torch.Tensor]  # per layer, log-probabilities over the model's outputs (vocabulary, classes, choices)
    gold: int | None  # the gold token, class or choice in those outputs
    tokens: list[int]  # the input ids the attentions are over
    attentions: list[torch.Tensor] | None = None  # per layer [heads, T, T]


def _final_norm(loaded: LoadedModel):
    base = getattr(loaded.model, loaded.model.base_model_prefix)
    for name in ("norm", "ln_f", "final_layer_norm"):
        module = getattr(base, name, None)
        if module is not None:
            return module
    raise KDLensError(f"the logit lens does not know the final norm of {loaded.family} models")


def _head(loaded: LoadedModel, hidden: torch.Tensor) -> torch.Tensor:
    """A task head applied to [N, T, H] hidden states as the model applies it to its last layer's."""
    model: Any = loaded.model  # its head modules by attribute (typed as tensors by transformers' stubs)
    family = loaded.family
    if family == "bert" or (family == "roberta" and loaded.head == "choice_head"):
        base = getattr(model, family)
        pooled = base.pooler(hidden) if base.pooler is not None else hidden[:, 0]
        return model.classifier(model.dropout(pooled))
    if family == "distilbert":
        x = torch.nn.functional.relu(model.pre_classifier(hidden[:, 0]))
        return model.classifier(model.dropout(x))
    if family == "roberta":
        return model.classifier(hidden)
    raise KDLensError(f"the logit lens reads {loaded.head} heads of bert, distilbert and roberta, not {family}")


def _gold_token(loaded: LoadedModel, prompt: str, answer: str) -> int | None:
    ids = loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = loaded.tokenizer(prompt + " " + answer.strip(), add_special_tokens=False)["input_ids"]
    return int(full[len(ids)]) if len(full) > len(ids) else None


def read_example(loaded: LoadedModel, example: Example, *, attentions: bool = False, max_length: int = 128) -> Reading:
    """`loaded` reading `example`, every layer at the answer position (no gradient)."""
    model = loaded.model
    with torch.no_grad(), attention_weights(model) if attentions else _nothing():
        if loaded.head == "lm":
            return _read_lm(loaded, example, attentions, max_length)
        if loaded.head == "seq2seq":
            raise KDLensError("the inside views read decoder-only and encoder models, not encoder-decoders")
        if loaded.family not in ENCODER_HEADS:
            raise KDLensError(f"the inside views read {loaded.head} heads of bert, distilbert and roberta models")
        tok = loaded.tokenizer
        if loaded.head == "choice_head":
            choices = example.choices or []
            enc = tok([example.text] * len(choices), choices, truncation=True, max_length=max_length, padding=True)
            gold = example.label
        else:
            enc = tok([example.text], truncation=True, max_length=max_length)
            gold = example.label
        batch = {k: torch.tensor(v, device=loaded.device) for k, v in enc.items()}
        out = getattr(model, model.base_model_prefix)(**batch, output_hidden_states=True, output_attentions=attentions)
        hidden = out.hidden_states
        row = gold if loaded.head == "choice_head" and gold is not None and 0 <= gold < len(hidden[0]) else 0
        lens = []
        for h in hidden:
            logits = _head(loaded, h)
            logits = logits.view(1, -1) if loaded.head == "choice_head" else logits
            lens.append(torch.log_softmax(logits[0].float(), -1))
        return Reading(
            states=[h[row, 0].float() for h in hidden],
            lens=lens,
            gold=gold,
            tokens=list(batch["input_ids"][row].tolist()),
            attentions=[a[row].float() for a in out.attentions] if attentions else None,
        )


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _read_lm(loaded: LoadedModel, example: Example, attentions: bool, max_length: int) -> Reading:
    prompt = mc_prompt(example)
    enc = loaded.tokenizer(prompt, truncation=True, max_length=max_length, return_tensors="pt")
    ids = enc["input_ids"].to(loaded.device)
    norm, head = _final_norm(loaded), loaded.model.get_output_embeddings()
    # transformers hands back the last layer after the final norm; the residual stream before it is what the
    # other layers' states are, so CKA compares like with like (a 1-layer student's block with the teacher's)
    before_norm: list[torch.Tensor] = []
    hook = norm.register_forward_pre_hook(lambda module, inputs: before_norm.append(inputs[0]))
    try:
        out = loaded.model(
            input_ids=ids,
            attention_mask=enc["attention_mask"].to(loaded.device),
            output_hidden_states=True,
            output_attentions=attentions,
            logits_to_keep=1,
        )
    finally:
        hook.remove()
    hidden = out.hidden_states
    # every layer but the last through the final norm and the LM head in one product (one [L, V] product is far
    # faster than L one-row ones); the last entry is already normed, and is read exactly as the model reads it
    earlier = torch.cat([h[:, -1:, :] for h in hidden[:-1]], dim=1)
    lens = list(torch.log_softmax(head(norm(earlier))[0].float(), -1).unbind(0))
    lens.append(torch.log_softmax(head(hidden[-1][:, -1:, :])[0, -1].float(), -1))
    answer = example.answer if example.answer is not None else ""
    if example.choices and example.label is not None and 0 <= example.label < len(example.choices):
        answer = example.choices[example.label]
    states = [h[0, -1].float() for h in hidden]
    if before_norm:
        states[-1] = before_norm[-1][0, -1].float()
    return Reading(
        states=states,
        lens=lens,
        gold=_gold_token(loaded, prompt, str(answer)) if answer != "" else None,
        tokens=ids[0].tolist(),
        attentions=[a[0].float() for a in out.attentions] if attentions else None,
    )
