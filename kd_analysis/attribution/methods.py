"""Attribution methods: a registry of functions from a Target to per-token scores [R, L].

Gradient methods differentiate the target's score with respect to the input embeddings; integrated gradients
goes through captum and reports its convergence delta (completeness: attributions sum to f(x) − f(baseline)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from kd_analysis.attribution.targets import Target
from kd_analysis.exceptions import KDLensError


class MethodFn(Protocol):
    """Per-token scores [T] for one target, and the method's convergence delta where it has one (integrated
    gradients) else None. Settings (steps, batch, the loaded model) arrive as keyword arguments."""

    def __call__(self, target: Target, /, **params: Any) -> tuple[torch.Tensor, float | None]: ...


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    fn: MethodFn
    description: str


METHODS: dict[str, Method] = {}


def register_method(name: str, title: str, description: str):
    def deco(fn):
        METHODS[name] = Method(name, title, fn, description)
        return fn

    return deco


def _grad(target: Target) -> tuple[torch.Tensor, torch.Tensor]:
    e = target.embeds.clone().requires_grad_(True)
    with torch.enable_grad():
        s = target.score(e)
        (g,) = torch.autograd.grad(s.sum(), e, allow_unused=True)
    if g is None or not torch.isfinite(g).all() or float(g.abs().sum()) == 0.0:
        raise KDLensError(
            "the model's score gives no gradient with respect to its input embeddings (frozen or "
            "detached embeddings?); use occlusion or attention instead"
        )
    return e.detach(), g


@register_method(
    "saliency", "Saliency (gradient norm)", "‖∂score/∂embedding‖ per token: how sensitive the answer is to each token."
)
def saliency(target: Target, **_) -> tuple[torch.Tensor, None]:
    _embeds, g = _grad(target)
    return g.norm(dim=-1), None


@register_method(
    "input_x_gradient",
    "Input × gradient",
    "embedding · ∂score/∂embedding per token: a first-order estimate of each token's contribution.",
)
def input_x_gradient(target: Target, **_) -> tuple[torch.Tensor, None]:
    e, g = _grad(target)
    return ((e - target.baseline) * g).sum(-1), None


@register_method(
    "ig",
    "Integrated gradients",
    "Gradients averaged along the path from a pad-token baseline to the input (captum); the "
    "convergence delta says how far the attributions are from summing to the score difference.",
)
def integrated_gradients(
    target: Target, *, steps: int = 32, internal_batch_size: int | None = None, **_
) -> tuple[torch.Tensor, float]:
    from captum.attr import IntegratedGradients

    R, L, H = target.embeds.shape
    # captum stacks its steps along dim 0; a choice head's R rows form one example, so flatten them into it
    ig = IntegratedGradients(lambda flat: target.score(flat.reshape(-1, L, H)))
    inputs, base = target.embeds.reshape(1, R * L, H), target.baseline.reshape(1, R * L, H)
    with torch.enable_grad():
        attr, delta = ig.attribute(
            inputs,
            baselines=base,
            n_steps=steps,
            internal_batch_size=internal_batch_size,
            return_convergence_delta=True,
        )
    attr = attr.reshape(target.embeds.shape)
    return attr.sum(-1).detach(), float(delta.abs().max())


@register_method(
    "occlusion",
    "Occlusion",
    "Score drop when one token's embedding is replaced by the pad token's: no gradients needed.",
)
def occlusion(target: Target, *, batch: int = 32, **_) -> tuple[torch.Tensor, None]:
    positions = target.content_mask.nonzero().tolist()
    out = torch.zeros(target.content_mask.shape, device=target.embeds.device)
    with torch.no_grad():
        full = target.score(target.embeds)[0]
        for i in range(0, len(positions), batch):
            chunk = positions[i : i + batch]
            x = target.embeds.unsqueeze(0).repeat(len(chunk), 1, 1, 1)
            for n, (r, c) in enumerate(chunk):
                x[n, r, c] = target.baseline[r, c]
            s = target.score(x.reshape(-1, *target.embeds.shape[1:]))
            for n, (r, c) in enumerate(chunk):
                out[r, c] = full - s[n]
    return out, None


def _attentions(target: Target, loaded) -> tuple[torch.Tensor, ...]:
    from kd_analysis.models.loading import attention_weights

    if loaded is None:
        raise KDLensError("attention methods need the loaded model")
    encoder = _encoder(loaded.model)
    kwargs = target.extra.get("forward_kwargs", {})
    with attention_weights(loaded.model), torch.no_grad():
        out = encoder(inputs_embeds=target.embeds, output_attentions=True, **kwargs)
    if not out.attentions:
        raise KDLensError("this model returned no attention weights")
    return out.attentions


def _encoder(model):
    return getattr(model, model.base_model_prefix, model)


def _query_row(target: Target, loaded) -> int:
    """Encoders read the [CLS] row; decoders the last prompt position (it predicts the answer)."""
    return 0 if loaded.head in ("choice_head", "class_head") else target.embeds.shape[1] - 1


@register_method(
    "attention",
    "Attention (last layer)",
    "Attention from the [CLS] token (encoders) or the last prompt position (decoders) in the last "
    "layer, averaged over heads. Not specific to the answer.",
)
def attention_last(target: Target, *, loaded=None, **_) -> tuple[torch.Tensor, None]:
    att = _attentions(target, loaded)[-1]  # [R, heads, L, L]
    return att.mean(1)[:, _query_row(target, loaded), :].float(), None


@register_method(
    "rollout",
    "Attention rollout",
    "Attention propagated through every layer (Abnar & Zuidema 2020): product of (A + I)/2 over "
    "layers, averaged over heads.",
)
def attention_rollout(target: Target, *, loaded=None, **_) -> tuple[torch.Tensor, None]:
    atts = _attentions(target, loaded)
    L = atts[0].shape[-1]
    eye = torch.eye(L, device=atts[0].device)
    roll = eye
    for a in atts:
        a = 0.5 * a.mean(1).float() + 0.5 * eye
        roll = (a / a.sum(-1, keepdim=True)) @ roll
    return roll[:, _query_row(target, loaded), :], None
