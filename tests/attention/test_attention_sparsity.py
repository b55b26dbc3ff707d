"""The two attention sparsities against hand-computed numbers: Goyal et al.'s mean(A > 0.1) over the whole
L x L matrix (masked positions count as zeros) and our share among each query's visible keys; padding never
counts; saved results with the old `sparsity` key (the visible-keys definition) still open."""

import json

import numpy as np
import pytest
import torch

from kd_analysis.attention.compare import diff_map, layer_profile
from kd_analysis.attention.stats import STATS, HeadStats, _per_head, batch_head_stats, visible_keys

pytestmark = pytest.mark.numeric  # floats compared across computation orders: rerun on other kernels

# A 4 x 4 causal attention matrix, one head. Weights above 0.1: 1 + 2 + 1 + 4 = 8 of 16 cells.
CAUSAL = torch.tensor(
    [[1.00, 0.00, 0.00, 0.00], [0.50, 0.50, 0.00, 0.00], [0.05, 0.05, 0.90, 0.00], [0.25, 0.25, 0.25, 0.25]]
)
PAPER = 8 / 16  # 0.5
VISIBLE = (1 / 1 + 2 / 2 + 1 / 3 + 4 / 4) / 4  # 5/6: each row's share among its visible keys


def test_stats_list_offers_both_sparsities_with_their_labels():
    assert STATS["sparsity_paper"] == "Sparsity (paper: share of all L×L weights > 0.1)"
    assert STATS["sparsity_visible"] == "Sparsity (visible keys > 0.1)"
    assert "sparsity" not in STATS


def test_causal_matrix_gives_the_hand_computed_values():
    out = _per_head(
        CAUSAL[None], visible_keys(torch.ones(4, dtype=torch.bool), causal=True), torch.zeros(4, dtype=torch.bool)
    )
    assert out["sparsity_paper"].item() == pytest.approx(PAPER)
    assert out["sparsity_visible"].item() == pytest.approx(VISIBLE)
    assert out["sparsity_paper"].item() != pytest.approx(out["sparsity_visible"].item())


def test_bidirectional_matrix_the_two_definitions_agree():
    a = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.05, 0.05, 0.45, 0.45], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.0, 1.0]])
    out = _per_head(
        a[None], visible_keys(torch.ones(4, dtype=torch.bool), causal=False), torch.zeros(4, dtype=torch.bool)
    )
    # > 0.1 (strictly): 1 + 2 + 4 + 1 = 8 of 16; every key is visible, so both read 0.5
    assert out["sparsity_paper"].item() == pytest.approx(0.5)
    assert out["sparsity_visible"].item() == pytest.approx(0.5)


def test_masked_positions_above_threshold_do_not_count():
    """Weights in the causal upper triangle are never counted, even if a model left them non-zero."""
    a = CAUSAL.clone()
    a[0, 3] = 0.5
    out = _per_head(
        a[None], visible_keys(torch.ones(4, dtype=torch.bool), causal=True), torch.zeros(4, dtype=torch.bool)
    )
    assert out["sparsity_paper"].item() == pytest.approx(PAPER)
    assert out["sparsity_visible"].item() == pytest.approx(VISIBLE)


def _short_padded(side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-token example padded to 4. Real 2 x 2 part [[1, 0], [0.3, 0.7]]: 3 weights > 0.1, so the paper's
    sparsity is 3 / 2² = 0.75 (3 / 4² = 0.1875 if padding were counted) and the visible one (1 + 1) / 2 = 1.
    Padding rows and columns hold large weights that must be ignored."""
    a = torch.full((4, 4), 0.4)
    real = [0, 1] if side == "right" else [2, 3]
    i, j = real
    a[i, i], a[i, j] = 1.0, 0.0
    a[j, i], a[j, j] = 0.3, 0.7
    mask = torch.zeros(4, dtype=torch.long)
    mask[real] = 1
    return a, mask


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_batch_uses_each_examples_own_length(side):
    short, mask = _short_padded(side)
    attn = torch.stack([CAUSAL, short])[:, None]  # [B=2, H=1, 4, 4]
    masks = torch.stack([torch.ones(4, dtype=torch.long), mask])
    out = batch_head_stats(attn, masks, causal=True)
    assert out["sparsity_paper"].shape == (2, 1)
    assert out["sparsity_paper"][0, 0].item() == pytest.approx(PAPER)
    assert out["sparsity_visible"][0, 0].item() == pytest.approx(VISIBLE)
    assert out["sparsity_paper"][1, 0].item() == pytest.approx(0.75)
    assert out["sparsity_visible"][1, 0].item() == pytest.approx(1.0)
    # the other statistics skip padding rows too: diagonal of the real rows is 1.0 and 0.7
    assert out["self"][1, 0].item() == pytest.approx(0.85)


def test_padded_example_equals_the_same_example_unpadded():
    short, mask = _short_padded("right")
    padded = batch_head_stats(short[None, None], mask[None], causal=True)
    alone = batch_head_stats(short[:2, :2][None, None], torch.ones(1, 2, dtype=torch.long), causal=True)
    for k in padded:
        torch.testing.assert_close(padded[k], alone[k], equal_nan=True, msg=k)


def _old_saved(layers=2, heads=3) -> dict:
    rng = np.random.default_rng(0)
    grid = lambda: rng.uniform(0, 1, (layers, heads)).round(6).tolist()  # noqa: E731
    keys = ["entropy", "self", "sparsity", "numbers", "prev_similarity"]  # the key set saved before the split
    return {
        "label": "none",
        "layers": layers,
        "heads": heads,
        "examples": 5,
        "mean": {k: grid() for k in keys},
        "ci": {k: grid() for k in keys},
        "notes": [],
    }


def test_old_sparsity_key_is_read_as_the_visible_definition():
    old = _old_saved()
    s = HeadStats.from_dict(json.loads(json.dumps(old)))
    assert "sparsity" not in s.mean
    np.testing.assert_allclose(s.mean["sparsity_visible"], old["mean"]["sparsity"])
    np.testing.assert_allclose(s.ci["sparsity_visible"], old["ci"]["sparsity"])
    # every statistic the page and CLI offer opens; the one the old run never computed is empty, with a note
    assert set(STATS) <= set(s.mean) and set(STATS) <= set(s.ci)
    assert np.isnan(s.mean["sparsity_paper"]).all() and s.mean["sparsity_paper"].shape == (2, 3)
    assert any(STATS["sparsity_paper"] in n for n in s.notes)
    assert np.isnan(layer_profile(s, "sparsity_paper")).all()
    other = HeadStats.from_dict(_old_saved())
    assert np.isnan(diff_map(s, other, "sparsity_paper").diff).all()


def test_new_results_round_trip_without_notes():
    new = _old_saved()
    for part in ("mean", "ci"):
        new[part]["sparsity_visible"] = new[part].pop("sparsity")
        new[part]["sparsity_paper"] = [[0.1] * 3] * 2
    s = HeadStats.from_dict(json.loads(json.dumps(new)))
    again = HeadStats.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again.notes == [] and set(again.mean) == set(STATS)
    np.testing.assert_allclose(again.mean["sparsity_paper"], 0.1)
    np.testing.assert_allclose(again.mean["sparsity_visible"], new["mean"]["sparsity_visible"])


def test_shipped_head_statistics_carry_both_sparsities():
    """Every shipped head-statistics file opens with both definitions computed (no NaN placeholders), and the
    paper's share of all L×L weights is below the share among visible keys, as it must be on causal models."""
    from pathlib import Path

    paths = sorted(Path(__file__).resolve().parents[2].glob("cached_runs/reference-*/stats.json"))
    assert paths, "the demo ships head statistics"
    for p in paths:
        for s in (HeadStats.from_dict(d) for d in json.loads(p.read_text())):
            assert s.notes == [], (p, s.notes)
            paper, visible = s.mean["sparsity_paper"], s.mean["sparsity_visible"]
            assert np.isfinite(paper).all() and np.isfinite(visible).all(), p
            assert (paper <= visible + 1e-9).all(), p
