"""Attribution methods against independent references, rationales, overlap definitions, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from kd_analysis.attribution import METHODS, Attribution, aggregate, attribute, overlap, select_rationale
from kd_analysis.attribution.rationales import Word, answer_positions
from kd_analysis.attribution.targets import build_target
from kd_analysis.data import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.models import ModelSpec
from kd_analysis.models.loading import load_model
from tests.helpers.cli import cli

pytestmark = pytest.mark.numeric  # floats compared across computation orders: rerun on other kernels

MC = Example("q1", "what is two plus three", choices=["five", "six", "seven"], label=0, answer="five")


@pytest.fixture(scope="module")
def classifier(tiny_dir):
    return load_model(ModelSpec(str(tiny_dir / "distilbert")))


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("model", ["mc_head", "decoder", "classifier"])
def test_every_method_on_every_kind_of_model(method, model, request):
    loaded = request.getfixturevalue(model)
    ex = MC if model != "classifier" else Example("s", "the movie was a pure delight", label=1, answer="positive")
    a = attribute(loaded, ex, method=method, steps=16)
    assert a.words and all(torch.isfinite(torch.tensor(w.score)) for w in a.words)
    texts = " ".join(w.text for w in a.words)
    for word in ex.text.split():
        assert word in texts
    if ex.choices:
        assert {"five", "six", "seven"} <= {w.text for w in a.words}  # every choice is part of the input


def test_integrated_gradients_completeness(decoder):
    """captum's delta: attributions sum to f(input) − f(baseline); ours are those sums per token."""
    tgt = build_target(decoder, MC)
    scores, delta = METHODS["ig"].fn(tgt, steps=256)
    with torch.no_grad():
        diff = float(tgt.score(tgt.embeds) - tgt.score(tgt.baseline))
    assert float(scores.sum()) == pytest.approx(diff, abs=max(1e-3, 1e-2 * abs(diff)))
    assert delta < 1e-2 * max(1.0, abs(diff))
    _, coarse = METHODS["ig"].fn(tgt, steps=4)
    assert coarse >= delta  # fewer steps, larger gap from completeness


def test_saliency_and_input_x_gradient_match_autograd(mc_head):
    tgt = build_target(mc_head, MC)
    e = tgt.embeds.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(tgt.score(e).sum(), e)
    torch.testing.assert_close(METHODS["saliency"].fn(tgt)[0], g.norm(dim=-1))
    torch.testing.assert_close(METHODS["input_x_gradient"].fn(tgt)[0], ((tgt.embeds - tgt.baseline) * g).sum(-1))


def test_choice_head_score_is_the_log_probability_of_the_target_choice(mc_head):
    from kd_analysis.models.scoring import choice_scores

    tgt = build_target(mc_head, MC)
    with torch.no_grad():
        expected = torch.log_softmax(choice_scores(mc_head, [MC]), -1)[0, 0]
        assert float(tgt.score(tgt.embeds)) == pytest.approx(float(expected), abs=1e-5)


def test_decoder_score_is_the_answer_log_likelihood(decoder):
    from kd_analysis.attribution.targets import _prompt_pieces
    from kd_analysis.models.scoring import continuation_logprobs

    tgt = build_target(decoder, MC)
    prompt, _ = _prompt_pieces(MC)
    n_tokens = len(decoder.tokenizer(" five", add_special_tokens=False)["input_ids"])
    mean = float(continuation_logprobs(decoder, prompt, [" five"])[0])
    with torch.no_grad():
        assert float(tgt.score(tgt.embeds)) == pytest.approx(mean * n_tokens, abs=1e-4)


def test_occlusion_matches_a_manual_loop(classifier):
    ex = Example("s", "a dog ran in the park", label=0, answer="negative")
    tgt = build_target(classifier, ex)
    scores, _ = METHODS["occlusion"].fn(tgt)
    r, c = tgt.content_mask.nonzero()[2].tolist()
    x = tgt.embeds.clone()
    x[r, c] = tgt.baseline[r, c]
    with torch.no_grad():
        manual = float(tgt.score(tgt.embeds) - tgt.score(x))
    assert float(scores[r, c]) == pytest.approx(manual, abs=1e-5)


def test_attention_rollout_rows_are_distributions(classifier):
    tgt = build_target(classifier, Example("s", "the cat sat on the mat", label=1, answer="positive"))
    roll, _ = METHODS["rollout"].fn(tgt, loaded=classifier)
    att, _ = METHODS["attention"].fn(tgt, loaded=classifier)
    assert float(roll.sum()) == pytest.approx(1.0, abs=1e-4) and float(att.sum()) == pytest.approx(1.0, abs=1e-4)
    assert classifier.model.config._attn_implementation != "eager"  # switched back after reading attentions


def _attr(words_scores, gold, correct=True) -> Attribution:
    words = [Word(t, s, "question", i) for i, (t, s) in enumerate(words_scores)]
    return Attribution("x", "saliency", "gold", words, [], gold, gold, gold, correct)


def test_rationale_selection_order_filters_and_k():
    a = _attr([("The", 9.0), ("cat", 5.0), ("sat", 1.0), (",", 8.0), ("on", 7.0), ("mats", 6.0)], "mats")
    r = select_rationale(a, 2)
    assert r.words == ["cat", "mats"]  # top-2 after dropping the stopwords and punctuation, input order kept
    assert select_rationale(a, 2, filter_stopwords=False, filter_punct=False).words == ["The", ","]
    big = select_rationale(a, 50)
    assert big.note and len(big.words) == 3
    assert select_rationale(a, fraction=0.34).words == ["mats"]


def test_overlap_definitions_by_hand():
    a = _attr(
        [("capital", 3), ("of", 0), ("France", 2), ("Paris", 5), ("Rome", 4), ("New", 1), ("York", 0.5)], "New York"
    )
    assert answer_positions(a) == {5, 6}
    o = overlap(a, select_rationale(a, 3))  # capital, Paris, Rome
    assert o.defined and (o.any, o.fraction, o.f1, o.iou) == (0.0, 0.0, 0.0, 0.0)
    o = overlap(a, select_rationale(a, 6))  # all but 'of' and York? -> capital France Paris Rome New York
    assert o.any == 1.0 and o.fraction == pytest.approx(2 / 6) and o.iou == pytest.approx(2 / 6)
    assert o.f1 == pytest.approx(2 * (2 / 6) * 1 / (2 / 6 + 1))
    missing = _attr([("cat", 1.0)], "dog")
    assert not overlap(missing, select_rationale(missing, 1)).defined  # undefined, never 0
    empty = _attr([("cat", 1.0)], "")
    assert not overlap(empty, select_rationale(empty, 1)).defined


def test_aggregate_excludes_undefined_and_splits_right_wrong():
    good = _attr([("Paris", 5), ("city", 1)], "Paris", correct=True)
    bad = _attr([("city", 5), ("Paris", 1)], "Paris", correct=False)
    undefined = _attr([("city", 5)], "Rome", correct=True)
    rows = {(r["k"], r["group"]): r for r in aggregate([good, bad, undefined], ks=[1])}
    assert rows[(1, "all")]["defined"] == 2 and rows[(1, "all")]["undefined"] == 1
    assert rows[(1, "all")]["any"] == 0.5
    assert rows[(1, "answered right")]["any"] == 1.0 and rows[(1, "answered wrong")]["any"] == 0.0


def test_bad_input(mc_head, decoder, tiny_dir):
    with pytest.raises(KDLensError, match="unknown attribution method"):
        attribute(mc_head, MC, method="magic")
    with pytest.raises(KDLensError, match="no choices"):
        attribute(mc_head, Example("x", "no choices here"), method="saliency")
    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    with pytest.raises(KDLensError, match="empty answer"):
        attribute(lm, Example("x", "question", answer=" "), method="saliency")
    long = Example("l", " ".join(["apple"] * 800), choices=["a", "b"], label=0, answer="a")
    a = attribute(mc_head, long, method="saliency")
    assert any("truncated" in n for n in a.notes)


def test_no_gradient_is_a_clear_message(mc_head):
    tgt = build_target(mc_head, MC)
    tgt.score = lambda e: (e * 0).sum(dim=(1, 2))  # a score that ignores its input
    with pytest.raises(KDLensError, match="no gradient"):
        METHODS["saliency"].fn(tgt)


@pytest.mark.slow
def test_cli_rationales(tiny_dir, tmp_path):
    data = tmp_path / "mc.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "question": f"what is {i} plus one",
                    "answerKey": "A",
                    "choices": {"label": ["A", "B"], "text": [str(i + 1), "banana"]},
                }
            )
            + "\n"
            for i in range(4)
        )
    )
    out = tmp_path / "r.jsonl"
    proc = cli(
        "rationales",
        "--teacher",
        str(tiny_dir / "bert"),
        "--task",
        "multiple_choice",
        "--data",
        str(data),
        "--method",
        "saliency",
        "--k",
        "2",
        "--out",
        str(out),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["teacher"]["defined"] == 4 and 0 <= report["teacher"]["any"] <= 1
    assert report["paper_comparable"] is True and report["paper_overlap"] == 0.68  # multiple choice: comparable
    t = report["teacher"]
    assert t["any 95% low"] <= t["any"] <= t["any 95% high"]  # every rate with its interval
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 4 and all(len(x["rationale"].split()) <= 2 for x in lines)


def test_report_rows_heatmap_and_agreement(mc_head, tiny_dir):
    from kd_analysis.attribution.report import analyse_rationales
    from kd_analysis.models.specs import StudentSpec
    from kd_analysis.models.students import derive_student
    from kd_analysis.plots.attribution import overlap_vs_k, token_heatmap_html

    student = derive_student(mc_head, StudentSpec(num_layers=1))
    examples = [
        Example(
            str(i),
            f"what is {i} plus one",
            choices=["one", "two <b>x</b>"],
            label=i % 2,
            answer=["one", "two <b>x</b>"][i % 2],
        )
        for i in range(3)
    ]
    seen = []
    rep = analyse_rationales(
        mc_head, examples, student=student, method="saliency", k=2, progress=lambda role, i, n: seen.append(role)
    )
    assert seen.count("teacher") == 3 and seen.count("student") == 3
    rows = rep.rows()
    assert len(rows) == 3 and {"rationale", "student rationale", "overlap any"} <= set(rows[0])
    assert rep.agreement["examples"] == 3 and 0 <= rep.agreement["mean_topk_overlap"] <= 1
    heat = rep.heat("1")
    assert heat["words"] and heat["rationale"] and token_heatmap_html(heat["words"], heat["rationale"])
    html_out = token_heatmap_html([("<b>x</b>", 1.0), ("<script>", -0.5)], {0}, {1})
    assert "<b>x</b>" not in html_out and "&lt;b&gt;x&lt;/b&gt;" in html_out  # token text never becomes markup
    assert "<script>" not in html_out and "outline" in html_out and "underline" in html_out
    fig = overlap_vs_k([r for r in rep.aggregate if r["model"] == "teacher"], show_paper=True)
    assert fig.layout.shapes and fig.layout.shapes[0].y0 == 0.68  # the paper's reference line


def test_agreement_is_one_for_identical_attributions(mc_head):
    from kd_analysis.attribution.agreement import agreement

    a = attribute(mc_head, MC, method="saliency")
    ag = agreement(a, a, k=2)
    assert ag.topk_overlap == 1.0 and ag.spearman == pytest.approx(1.0)


@pytest.mark.slow
def test_background_rationale_job_saves_and_reopens(tiny_dir, tmp_path):
    import time as _time

    from kd_analysis.attribution.job import load_rationale_run, rationale_config
    from kd_analysis.attribution.report import analyse_rationales
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.models.specs import StudentSpec
    from kd_analysis.runs import RunStore, start_run

    data = tmp_path / "mc.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"q{i}",
                    "question": f"what is {i} plus one",
                    "answerKey": "A",
                    "choices": {"label": ["A", "B"], "text": [str(i + 1), "banana"]},
                }
            )
            + "\n"
            for i in range(4)
        )
    )
    store = RunStore(tmp_path / "runs")
    teacher = ModelSpec(str(tiny_dir / "bert"), task="multiple_choice")
    cfg = rationale_config(teacher, StudentSpec(num_layers=1), str(data), method="saliency", k=2)
    assert cfg["name"] == f"Saliency (gradient norm) rationales on {data}"  # the method's title, not its id
    run = start_run(cfg, store, kind="rationales")
    deadline = _time.monotonic() + 180
    while run.status().get("state") not in ("finished", "failed") and _time.monotonic() < deadline:
        _time.sleep(0.3)
    assert run.status()["state"] == "finished", run.log_tail()
    assert [m["step"] for m in run.metrics()] == list(range(1, 9))
    reopened = load_rationale_run(store.get(run.run_id))
    loaded = load_model(teacher)
    from kd_analysis.models.students import derive_student

    fresh = analyse_rationales(
        loaded,
        load_dataset(str(data)).examples,
        student=derive_student(loaded, StudentSpec(num_layers=1)),
        method="saliency",
        k=2,
    )
    assert [r["rationale"] for r in reopened.rows()] == [r["rationale"] for r in fresh.rows()]
    assert reopened.agreement["examples"] == 4
    from kd_analysis.attribution.job import agreement_table

    [row] = agreement_table(store)
    assert row["job"] == run.run_id and row["examples"] == 4 and row["k"] == 2
    assert row["top-k overlap"] == pytest.approx(reopened.agreement["mean_topk_overlap"])
    right = [a.correct for a in reopened.student]
    assert row["student accuracy"] == pytest.approx(sum(right) / len(right))


def test_chance_overlap_is_exact_and_matches_simulation():
    import random as _random

    from kd_analysis.attribution.rationales import Rationale, chance_overlap
    from kd_analysis.attribution.rationales import overlap as _overlap

    a = _attr(
        [("capital", 3), ("France", 2), ("Paris", 5), ("Rome", 4), ("New", 1), ("York", 0.5), ("city", 2)], "New York"
    )
    c = chance_overlap(a, 2)
    assert c.any == pytest.approx(1 - 10 / 21)  # 1 - C(5,2)/C(7,2): at least one of the 2 answer words drawn
    assert c.fraction == pytest.approx(2 / 7)
    rng = _random.Random(0)
    sims = [_overlap(a, Rationale([], sorted(rng.sample(range(7), 2)))) for _ in range(20000)]
    for d in ("any", "fraction", "f1", "iou"):
        assert c.get(d) == pytest.approx(sum(o.get(d) for o in sims) / len(sims), abs=0.01)
    assert chance_overlap(a, 50).any == 1.0  # k covers every candidate
    assert not chance_overlap(_attr([("cat", 1.0)], "dog"), 1).defined
    rows = aggregate([a], ks=[2])
    assert rows[0]["chance any"] == pytest.approx(c.any)


# The paper's 68%: shown only where it measures what we measure ---------------------------------------------------
def _mc_attr(gold="five", choices=("five", "six")) -> Attribution:
    words = [Word("what", 0.1, "question", 0), Word("is", 0.2, "question", 1), Word("two", 0.9, "question", 2)]
    words += [Word(c, 0.5, f"choice {chr(65 + i)}", 3 + i) for i, c in enumerate(choices)]
    return Attribution("m", "saliency", "gold", words, [], gold, gold, gold, True)


def test_data_kind_from_examples_and_from_saved_attributions():
    from kd_analysis.attribution import data_kind

    plain = Example("s", "the movie was a delight", label=1, answer="positive")
    assert data_kind([MC, MC]) == "multiple_choice"
    assert data_kind([MC, plain]) == "mixed"
    assert data_kind([plain]) == "no_choices" and data_kind([]) == "no_choices"
    assert data_kind([_mc_attr()]) == "multiple_choice"  # a saved job: the choice segments tell
    assert data_kind([_attr([("cat", 1.0)], "cat")]) == "no_choices"


@pytest.mark.parametrize("definition", ["any", "fraction", "f1", "iou"])
@pytest.mark.parametrize("kind", ["multiple_choice", "mixed", "no_choices"])
def test_paper_figure_is_comparable_only_for_any_on_multiple_choice(definition, kind):
    from kd_analysis.attribution import paper_reference

    ref = paper_reference(definition, kind)
    expected = definition == "any" and kind == "multiple_choice"
    assert ref.comparable is expected
    assert ref.value == (0.68 if expected else None)  # no number to draw by mistake
    assert "68%" in ref.caption  # the caption always says what the paper measured
    if expected:
        assert "chance" in ref.caption
    elif definition != "any":
        assert f"'{definition}'" in ref.caption and "no paper figure" in ref.caption
    else:
        assert "multiple-choice" in ref.caption and "no paper figure" in ref.caption
    assert not paper_reference(definition, kind, role="student").comparable  # the paper measured the teacher's
    gold = paper_reference(definition, kind, target="gold")  # the answer's tokens are in the truth by construction
    assert not gold.comparable and "own answer" in gold.caption
    with pytest.raises(ValueError, match="unknown overlap definition"):
        paper_reference("jaccard", kind)


def test_overlap_plot_draws_the_paper_line_only_when_comparable():
    from kd_analysis.attribution.report import paper_reference, with_intervals
    from kd_analysis.plots.attribution import overlap_vs_k

    attrs = [_mc_attr(), _mc_attr("six"), _mc_attr("two"), _mc_attr("seven", ("seven", "two"))]
    rows = with_intervals(aggregate(attrs, ks=[1, 2, 3]), attrs)
    for definition in ("any", "fraction", "f1", "iou"):
        for kind in ("multiple_choice", "no_choices"):
            fig = overlap_vs_k(rows, definition, show_paper=paper_reference(definition, kind).comparable)
            drawn = bool(fig.layout.shapes) or any("Ballout" in (a.text or "") for a in fig.layout.annotations)
            assert drawn is (definition == "any" and kind == "multiple_choice"), (definition, kind)
    fig = overlap_vs_k(rows, "any", show_paper=True)
    assert [s.y0 for s in fig.layout.shapes] == [0.68]
    assert any("Ballout et al. 2024: 68%" in a.text for a in fig.layout.annotations)
    assert any(t.name == "random words (chance)" for t in fig.data)  # chance is always there
    series = next(t for t in fig.data if t.name.startswith("all"))
    assert series.error_y.visible and len(series.error_y.array) == 3  # intervals from with_intervals


def test_intervals_and_headline_against_scipy():
    """ "any" is a rate (Wilson, as SciPy computes it); the graded definitions get a t-interval of the mean; the
    chance level is called distinguishable only when it lies outside the interval."""
    from scipy.stats import binomtest
    from scipy.stats import t as student_t

    from kd_analysis.attribution.report import headline, with_intervals

    hit = _attr([("Paris", 9.0), ("capital", 1.0), ("France", 0.5), ("city", 0.2)], "Paris")
    miss = _attr([("Paris", 0.1), ("capital", 9.0), ("France", 0.5), ("city", 0.2)], "Paris")
    gone = _attr([("cat", 1.0)], "dog")  # undefined: not counted in n
    attrs = [hit] * 7 + [miss] * 3 + [gone]
    h = headline(attrs, 1, "any")
    assert h["n"] == 10 and h["undefined"] == 1 and h["value"] == pytest.approx(0.7)
    ci = binomtest(7, 10).proportion_ci(confidence_level=0.95, method="wilson")
    assert (h["low"], h["high"]) == pytest.approx((ci.low, ci.high))
    assert h["chance"] == pytest.approx(0.25)  # 1 of 4 candidate words is the answer
    assert ci.low > 0.25 and h["distinguishable"] is True and h["vs chance"] == pytest.approx(0.45)
    few = headline([hit, hit, miss], 1, "any")  # 2 of 3: the interval holds the chance level
    assert few["distinguishable"] is False and few["vs chance"] is None

    two = _attr([("New", 9.0), ("York", 0.1), ("city", 8.0), ("big", 0.2)], "New York")
    mixed = [two, two, hit, miss]
    [row] = [r for r in with_intervals(aggregate(mixed, ks=[2]), mixed) if r["group"] == "all"]
    values = [overlap(a, select_rationale(a, 2)).fraction for a in mixed]
    mean, sd = sum(values) / 4, (sum((v - sum(values) / 4) ** 2 for v in values) / 3) ** 0.5
    low, high = student_t.interval(0.95, 3, loc=mean, scale=sd / 2)
    assert row["fraction"] == pytest.approx(mean)
    assert (row["fraction 95% low"], row["fraction 95% high"]) == pytest.approx((max(0.0, low), min(1.0, high)))
    wrong = next(r for r in with_intervals(aggregate(mixed, ks=[2]), mixed) if r["group"] == "answered wrong")
    assert wrong["defined"] == 0 and wrong["any 95% low"] is None


def test_class_targets_name_every_class_by_the_data_and_never_label_k(tiny_dir):
    """An explanation read teacher '0: negative' beside student '1': the data's names now label every class, and a
    checkpoint's generic LABEL_k reads k."""
    from kd_analysis.attribution.targets import build_target
    from kd_analysis.data.example import CLASS_NAMES, Example
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec

    loaded = load_model(ModelSpec(str(tiny_dir / "bert"), task="classification", num_labels=2))
    named = Example("a", "a fine film", label=0, answer="negative", meta={CLASS_NAMES: {0: "negative", 1: "positive"}})
    for target in (0, 1):
        t = build_target(loaded, named, target=target)
        assert t.target_label == ["0: negative", "1: positive"][target] and t.gold_label == "0: negative"
    bare = build_target(loaded, Example("b", "a fine film", label=1), target=0)
    assert (bare.target_label, bare.gold_label) == ("0", "1") and "LABEL" not in bare.predicted_label


def test_agreement_names_a_checkpoint_student_by_its_run(tmp_path):
    """A student read from a run's checkpoint is named by that run in the agreement table, never by its path; a
    folder that is no run of the store keeps its own description."""
    from kd_analysis.attribution.job import student_words
    from kd_analysis.models.specs import ModelSpec, StudentSpec
    from kd_analysis.runs import RunStore

    store = RunStore(tmp_path / "runs")
    run = store.create("train", {"name": "CE only, 2 layers"}, run_id="run-ce")
    from_run = StudentSpec(kind="model", model=ModelSpec(str(run.path / "checkpoint"), task="multiple_choice"))
    assert student_words(store, from_run) == "the student of run CE only, 2 layers"
    elsewhere = StudentSpec(kind="model", model=ModelSpec(str(tmp_path / "other" / "checkpoint")))
    assert student_words(store, elsewhere) == elsewhere.describe()
    assert student_words(store, StudentSpec(num_layers=2)) == StudentSpec(num_layers=2).describe()
