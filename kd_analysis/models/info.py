"""Architecture summaries and memory estimates, from a config alone (no weights needed)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass
class ModelInfo:
    family: str
    task: str
    architecture: str
    parameters: int
    layers: int
    heads: int
    kv_heads: int
    hidden_size: int
    vocab_size: int
    tokenizer_size: int | None = None
    decoder_layers: int | None = None
    max_positions: int | None = None
    output_size: int | None = None
    dtype: str | None = None
    device: str | None = None
    attn_implementation: str | None = None
    memory_mb: float | None = None
    source: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _get(config: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        v = getattr(config, n, None)
        if v is not None:
            return v
    return default


def config_shape(config: Any) -> dict[str, Any]:
    """Layers, heads, hidden size, vocabulary across families (attribute names differ per family)."""
    heads = _get(config, "num_attention_heads", "encoder_attention_heads", "n_head", "num_heads", default=0)
    enc_dec = bool(getattr(config, "is_encoder_decoder", False))
    return {
        "layers": int(_get(config, "num_hidden_layers", "encoder_layers", "n_layer", "num_layers", default=0)),
        "decoder_layers": int(_get(config, "num_decoder_layers", "decoder_layers", default=0)) or None
        if enc_dec
        else None,
        "heads": int(heads),
        "kv_heads": int(_get(config, "num_key_value_heads", default=heads)),
        "hidden_size": int(_get(config, "hidden_size", "d_model", "n_embd", "dim", default=0)),
        "vocab_size": int(_get(config, "vocab_size", default=0)),
        "max_positions": _get(config, "max_position_embeddings", "n_positions", default=None),
    }


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


@dataclass
class MemoryEstimate:
    parameters: int
    dtype: str
    device: str
    weights_mb: float
    inference_mb: float  # weights + a rough activation margin for a small batch
    training_mb: float  # weights, grads and Adam moments in fp32 (+ weights in the run dtype)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_from_config(config: Any, head_class: Any, dtype: torch.dtype, device: str) -> MemoryEstimate:
    """Build the model on the meta device (no memory, no weights) to count parameters exactly."""
    import copy

    cfg = copy.deepcopy(config)
    with torch.device("meta"):
        model = head_class.from_config(cfg)
    n = count_parameters(model)
    size = torch.finfo(dtype).bits // 8
    weights = n * size / 2**20
    return MemoryEstimate(
        parameters=n,
        dtype=str(dtype).replace("torch.", ""),
        device=device,
        weights_mb=round(weights, 1),
        inference_mb=round(weights * 1.2 + 64, 1),
        training_mb=round(n * (4 * 4) / 2**20 + weights, 1),
    )
