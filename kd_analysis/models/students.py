"""Students derived from a teacher: drop layers (keeping the rest of its weights) or shrink its config.

Works for every family by finding the model's layer lists from the config's layer count, so a new
architecture needs no code here.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import torch

from kd_analysis.exceptions import KDLensError
from kd_analysis.models.info import config_shape
from kd_analysis.models.loading import LoadedModel, load_model
from kd_analysis.models.specs import StudentSpec

LAYER_LIST_NAMES = ("layer", "layers", "h", "block", "blocks")
INTERMEDIATE_ATTRS = (
    "intermediate_size",
    "n_inner",
    "hidden_dim",
    "d_ff",
    "encoder_ffn_dim",
    "decoder_ffn_dim",
    "ffn_dim",
)


def evenly_spaced(n_layers: int, keep: int) -> list[int]:
    """`keep` indices spread over 0..n-1, always including the first and (when keep > 1) the last layer."""
    if not 1 <= keep <= n_layers:
        raise KDLensError(f"cannot keep {keep} of {n_layers} layers; choose 1 to {n_layers}")
    return sorted({round(x) for x in np.linspace(0, n_layers - 1, keep)})


def default_keep_count(n_layers: int) -> int:
    return max(1, round(n_layers / 3))


def _layer_counts(config: Any) -> tuple[int, int | None]:
    shape = config_shape(config)
    return shape["layers"], shape["decoder_layers"]


def layer_lists(model: torch.nn.Module, counts: set[int]) -> list[str]:
    """Dotted names of the top-level ModuleLists that hold the transformer blocks."""
    found = [
        name
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.ModuleList) and len(mod) in counts and name.rsplit(".", 1)[-1] in LAYER_LIST_NAMES
    ]
    return [n for n in found if not any(n != o and n.startswith(o + ".") for o in found)]


def _set_layer_count(cfg: Any, n_enc: int, n_dec: int | None) -> None:
    if getattr(cfg, "is_encoder_decoder", False):
        for attr in ("num_layers", "encoder_layers"):
            if hasattr(cfg, attr):
                setattr(cfg, attr, n_enc)
        for attr in ("num_decoder_layers", "decoder_layers"):
            if hasattr(cfg, attr):
                setattr(cfg, attr, n_dec)
    cfg.num_hidden_layers = n_enc  # attribute_map routes this to n_layer / n_layers / num_layers


def _subset_layer_lists(cfg: Any, old_n: int, keep: list[int]) -> None:
    """Per-layer config lists (e.g. qwen2's layer_types) must follow the kept layers."""
    for key, value in list(vars(cfg).items()):
        if isinstance(value, list) and len(value) == old_n and key not in ("architectures",):
            setattr(cfg, key, [value[i] for i in keep])


def drop_layers(teacher: LoadedModel, keep: list[int] | None = None, num_layers: int | None = None) -> tuple[Any, dict]:
    """A copy of the teacher keeping only the `keep` blocks (weights copied); returns (model, report)."""
    n_enc, n_dec = _layer_counts(teacher.config)
    if keep is None:
        keep = evenly_spaced(n_enc, num_layers or default_keep_count(n_enc))
    keep = sorted(int(i) for i in keep)
    if not keep:
        raise KDLensError("keep at least one layer")
    if len(set(keep)) != len(keep) or keep[0] < 0 or keep[-1] >= n_enc:
        raise KDLensError(f"layers to keep must be distinct indices from 0 to {n_enc - 1}; got {keep}")
    keep_dec = None
    if n_dec:
        keep_dec = keep if n_dec == n_enc else evenly_spaced(n_dec, min(len(keep), n_dec))
    cfg = copy.deepcopy(teacher.config)
    _subset_layer_lists(cfg, n_enc, keep)
    _set_layer_count(cfg, len(keep), len(keep_dec) if keep_dec else None)
    lists = layer_lists(teacher.model, {n_enc} | ({n_dec} if n_dec else set()))
    if not lists:
        raise KDLensError(f"could not find the layer list of this {teacher.family} model to drop layers from")
    maps = {name: (keep_dec if keep_dec is not None and "decoder" in name else keep) for name in lists}
    torch.manual_seed(0)
    student = type(teacher.model)(cfg)
    old = teacher.model.state_dict()
    new_state = {}
    copied = fallback = 0
    patterns = [(re.compile(rf"^{re.escape(name)}\.(\d+)\.(.+)$"), name, idx) for name, idx in maps.items()]
    for key, tensor in student.state_dict().items():
        src = key
        for pat, name, idx in patterns:
            m = pat.match(key)
            if m:
                src = f"{name}.{idx[int(m.group(1))]}.{m.group(2)}"
                if src not in old:  # e.g. T5's relative position bias lives only in block 0
                    src = f"{name}.0.{m.group(2)}"
                    fallback += 1
                break
        if src in old and old[src].shape == tensor.shape:
            new_state[key] = old[src]
            copied += 1
    student.load_state_dict(new_state, strict=False)
    student.to(device=teacher.device, dtype=next(teacher.model.parameters()).dtype)
    report = {
        "kept_layers": keep,
        "kept_decoder_layers": keep_dec,
        "of_layers": n_enc,
        "layer_lists": lists,
        "copied_tensors": copied,
        "total_tensors": len(student.state_dict()),
        "fallback_tensors": fallback,
    }
    return student.eval(), report


def shrink(teacher: LoadedModel, spec: StudentSpec) -> tuple[Any, dict]:
    """A smaller random-init model of the same family sharing the teacher's tokenizer and vocabulary."""
    cfg = copy.deepcopy(teacher.config)
    shape = config_shape(cfg)
    n_enc, n_dec = shape["layers"], shape["decoder_layers"]
    layers = spec.num_layers or max(1, n_enc // 2)
    hidden = spec.hidden_size or max(8, shape["hidden_size"] // 2)
    heads = spec.num_heads or shape["heads"]
    while heads > 1 and hidden % heads:
        heads -= 1
    if hidden % heads:
        raise KDLensError(f"hidden size {hidden} is not divisible by {heads} heads")
    ratio = hidden / max(shape["hidden_size"], 1)
    _subset_layer_lists(cfg, n_enc, list(range(min(layers, n_enc))) + [n_enc - 1] * max(0, layers - n_enc))
    _set_layer_count(cfg, layers, layers if n_dec else None)
    cfg.hidden_size = hidden
    cfg.num_attention_heads = heads
    for attr in ("decoder_attention_heads", "encoder_attention_heads"):
        if hasattr(cfg, attr):
            setattr(cfg, attr, heads)
    if getattr(cfg, "num_key_value_heads", None):
        group = max(1, shape["heads"] // max(shape["kv_heads"], 1))
        cfg.num_key_value_heads = heads // group if heads % group == 0 else heads
    if getattr(cfg, "head_dim", None):
        cfg.head_dim = hidden // heads
    if getattr(cfg, "d_kv", None):
        cfg.d_kv = hidden // heads
    for attr in INTERMEDIATE_ATTRS:
        if getattr(cfg, attr, None):
            setattr(cfg, attr, max(8, int(getattr(cfg, attr) * ratio)))
    if getattr(cfg, "rotary_dim", None):
        cfg.rotary_dim = hidden // heads
    torch.manual_seed(spec.seed)
    student = type(teacher.model)(cfg)
    student.to(device=teacher.device, dtype=next(teacher.model.parameters()).dtype)
    return student.eval(), {"layers": layers, "hidden_size": hidden, "heads": heads, "random_init": True}


def derive_student(teacher: LoadedModel, spec: StudentSpec, progress=None) -> LoadedModel:
    """The student for `spec`: derived from the teacher, or loaded like any model (kind 'model')."""
    if spec.kind == "model":
        if spec.model is None:
            raise KDLensError("student kind 'model' needs a model source")
        return load_model(spec.model, progress)
    if spec.kind == "drop_layers":
        model, report = drop_layers(teacher, list(spec.keep_layers) if spec.keep_layers else None, spec.num_layers)
        note = (
            f"Layer-dropped copy of the teacher: kept layers {report['kept_layers']} of {report['of_layers']} "
            f"({report['copied_tensors']}/{report['total_tensors']} tensors copied from the teacher)."
        )
    elif spec.kind == "shrink":
        model, report = shrink(teacher, spec)
        note = (
            f"Random-init student: {report['layers']} layers, hidden {report['hidden_size']}, "
            f"{report['heads']} heads; shares the teacher's tokenizer."
        )
    else:
        raise KDLensError(f"unknown student kind {spec.kind!r}; one of drop_layers, shrink, model")
    return LoadedModel(
        spec=teacher.spec,
        model=model,
        tokenizer=teacher.tokenizer,
        task=teacher.task,
        head=teacher.head,
        source_kind="derived",
        location=f"derived from {teacher.spec.source}",
        notes=[note],
        derivation={"kind": spec.kind, **report},
    )
