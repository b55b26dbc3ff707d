"""The Summary page's story: sections from the run store, the self-contained HTML export, the CLI and the page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kd_analysis.demo.story import Section, build_story, story_html, write_story
from kd_analysis.runs import RunStore
from tests.helpers.cli import assert_clean_error, cli
from tests.helpers.groups import build_groups

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def story_store(run_root, monkeypatch):
    import kd_analysis.demo.reference as reference

    monkeypatch.setattr(reference, "GROUP_PREFIX", "")  # the test's groups are named by build_groups
    store, _made, _ = build_groups(RunStore(run_root))
    return store


def test_sections_say_what_the_store_holds_and_what_regenerates_the_rest(story_store):
    sections = {s.key: s for s in build_story(story_store)}
    assert list(sections) == ["size", "kd", "losses", "saliency", "priming"]
    kd = sections["kd"]
    assert kd.missing is None and len(kd.figures) == 1
    bars = kd.figures[0].data[0]
    assert list(bars.x) == ["CE only", "KL"]  # the CE-only student beside the best KD student
    text = " ".join(kd.sentences)
    assert re.search(r"KD \(KL\) beats CE only by \d+\.\d points \(95% interval", text)
    assert "3 seeds × 120 examples" in text and "closes" in text and "of the gap" in text
    assert len(sections["losses"].sentences) >= 6 and sections["losses"].figures
    for key in ("size", "saliency", "priming"):
        assert sections[key].missing and "make-reference" in sections[key].missing


def test_story_html_is_self_contained_and_escaped(story_store, tmp_path):
    sections = build_story(story_store)
    sections.append(
        Section("x", "6. <script>alert(1)</script>", "pages/summary.py", "Summary", sentences=["a <b>bold</b> claim"])
    )
    text = story_html(sections)
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "a &lt;b&gt;bold&lt;/b&gt; claim" in text
    assert not re.search(r"<script[^>]+src=", text)  # plotly inlined: nothing to fetch
    assert "Plotly" in text and text.count("<h2>") == 6 and "Not available" in text
    out = write_story(tmp_path / "story.html", story_store)
    assert Path(out["path"]).read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert out["missing"] == ["1. Size and speed", "4. What the teacher looks at", "5. Priming the teacher"]


def test_cli_story_writes_the_file_and_refuses_a_folder(story_store, run_root, tmp_path):
    out = json.loads(
        cli("story", "--out", str(tmp_path / "s.html"), "--json", env={"KD_LENS_RUNS": str(run_root)}).stdout
    )
    assert out["bytes"] > 1_000_000 and len(out["sections"]) == 5  # plotly's JavaScript is inside
    assert_clean_error(cli("story", "--out", str(tmp_path), env={"KD_LENS_RUNS": str(run_root)}), "is a folder")


def test_summary_page_draws_every_section_with_links_and_export():
    """On the shipped runs (the repository's cached_runs), as a fresh clone opens it."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.run()
    at.switch_page("pages/summary.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [h.value for h in at.header] == [
        "1. Size and speed",
        "2. Does distillation work?",
        "3. What the losses do",
        "4. What the teacher looks at",
        "5. Priming the teacher",
    ]
    assert not at.info, [i.value for i in at.info]  # every section has its shipped runs
    text = " ".join(m.value for m in at.markdown)
    assert "faster" in text and "seeds × 500 examples" in text and "random words would" in text


def test_the_toy_picture_is_precomputed_and_refitted_when_its_settings_change(run_root, monkeypatch):
    import kd_analysis.loss_explorer.toy as toy
    from kd_analysis.demo.story import TOY_FILE, toy_result

    store = RunStore(run_root)
    run_root.mkdir(parents=True, exist_ok=True)
    first = toy_result(store)
    assert (run_root / TOY_FILE).exists() and first["fits"]
    monkeypatch.setattr(toy, "fit_toy", lambda *a, **k: (_ for _ in ()).throw(AssertionError("refitted")))
    assert toy_result(store) == first  # read back, not fitted again
    saved = json.loads((run_root / TOY_FILE).read_text())
    saved["config"]["tau"] = 3.0  # fitted under other settings: not reused
    (run_root / TOY_FILE).write_text(json.dumps(saved))
    with pytest.raises(AssertionError, match="refitted"):
        toy_result(store)
