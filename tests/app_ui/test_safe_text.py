"""Text from a user's files is shown literally: never a link, an image, HTML, LaTeX or Streamlit markup.

Unit tests of app_ui.safe_text, then every page through AppTest with a data file, run names, failure reasons and
model names that carry Markdown payloads: no Markdown-rendering element may hold one unescaped.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_ui.safe_text import code, md

ROOT = Path(__file__).resolve().parents[2]
HOME = str(ROOT / "app.py")
TIMEOUT = 180

LINK = "[click](javascript:alert(1))"
IMAGE = "![img](http://example.invalid/x.png)"
TAG = "<img src=x onerror=alert(1)>"
PAYLOADS = [LINK, IMAGE, TAG, "**bold**", "$x$", ":red[x]"]
# The part of each payload that Markdown (or Streamlit's directives, or LaTeX) would act on.
NEEDLES = ["](javascript:", "](http://example.invalid", "<img", "**bold**", "$x$", ":red["]
ALL = " ".join(PAYLOADS)


def raw_needles(text: str) -> list[str]:
    """The needles that occur in `text` without a backslash escaping their first character."""
    found = []
    for needle in NEEDLES:
        for m in re.finditer(re.escape(needle), text):
            backslashes = len(text[: m.start()]) - len(text[: m.start()].rstrip("\\"))
            if backslashes % 2 == 0:
                found.append(needle)
                break
    return found


# --- the helper -------------------------------------------------------------------------------------------------


def _render(source: str) -> str:
    """CommonMark + tables + strikethrough, as markdown-it-py (a dependency of rich, hence of streamlit) renders."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(source)


def _text(rendered: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()


@pytest.mark.parametrize(
    "payload",
    PAYLOADS
    + [
        ALL,
        "a \\ backslash, `code`, ~~gone~~, _under_, {braces}, a|b|c, &lt;, 50% & more",
        "# heading",
        "- item",
        "+ item",
        "1. item",
        "> quote",
        "text\n===",
        "text\n---",
        "| a | b |\n|---|---|",
        "<script>alert(1)</script>",
        "<http://example.invalid>",
        "www.example.invalid",
        ":material/home: :smile:",
    ],
)
def test_md_source_has_no_live_markup_and_renders_the_text(payload):
    source = md(payload)
    assert not raw_needles(source), source
    for rendered in (_render(source), _render(f"**Label:** {source}")):  # alone (block syntax) and after ours
        for tag in (
            "<a ",
            "<img",
            "<em>",
            "<strong>",
            "<code>",
            "<h1>",
            "<h2>",
            "<ul>",
            "<ol>",
            "<blockquote>",
            "<table>",
            "<del>",
            "<s>",
            "<script",
            "<hr",
            "<pre>",
        ):
            assert tag not in rendered.replace("<strong>Label:</strong>", ""), (payload, rendered)
    assert _text(_render(source)) == payload
    assert _text(_render(f"**Label:** {source}")) == f"Label: {payload}"


def test_md_escapes_every_markdown_character():
    assert md(LINK) == r"\[click\]\(javascript\:alert\(1\)\)"
    assert md("$x$ :red[x] <b>") == r"\$x\$ \:red\[x\] \<b\>"
    assert md("a\\b") == r"a\\b" and md("plain words 42") == "plain words 42"
    assert md(None) == "None" and md(3) == "3" and md(ValueError("bad *x*")) == r"bad \*x\*"


@pytest.mark.parametrize("text", ["run-1", "a`b", "`start", "end`", "``double``", " spaced "])
def test_code_span_shows_the_text_literally(text):
    rendered = _render(code(text))
    assert rendered.count("<code>") == 1
    assert html.unescape(re.search(r"<code>(.*)</code>", rendered).group(1)) == text


# --- every page ---------------------------------------------------------------------------------------------------


def rendered_sources(at: AppTest) -> list[str]:
    """Every string on the page that Streamlit renders as Markdown (plain-text places left out)."""
    out = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "header", "subheader"):
        out += [e.value for e in getattr(at, kind)]
    for m in at.metric:
        out += [m.label, m.value, m.delta or ""]
    for p in at.get("progress"):
        out.append(p.proto.text)
    for group in (
        at.expander,
        at.status,
        at.tabs,
        at.button,
        at.radio,
        at.selectbox,
        at.multiselect,
        at.text_input,
        at.text_area,
        at.number_input,
        at.checkbox,
        at.toggle,
    ):
        out += [w.label for w in group]
    for r in at.radio:
        out += list(r.options)  # radio options render Markdown; selectbox / multiselect options do not
    return out


def assert_literal(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    bad = [s for s in rendered_sources(at) if raw_needles(s)]
    assert not bad, bad


@pytest.fixture
def mc_file(tmp_path) -> Path:
    """A CommonsenseQA-style file whose name, questions and choices carry the payloads."""
    f = tmp_path / f"{LINK} mc.jsonl"
    f.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"q{i}",
                    "question": f"Question {i}: {ALL}",
                    "answerKey": "A",
                    "choices": {
                        "label": ["A", "B", "C"],
                        "text": [f"{LINK} one", f"{IMAGE} two", f"{TAG} **bold** $x$"],
                    },
                }
            )
            + "\n"
            for i in range(4)
        ),
        encoding="utf-8",
    )
    return f


def _app(data: Path | None = None, **state) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT)
    if data is not None:
        at.session_state["_kd_data_source"] = str(data)
    for k, v in state.items():
        at.session_state[f"_kd_{k}"] = v
    return at


def _page(path: str, data: Path | None = None, **state) -> AppTest:
    at = _app(data, **state)
    at.switch_page(path)  # the page itself on the first run, not the home page first
    return at.run()


def _failed_run(store, kind: str, config: dict, run_id: str):
    run = store.create(kind, {"name": f"{LINK} {IMAGE}", **config}, run_id=run_id)
    run.set_status("failed", reason=f"{TAG} broke on $x$ and :red[x] via {LINK}")
    return run


def test_home_page(mc_file):
    at = _app(mc_file).run()
    assert_literal(at)
    assert any(md(mc_file.name) == m.value for m in at.metric)  # the data set's name, shown as it is


def test_models_and_data_page(mc_file):
    at = _page("pages/models_and_data.py", mc_file)
    assert_literal(at)
    assert any(md(str(mc_file)) in s.value for s in at.subheader)


def test_loss_explorer_page(tmp_path):
    bad = tmp_path / f"{LINK} bad.csv"  # an error message names the file
    bad.write_bytes(b"text,label\n\xff\xfe,1\n")
    at = _page("pages/loss_explorer.py", bad, loss_view="pair")
    assert_literal(at)
    assert any(md(bad.name) in e.value for e in at.error)


def test_saliency_rationales_page(mc_file, tiny_dir, run_root):
    from kd_analysis.runs import RunStore

    _failed_run(RunStore(run_root), "rationales", {}, "bad-job")
    from tests.helpers.pages import attribute_live

    at = _page(
        "pages/saliency_rationales.py",
        mc_file,
        teacher_source=str(tiny_dir / "bert"),
        teacher_task="multiple_choice",
        student_layers=1,
    )
    attribute_live(at)
    assert_literal(at)
    assert any("answered" in m.value and md(f"{LINK} one") in m.value for m in at.markdown)


def test_priming_attention_page(tmp_path, run_root):
    from kd_analysis.priming.job import KIND, OUTPUTS_FILE, outputs_config
    from kd_analysis.priming.teacher import TeacherOutput
    from kd_analysis.runs import RunStore

    data = tmp_path / "arith.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"a{i}",
                    "question": f"{ALL} How many pens, {i} + 2?",
                    "answer": f"{LINK} {i} + 2 = {i + 2}\n#### {i + 2}",
                }
            )
            + "\n"
            for i in range(2)
        ),
        encoding="utf-8",
    )
    templates = {"none": "{question}", "gold": "{question}\nThe answer is {answer}."}
    job = _failed_run(
        RunStore(run_root), KIND, outputs_config({"source": IMAGE}, str(data), templates, limit=2), "outs"
    )
    job.write_text(
        OUTPUTS_FILE,
        "".join(
            json.dumps(
                TeacherOutput(
                    example_id=f"a{i}",
                    strategy=s,
                    prompt_tokens=20,
                    answer_tokens=9,
                    answer_logprob_per_token=-1.0,
                    generated=LINK,
                    predicted=str(i),
                    correct=False,
                ).to_dict()
            )
            + "\n"
            for s in templates
            for i in range(2)
        ),
    )
    at = _page("pages/priming_attention.py")
    assert_literal(at)
    assert any(m.value.startswith("**Question:** " + md(ALL)) for m in at.markdown)


def test_distillation_runs_page(mc_file, run_root):
    from kd_analysis.runs import RunStore

    run = _failed_run(RunStore(run_root), "train", {"losses": [{"name": "ce", "weight": 1.0}]}, "bad-run")
    run.append_metrics({"step": 1, "loss": 1.0})
    at = _page("pages/distillation_runs.py", mc_file)
    assert_literal(at)
    assert any(md(f"{LINK} {IMAGE}") in m.value for m in at.markdown)


def test_compare_runs_page(run_root):
    from kd_analysis.runs import RunStore

    run = _failed_run(RunStore(run_root), "train", {"losses": [{"name": "ce", "weight": 1.0}]}, "bad-run")
    run.append_metrics({"step": 1, "loss": 1.0, f"loss {TAG}": 0.5})
    at = _page("pages/compare_runs.py")
    assert_literal(at)
    assert at.dataframe  # the page drew its tables
    next(m for m in at.multiselect if m.label == "Curves").set_value(["loss", f"loss {TAG}"]).run()
    assert_literal(at)
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert len(specs) == 2  # figure titles and legends are HTML-escaped (plotly's JSON writes a raw < as \u003c)
    assert not any("<img" in s or "\\u003cimg" in s for s in specs) and any("&lt;img" in s for s in specs)
