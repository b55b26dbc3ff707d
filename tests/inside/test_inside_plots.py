"""The inside views' figures: CKA rows are teacher layers and undefined cells stay blank; the lens puts both
models on one relative-depth axis, with the interval as a band that draws no markers."""

from __future__ import annotations

from kd_analysis.plots.inside import cka_heatmap, lens_by_depth


def _rows(n: int) -> list[dict]:
    return [
        {"layer": i, "depth": i / n, "gold_prob": 0.2 + 0.1 * i, "gold_prob_interval": [0.1, 0.9], "kl_to_final": 1.0 - i / n, "n": 8}
        for i in range(n + 1)
    ]  # fmt: skip


def test_cka_heatmap_rows_are_teacher_layers_and_undefined_cells_stay_blank():
    matrix = [[None, None], [None, 1.0], [None, 0.4]]
    heat = cka_heatmap({"teacher_layers": [0, 1, 2], "student_layers": [0, 1], "matrix": matrix}).data[0]
    assert list(heat.y) == ["T0", "T1", "T2"] and list(heat.x) == ["S0", "S1"]
    assert heat.z[0][0] is None and heat.z[1][1] == 1.0


def test_lens_by_depth_shares_one_axis_and_bands_have_no_markers():
    fig = lens_by_depth({"teacher": _rows(6), "student": _rows(2)})
    lines = [t for t in fig.data if t.name in ("teacher", "student")]
    assert [max(t.x) for t in lines] == [1.0, 1.0] and len(lines[0].x) == 7 and len(lines[1].x) == 3
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 2 and all(b.mode == "lines" for b in bands)
    assert len(lens_by_depth({"teacher": _rows(6), "student": _rows(2)}, "kl_to_final").data) == 2
