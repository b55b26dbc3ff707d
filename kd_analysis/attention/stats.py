"""Per layer x head attention statistics over many examples, streamed layer by layer.

A forward hook on each transformer block reduces that block's attention matrix [heads, L, L] to a handful of
numbers per head as soon as it exists, so memory stays at one layer's matrix (plus the previous layer's, for
the layer-to-layer similarity) whatever the depth or length. L is the example's own length (its real tokens;
padding positions of a batch never count). Statistics per head:
- entropy: -Σ a·log a (nats) over the keys a query may see, mean over query rows; low = focused head;
- self: weight on the query's own token (the diagonal), mean over query rows;
- sparsity_paper: Goyal et al.'s definition, mean(A > 0.1) over the whole L x L matrix, positions a query may
  not see (the causal upper triangle) counted as zeros, i.e. (number of weights > 0.1) / L²;
- sparsity_visible: per query row, the share of the keys it may see whose weight is above 0.1, mean over rows
  (several times the paper's number on a causal model: row i has only i + 1 visible keys, not L);
- numbers: total weight on tokens that hold a digit (the question's numbers), mean over query rows;
- prev_similarity: cosine similarity with the same head one layer below (undefined in layer 0).
Across examples: mean and a 95% confidence half-width (Student t). Saved results from before the split have a
single `sparsity` key, which was the visible-keys definition: `HeadStats.from_dict` reads it as
`sparsity_visible`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.truncation import DEFAULT_CAP, Cut, Limit, fit_left, keep_ends, token_limit

STATS = {
    "entropy": "Entropy (nats)",
    "self": "Self-attention",
    "sparsity_paper": "Sparsity (paper: share of all L×L weights > 0.1)",
    "sparsity_visible": "Sparsity (visible keys > 0.1)",
    "numbers": "Attention to numbers",
    "prev_similarity": "Similarity to previous layer",
}
# saved key -> current key, for results written before a statistic was renamed
RENAMED_STATS = {"sparsity": "sparsity_visible"}
SPARSITY_THRESHOLD = 0.1
MAX_TOKENS = DEFAULT_CAP  # the default cap; the model's own maximum applies when it is smaller


@dataclass
class HeadStats:
    label: str
    layers: int
    heads: int
    examples: int
    mean: dict[str, np.ndarray]  # stat -> [layers, heads]
    ci: dict[str, np.ndarray]  # 95% half-width
    notes: list[str] = field(default_factory=list)
    truncated: int = 0  # examples cut (from the left of the question) to fit the token limit; see notes

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "layers": self.layers,
            "heads": self.heads,
            "examples": self.examples,
            "mean": {k: _nan_to_none(v) for k, v in self.mean.items()},
            "ci": {k: _nan_to_none(v) for k, v in self.ci.items()},
            "notes": self.notes,
            "truncated": self.truncated,
        }

    @classmethod
    def from_dict(cls, d: dict) -> HeadStats:
        """Reads saved statistics, old ones too: a renamed key (`sparsity`, the visible-keys definition) is read
        under its current name, and a statistic the file lacks is all-nan with a note saying to recompute."""

        def arr(m: dict) -> dict[str, np.ndarray]:
            out = {}
            for k, v in m.items():
                key = RENAMED_STATS.get(k, k)
                if key in m and key != k:  # both the old and the new key: the new one wins
                    continue
                out[key] = np.array(v, dtype=float)  # None -> nan
            return out

        mean, ci = arr(d["mean"]), arr(d["ci"])
        notes = list(d.get("notes", []))
        shape = (d["layers"], d["heads"])
        missing = [s for s in STATS if s not in mean]
        for s in missing:
            mean[s] = np.full(shape, np.nan)
        for s in STATS:
            ci.setdefault(s, np.full(shape, np.nan))
        if missing:
            notes.append(
                "saved before these statistics existed, so they are empty here (compute again to see "
                "them): " + ", ".join(STATS[s] for s in missing)
            )
        truncated = d.get("truncated")
        if truncated is None:  # saved before the count existed: "N example(s) longer than ... were cut ..."
            import re

            found = [re.match(r"(\d+) example\(s\) longer than", n) for n in notes]
            truncated = next((int(m.group(1)) for m in found if m), 0)
        return cls(d["label"], d["layers"], d["heads"], d["examples"], mean, ci, notes, int(truncated))


def _nan_to_none(a: np.ndarray) -> list:
    return [[None if not np.isfinite(x) else round(float(x), 6) for x in row] for row in a]


def _blocks(model) -> list[tuple[str, torch.nn.Module]]:
    """The transformer blocks in forward order, named by their list (encoder / decoder) and index."""
    from kd_analysis.models.info import config_shape
    from kd_analysis.models.students import layer_lists

    shape = config_shape(model.config)
    counts = {c for c in (shape.get("layers"), shape.get("decoder_layers")) if c}
    names = layer_lists(model, counts)
    if getattr(model.config, "is_encoder_decoder", False):  # the encoder's self-attention over the input
        names = [n for n in names if "encoder" in n.split(".")] or names[:1]
    if not names:
        raise KDLensError("could not find this model's transformer blocks to read attention from")
    modules = dict(model.named_modules())
    return [(f"{name}.{i}", block) for name in names for i, block in enumerate(modules[name])]


class HeadCollector:
    """Hooks that turn each block's first attention-weights output into per-head statistics."""

    def __init__(self, model, on_layer: Callable[[int, torch.Tensor], None], only: set[int] | None = None):
        self.on_layer, self.seen, self.handles = on_layer, set(), []
        self.blocks = _blocks(model)
        for idx, (_, block) in enumerate(self.blocks):
            if only is not None and idx not in only:
                continue
            for mod in block.modules():
                self.handles.append(mod.register_forward_hook(self._hook(idx)))

    def _hook(self, idx: int):
        def hook(_mod, _inp, out):
            if idx in self.seen or not isinstance(out, tuple):
                return
            for w in out[1:]:  # (output, weights) in most families; T5 puts its position bias first
                if (
                    isinstance(w, torch.Tensor)
                    and w.dim() == 4
                    and w.shape[-1] == w.shape[-2]
                    and bool(torch.allclose(w[0].sum(-1).float(), torch.ones((), device=w.device), atol=1e-3))
                ):
                    self.seen.add(idx)
                    self.on_layer(idx, w[0].detach().float())
                    return

        return hook

    def reset(self) -> None:
        self.seen.clear()

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def visible_keys(tokens: torch.Tensor, causal: bool) -> torch.Tensor:
    """[L, L] bool: the keys each query may see. tokens [L] bool marks real tokens (False = padding); padding
    is neither a query nor a key, and a causal model's query i sees keys 0..i."""
    tokens = tokens.bool()
    valid = tokens[:, None] & tokens[None, :]
    return torch.tril(valid) if causal else valid


def _per_head(
    a: torch.Tensor, valid: torch.Tensor, numbers: torch.Tensor, tokens: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """a [H, L, L]; valid [L, L] bool (keys each query may see); numbers [L] bool; tokens [L] bool (real
    tokens; default all). Query rows of padding are skipped and padding keys never count, so L below is the
    number of real tokens. Returns stat -> [H]."""
    if tokens is None:
        tokens = torch.ones(a.shape[-1], dtype=torch.bool, device=a.device)
    tokens = tokens.bool()
    valid = valid & tokens[:, None] & tokens[None, :]
    n = tokens.sum().clamp(min=1)  # the example's own length L
    q = tokens.to(a.dtype)
    per_row = lambda x: (x * q).sum(-1) / n  # noqa: E731 - [H, L] -> mean over real query rows [H]
    big = (a > SPARSITY_THRESHOLD) & valid  # masked (causal, padding) positions count as zeros
    ent = -(a.clamp_min(1e-12).log() * a * valid).sum(-1)  # [H, L]
    digits = valid & numbers.bool()[None, :]
    return {
        "entropy": per_row(ent),
        "self": per_row(torch.diagonal(a, dim1=-2, dim2=-1)),
        "sparsity_paper": big.sum((-2, -1)).to(a.dtype) / (n * n),
        "sparsity_visible": per_row(big.sum(-1) / valid.sum(-1).clamp(min=1)),
        "numbers": per_row((a * digits).sum(-1))
        if bool((numbers.bool() & tokens).any())
        else torch.full(a.shape[:1], math.nan),
    }


def batch_head_stats(
    attn: torch.Tensor, attention_mask: torch.Tensor, causal: bool, numbers: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Per-head statistics of a padded batch: attn [B, H, L, L], attention_mask [B, L] (1 = real token, left or
    right padding), numbers [B, L] bool (default: none). Each example is measured on its own real tokens, so
    padding columns never count. Returns stat -> [B, H] (without prev_similarity, which needs two layers)."""
    if numbers is None:
        numbers = torch.zeros(attention_mask.shape, dtype=torch.bool, device=attn.device)
    rows = []
    for a, mask, num in zip(attn.float(), attention_mask.bool(), numbers):
        rows.append(_per_head(a, visible_keys(mask, causal), num, mask))
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    fa, fb = a.flatten(1), b.flatten(1)
    return (fa * fb).sum(-1) / (fa.norm(dim=-1) * fb.norm(dim=-1)).clamp_min(1e-12)


def digit_positions(tokenizer, ids: Sequence[int]) -> torch.Tensor:
    return torch.tensor([any(ch.isdigit() for ch in tokenizer.decode([i])) for i in ids], dtype=torch.bool)


def is_causal(loaded) -> bool:
    return loaded.head == "lm" or bool(getattr(loaded.model.config, "is_decoder", False))


def encode(loaded, text: str, max_tokens: int = MAX_TOKENS) -> tuple[torch.Tensor, bool]:
    """Token ids of `text`, cut from the left to `max_tokens` when longer (the end of the prompt stays, and so do
    leading and trailing special tokens such as [CLS] / <s> and [SEP]), and whether it was cut."""
    enc = loaded.tokenizer(text, truncation=False, return_special_tokens_mask=True)
    ids = list(enc["input_ids"])
    mask = enc.get("special_tokens_mask") or [0] * len(ids)
    return torch.tensor(keep_ends(ids, mask, max_tokens), dtype=torch.long), len(ids) > max_tokens


def fit_prompt(loaded, ex: Example, prompt: Callable[[Example], str], limit: Limit) -> tuple[str, Cut | None]:
    """`prompt(ex)`, with the start of the question cut off when the prompt is longer than the limit, so the
    template around it (its start, and the answer cue at its end) stays. When even an empty question leaves the
    prompt too long, the prompt itself is cut from the left (see `encode`)."""
    from dataclasses import replace

    tok = loaded.tokenizer
    text = prompt(ex)
    n = len(tok(text)["input_ids"])
    if n <= limit.tokens:
        return text, None
    try:
        kept, cut = fit_left(tok, ex.text, lambda q: len(tok(prompt(replace(ex, text=q)))["input_ids"]), limit)
        return prompt(replace(ex, text=kept)), cut
    except KDLensError:
        return text, Cut(limit.tokens, n, limit, where="prompt")


def forward_with_attentions(loaded, ids: torch.Tensor) -> None:
    from kd_analysis.models.loading import attention_weights

    model = loaded.model
    x = ids.unsqueeze(0).to(loaded.device)
    with attention_weights(model), torch.no_grad():
        if loaded.head == "choice_head":
            model(input_ids=x.unsqueeze(1))
        elif getattr(model.config, "is_encoder_decoder", False):  # T5 returns weights only when asked
            model.get_encoder()(input_ids=x, output_attentions=True)
        else:
            model(input_ids=x)


def head_stats(
    loaded,
    examples: Sequence[Example],
    prompt: Callable[[Example], str],
    *,
    label: str = "",
    max_tokens: int = MAX_TOKENS,
    progress: Callable[[int, int], None] | None = None,
) -> HeadStats:
    """Statistics of every head over `examples`, each read as `prompt(example)`. `max_tokens` caps the input
    (the model's own maximum applies when smaller); a longer prompt loses the start of its question, and the
    count of cut examples is in `truncated`, with a note."""
    if not examples:
        raise KDLensError("choose at least one example")
    limit = token_limit(loaded, max_tokens)
    blocks = _blocks(loaded.model)
    n_layers = len(blocks)
    state: dict[str, object] = {}
    per_example: dict[str, list[list[torch.Tensor | None]]] = {s: [] for s in STATS}
    notes, cuts = [], []

    def on_layer(idx: int, a: torch.Tensor) -> None:
        valid, numbers = state["valid"], state["numbers"]
        stats = _per_head(a, valid, numbers)
        prev = state.get("prev")
        stats["prev_similarity"] = (
            _cosine(a, prev) if prev is not None and prev.shape == a.shape else torch.full(a.shape[:1], math.nan)
        )
        state["prev"] = a
        for s, v in stats.items():
            state["row"][s][idx] = v.cpu()

    collector = HeadCollector(loaded.model, on_layer)
    heads = None
    try:
        for n, ex in enumerate(examples, 1):
            text, cut = fit_prompt(loaded, ex, prompt, limit)
            if cut:
                cuts.append((ex.id, cut))
            ids, _ = encode(loaded, text, limit.tokens)
            L = len(ids)
            valid = visible_keys(torch.ones(L, dtype=torch.bool), is_causal(loaded))
            state.update(
                valid=valid.to(loaded.device),
                numbers=digit_positions(loaded.tokenizer, ids.tolist()).to(loaded.device),
                prev=None,
                row={s: [None] * n_layers for s in STATS},
            )
            collector.reset()
            forward_with_attentions(loaded, ids)
            if len(collector.seen) == 0:
                raise KDLensError("this model returned no attention weights (it may not support eager attention)")
            for s in STATS:
                per_example[s].append(state["row"][s])
            heads = heads or next(v for v in state["row"]["entropy"] if v is not None).shape[0]
            if progress:
                progress(n, len(examples))
    finally:
        collector.close()
    if cuts:
        ex_id, longest = max(cuts, key=lambda c: c[1].total)
        where = (
            "the question"
            if all(c.where == "question" for _, c in cuts)
            else "the question (of the whole prompt where the rest of it alone is over the limit)"
        )
        notes.append(
            f"{len(cuts)} of {len(examples)} example(s) were longer than {limit.describe()} and were cut "
            f"from the left of {where}, so the end of the prompt (the answer cue) stays; the longest, "
            f"example {ex_id}: {longest.note()}"
        )
    mean, ci = {}, {}
    for s in STATS:
        arr = np.full((len(examples), n_layers, heads), np.nan)
        for e, row in enumerate(per_example[s]):
            for layer, v in enumerate(row):
                if v is not None:
                    arr[e, layer] = v.numpy()
        mean[s], ci[s] = _mean_ci(arr)
    return HeadStats(label, n_layers, heads, len(examples), mean, ci, notes, len(cuts))


def _mean_ci(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.stats import t

    with warnings.catch_warnings():  # all-nan cells (layer 0's similarity) are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        n = np.sum(np.isfinite(arr), axis=0)
        mean = np.nanmean(arr, axis=0)
        sd = np.nanstd(arr, axis=0, ddof=1)
        half = t.ppf(0.975, np.maximum(n - 1, 1)) * sd / np.sqrt(np.maximum(n, 1))
    half[n < 2] = np.nan
    return mean, half


def head_matrix(loaded, text: str, layer: int, head: int, max_tokens: int = 128) -> tuple[np.ndarray, list[str]]:
    """One head's attention matrix on one input, with token labels (hooks only that layer)."""
    ids, _ = encode(loaded, text, max_tokens)
    got: dict[str, torch.Tensor] = {}
    n_layers = len(_blocks(loaded.model))
    if not 0 <= layer < n_layers:
        raise KDLensError(f"layer must be in 0..{n_layers - 1} (got {layer})")
    collector = HeadCollector(loaded.model, lambda i, a: got.setdefault("a", a), only={layer})
    try:
        forward_with_attentions(loaded, ids)
    finally:
        collector.close()
    if "a" not in got:
        raise KDLensError("this model returned no attention weights")
    a = got["a"]
    if not 0 <= head < a.shape[0]:
        raise KDLensError(f"head must be in 0..{a.shape[0] - 1} (got {head})")
    labels = [loaded.tokenizer.decode([i]) for i in ids.tolist()]
    return a[head].cpu().numpy(), labels
