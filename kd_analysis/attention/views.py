"""bertviz's head and model views, made to work offline and kept to a bounded size.

bertviz's HTML loads require.js, d3 and jQuery from a CDN, so without a network it draws nothing. We drop the
CDN loader, inline d3 v5 and jQuery from installed PyPI packages (`mpld3`, `xstatic-jquery`) and add a small
`requirejs(deps, cb)` stand-in that hands those globals to bertviz's code. The attention JSON grows ~22 bytes
per value, so tokens, layers and heads are capped and values rounded before bertviz sees them.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from kd_analysis.exceptions import KDLensError

MAX_VIEW_TOKENS = 64
MAX_VIEW_BYTES = 8_000_000
_SHIM = """<script>
window.require = window.require || {config: function () {}};
window.requirejs = function (deps, cb) {
  var mods = {jquery: window.jQuery, d3: window.d3};
  cb.apply(null, deps.map(function (d) { return mods[d]; }));
};
</script>"""


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise KDLensError(
            f"the offline attention view needs the PyPI package {package.split('.')[0]!r} (it is in requirements.txt)"
        )
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.exists():
        raise KDLensError(f"{path} is missing: reinstall {package.split('.')[0]}")
    return path


def offline_assets() -> str:
    d3 = _package_file("mpld3", "js", "d3.v5.min.js").read_text(encoding="utf-8")
    jq = _package_file("xstatic.pkg.jquery", "data", "jquery.min.js").read_text(encoding="utf-8")
    return f"<script>{d3}</script>\n<script>{jq}</script>\n{_SHIM}"


def safe_tokens(tokens: Sequence[str]) -> list[str]:
    """Token text goes into a <script> block: no '<' or '>' may close it early."""
    return [t.replace("<", "\u2039").replace(">", "\u203a") for t in tokens]


def estimate_bytes(layers: int, heads: int, tokens: int) -> int:
    return layers * heads * tokens * tokens * 7 + 200_000


def make_offline(html: str) -> str:
    html = re.sub(r"<script[^>]*src=\"https?://[^\"]*require[^\"]*\"[^>]*>\s*</script>", "", html)
    html = re.sub(r"require\.config\(\{.*?\}\);", "", html, count=1, flags=re.S)
    if re.search(r"src=[\"']https?:|cdnjs|paths\s*:", html):
        raise KDLensError("bertviz's HTML changed shape: it still points at a CDN, so it would not draw offline")
    return offline_assets() + "\n" + html


def attention_view(
    attention: Sequence[torch.Tensor],
    tokens: Sequence[str],
    *,
    kind: str = "head",
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    max_tokens: int = MAX_VIEW_TOKENS,
) -> tuple[str, list[str]]:
    """Offline bertviz HTML for one example's attentions (one [1, H, L, L] tensor per layer) and any notes."""
    from bertviz import head_view, model_view

    notes = []
    if kind not in ("head", "model"):
        raise KDLensError(f"kind must be head or model (got {kind!r})")
    n_layers = len(attention)
    layers = list(layers) if layers is not None else list(range(n_layers))
    if any(not 0 <= i < n_layers for i in layers):
        raise KDLensError(f"layers must be in 0..{n_layers - 1}")
    L = len(tokens)
    if max_tokens < L:
        notes.append(f"showing the last {max_tokens} of {L} tokens (the view grows with the square of the length)")
        tokens = tokens[-max_tokens:]
    att = []
    for i in layers:
        a = attention[i][:, :, -len(tokens) :, -len(tokens) :].float()
        if heads is not None:
            a = a[:, list(heads)]
        att.append(torch.round(a, decimals=3))
    size = estimate_bytes(len(att), att[0].shape[1], len(tokens))
    if size > MAX_VIEW_BYTES:
        raise KDLensError(f"this view would be about {size / 1e6:.0f} MB: choose fewer layers, heads or tokens")
    fn = head_view if kind == "head" else model_view
    html = fn(att, safe_tokens(tokens), html_action="return").data
    return make_offline(html), notes


def example_attentions(loaded, text: str, max_tokens: int = MAX_VIEW_TOKENS) -> tuple[list[torch.Tensor], list[str]]:
    """Every layer's attention on one short input, for the views (bounded by `max_tokens`)."""
    from kd_analysis.attention.stats import HeadCollector, encode, forward_with_attentions

    ids, _ = encode(loaded, text, max_tokens)
    layers: dict[int, torch.Tensor] = {}
    collector = HeadCollector(loaded.model, lambda i, a: layers.setdefault(i, a.unsqueeze(0).cpu()))
    try:
        forward_with_attentions(loaded, ids)
    finally:
        collector.close()
    if not layers:
        raise KDLensError("this model returned no attention weights")
    return [layers[i] for i in sorted(layers)], [loaded.tokenizer.decode([i]) for i in ids.tolist()]
