"""The Compare page's group view (AppTest) and its figures."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from kd_analysis.plots.groups import group_band_curves, group_bars
from kd_analysis.runs import RunStore
from tests.helpers.groups import build_groups

ROOT = Path(__file__).resolve().parents[2]


def test_group_bars_show_mean_band_and_every_seed():
    rows = [
        {
            "name": "<b>CE</b>",
            "mean": 0.5,
            "low": 0.4,
            "high": 0.6,
            "accuracies": [0.45, 0.5, 0.55],
            "seeds": 3,
            "eval examples": 500,
        },
        {"name": "KL", "mean": 0.7, "low": None, "high": None, "accuracies": [0.7], "seeds": 1, "eval examples": 500},
    ]
    fig = group_bars(rows, teacher=0.9)
    bars, dots = fig.data[0], fig.data[1]
    assert list(bars.y) == [0.5, 0.7] and bars.x[0] == "&lt;b&gt;CE&lt;/b&gt;"
    assert list(bars.error_y.array) == [0.09999999999999998, 0] and next(iter(bars.error_y.arrayminus)) > 0.09
    assert list(dots.y) == [0.45, 0.5, 0.55, 0.7]
    assert any("teacher 90.0%" in (a.text or "") for a in fig.layout.annotations)
    curves = group_band_curves(
        {"KL": {"step": [0, 150], "mean": [0.2, 0.7], "low": [0.18, 0.65], "high": [0.22, 0.75]}}, "eval_accuracy"
    )
    band, line = curves.data
    assert list(band.y) == [0.22, 0.75, 0.65, 0.18] and list(line.y) == [0.2, 0.7]


def test_compare_page_groups_view_defaults_to_best_kd_against_its_ce_twin(run_root):
    _store, _made, _ = build_groups(RunStore(run_root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    at.query_params["view"] = "groups"
    at.switch_page("pages/compare_runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "gap closed" in d.value.columns)
    assert set(table["group"]) == {"KL", "CE only"} and set(table["seeds"]) == {3}
    kl = table.set_index("group").loc["KL"]
    assert "(95%" in kl["gap closed"] and table.set_index("group").loc["CE only", "gap closed"].startswith("CE only")
    assert "Groups (CSV)" in [b.proto.label for b in at.get("download_button")]  # the table can be taken away
    heading = next(m.value for m in at.markdown if "beats" in m.value or "not distinguishable" in m.value)
    assert heading.startswith("#### KL beats CE only by") and "3 seeds × 120 examples" in heading
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["seeds · examples"] == "3×3 · 120" and metrics["A − B"].endswith("pts")
    at.selectbox(key="grp_a").select(at.selectbox(key="grp_b").value).run()
    assert any("Pick two different groups or runs" in i.value for i in at.info)
    # one seed against one seed: single runs are in the pickers too, with the same paired statistics
    at.selectbox(key="grp_a").select(_made["KL"][0]).run()
    at.selectbox(key="grp_b").select(_made["CE only"][0]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert {m.label: m.value for m in at.metric}["seeds · examples"] == "1×1 · 120"


def test_runs_view_shows_the_gap_closed_against_the_ce_only_twin(run_root):
    from kd_analysis.evidence.summary import run_gaps

    store, made, _ = build_groups(RunStore(run_root))
    kl, ce = made["KL"][0], made["CE only"][0]
    gaps = run_gaps(store, [kl, ce])
    assert set(gaps) == {kl} and gaps[kl]["twin"] == ce  # seed 0's twin is the CE-only seed 0
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    at.query_params["runs"] = f"{kl},{ce}"
    at.switch_page("pages/compare_runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "gap closed" in d.value.columns)  # rows in the chosen order
    lo, hi = gaps[kl]["interval"]
    assert list(table["gap closed"]) == [f"{gaps[kl]['value']:.0%} ({lo:.0%} to {hi:.0%})", ""]
