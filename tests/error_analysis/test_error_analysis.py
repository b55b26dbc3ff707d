"""Error analysis: the right/wrong matrix and its exact test, flips, safe filters, slices and the slice finder."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from kd_analysis.error_analysis.filters import parse_filter, select_examples
from kd_analysis.error_analysis.frames import cell_of, join_roles, load_records, records_frame
from kd_analysis.error_analysis.matrix import disagreement, flips
from kd_analysis.error_analysis.slices import Slice, apply_slice, find_slices, slice_metrics
from kd_analysis.exceptions import DataError, KDLensError
from kd_analysis.stats.intervals import wilson_interval
from kd_analysis.stats.significance import MCNEMAR_TEST, benjamini_hochberg, mcnemar_exact_p

scipy_stats = pytest.importorskip("scipy.stats")

CELLS = {
    "both_right": (True, True),
    "teacher_only": (True, False),
    "student_only": (False, True),
    "both_wrong": (False, False),
}


def pair_rows(counts: dict[str, int], **extra) -> tuple[list[dict], list[dict]]:
    """Teacher and student rows with exactly `counts` examples in each cell."""
    teacher, student, i = [], [], 0
    for cell, n in counts.items():
        t_ok, s_ok = CELLS[cell]
        for _ in range(n):
            common = {"example_id": f"e{i}", "data": "demo", "gold": i % 3, "text": f"example {i}", **extra}
            teacher.append({**common, "run_id": "t", "role": "teacher", "step": 0, "correct": t_ok})
            student.append({**common, "run_id": "s", "role": "student", "step": 50, "correct": s_ok})
            i += 1
    return teacher, student


def synthetic(n: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Records with a planted weakness: the student fails on long inputs the teacher gets right."""
    rng = np.random.default_rng(seed)
    teacher, student = [], []
    for i in range(n):
        tokens = int(rng.integers(5, 400))
        gold = int(rng.integers(0, 4))
        digits = bool(rng.random() < 0.4)
        t_ok = bool(rng.random() < 0.9)
        s_ok = bool(rng.random() < (0.3 if tokens > 300 else 0.9)) if t_ok else bool(rng.random() < 0.3)
        text = f"{'there are 12 apples' if digits else 'no digits here'} #{'x' * 3}"
        common = {
            "example_id": str(i),
            "data": "demo",
            "gold": gold,
            "text": text,
            "text_tokens": tokens,
            "choices": ["a", "b", "c", "d"],
            "topic": ["sport", "news", "art"][i % 3],
            "score": float(i % 17),
        }
        teacher.append(
            {
                **common,
                "run_id": "t",
                "role": "teacher",
                "step": 0,
                "correct": t_ok,
                "prediction": gold if t_ok else (gold + 1) % 4,
                "p_pred": float(rng.random()),
                "p_gold": float(rng.random()),
                "entropy": float(rng.random()),
            }
        )
        student.append(
            {
                **common,
                "run_id": "s",
                "role": "student",
                "step": 100,
                "correct": s_ok,
                "prediction": gold if s_ok else (gold + 2) % 4,
                "p_pred": float(rng.random()),
                "kl": None if i % 50 == 0 else float(rng.exponential()),
                "teacher_entropy": 0.5,
            }
        )
    return teacher, student


# --- exact McNemar ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "b,c", [(0, 0), (0, 5), (5, 0), (7, 7), (3, 20), (20, 3), (1, 0), (10, 30), (480, 560), (12_000, 12_500)]
)
def test_mcnemar_matches_scipy_binomtest(b, c):
    expected = 1.0 if b + c == 0 else scipy_stats.binomtest(min(b, c), b + c, 0.5).pvalue
    assert mcnemar_exact_p(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_mcnemar_matches_statsmodels_when_installed():
    contingency = pytest.importorskip("statsmodels.stats.contingency_tables")
    for b, c in [(0, 5), (7, 7), (3, 20), (40, 61)]:
        expected = contingency.mcnemar([[10, b], [c, 10]], exact=True).pvalue
        assert mcnemar_exact_p(b, c) == pytest.approx(expected, rel=1e-9)


def test_mcnemar_hand_values():
    assert mcnemar_exact_p(0, 0) == 1.0 and mcnemar_exact_p(7, 7) == 1.0
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 / 32)  # 2 · P(X = 0), X ~ Bin(5, ½)
    assert mcnemar_exact_p(1, 4) == pytest.approx(2 * 6 / 32)  # 2 · (1 + 5) / 32


# --- the right/wrong matrix --------------------------------------------------------------------------------------


def test_disagreement_counts_test_and_dict():
    counts = {"both_right": 40, "teacher_only": 20, "student_only": 3, "both_wrong": 7}
    teacher, student = pair_rows(counts)
    d = disagreement(teacher, student)
    assert (d.both_right, d.teacher_only, d.student_only, d.both_wrong, d.examples) == (40, 20, 3, 7, 70)
    assert d.teacher_accuracy == pytest.approx(60 / 70) and d.student_accuracy == pytest.approx(43 / 70)
    assert d.mcnemar_p == pytest.approx(scipy_stats.binomtest(3, 23, 0.5).pvalue, rel=1e-12)
    out = d.to_dict()
    assert list(out) == [
        "examples",
        "both_right",
        "teacher_only",
        "student_only",
        "both_wrong",
        "teacher_accuracy",
        "student_accuracy",
        "mcnemar_p",
        "test",
    ]
    assert out["test"] == MCNEMAR_TEST and "McNemar" in out["test"]
    json.dumps(out)  # plain types only


def test_matrix_agrees_with_each_roles_own_accuracy():
    teacher, student = synthetic(300, seed=3)
    # noise the join must drop: examples one side lacks, unscored answers, an earlier student evaluation
    teacher.append({"example_id": "only-teacher", "role": "teacher", "step": 0, "correct": True, "text": ""})
    student.append({"example_id": "only-student", "role": "student", "step": 100, "correct": False, "text": ""})
    teacher[5]["correct"] = None
    student += [{**r, "step": 10, "correct": not r["correct"]} for r in student[:30]]
    d = disagreement(teacher, student)
    t = {r["example_id"]: r["correct"] for r in teacher}
    s = {r["example_id"]: r["correct"] for r in student if r["step"] == 100}
    shared = [k for k in t if k in s and t[k] is not None and s[k] is not None]
    assert d.examples == len(shared) == 299
    assert d.teacher_accuracy == pytest.approx(sum(t[k] for k in shared) / len(shared))
    assert d.student_accuracy == pytest.approx(sum(s[k] for k in shared) / len(shared))
    assert d.teacher_accuracy == pytest.approx((d.both_right + d.teacher_only) / d.examples)
    assert d.student_accuracy == pytest.approx((d.both_right + d.student_only) / d.examples)
    assert d.both_right + d.teacher_only + d.student_only + d.both_wrong == d.examples
    # an earlier evaluation step on request
    early = disagreement(teacher, student, step=10)
    assert early.examples == 29  # 30 examples at step 10, one of them unscored by the teacher
    assert early.student_accuracy == pytest.approx(sum(not s[k] for k in shared if int(k) < 30) / 29)


def test_disagreement_from_one_run_folder_with_both_roles(tmp_path):
    teacher, student = pair_rows({"both_right": 5, "teacher_only": 4, "both_wrong": 1})
    run = tmp_path / "run-1"
    run.mkdir()
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in teacher + student) + "\n")
    d = disagreement(run, run / "predictions.jsonl")
    assert (d.both_right, d.teacher_only, d.student_only, d.both_wrong) == (5, 4, 0, 1)
    assert len(load_records([run, run])) == 40


def test_no_shared_examples_is_a_plain_error():
    teacher, _ = pair_rows({"both_right": 3})
    _, student = pair_rows({"both_right": 3})
    for r in student:
        r["example_id"] = "x" + r["example_id"]
    with pytest.raises(DataError, match="share no example"):
        disagreement(teacher, student)


def test_bad_records_are_plain_errors(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"example_id": "a", "correct": true}\n{"example_id": "b", "corr\n')
    with pytest.raises(DataError, match="line 2"):
        load_records(path)
    with pytest.raises(DataError, match="no per-example records"):
        load_records(tmp_path / "missing")
    with pytest.raises(DataError, match="example_id"):
        records_frame([{"correct": True}])
    with pytest.raises(DataError, match="'kl'"):
        records_frame([{"example_id": "a", "kl": "high"}])


def test_cell_of_names_each_cell():
    teacher, student = pair_rows({"both_right": 2, "teacher_only": 3, "student_only": 1, "both_wrong": 4})
    student[0]["correct"] = None
    joined = join_roles({"teacher": teacher, "student": student})
    cells = cell_of(joined)
    assert cells.iloc[0] is None
    assert cells.value_counts().to_dict() == {"both_right": 1, "teacher_only": 3, "student_only": 1, "both_wrong": 4}
    assert (joined["cell"].fillna("-") == cells.fillna("-")).all()
    assert set(
        cell_of(
            joined.rename(columns=lambda c: c.replace("teacher_", "a_").replace("student_", "b_")), "a", "b"
        ).dropna()
    ) == {"both_right", "a_only", "b_only", "both_wrong"}
    with pytest.raises(KDLensError, match="join_roles"):
        cell_of(pd.DataFrame({"x": [1]}))


def test_flips_fixed_broke_and_steps():
    a = [
        {"example_id": str(i), "role": "student", "step": 1, "correct": ok}
        for i, ok in enumerate([True, True, False, False, False, True, None])
    ]
    b = [
        {"example_id": str(i), "role": "student", "step": 2, "correct": ok}
        for i, ok in enumerate([True, False, True, True, False, True, True])
    ]
    f = flips(a, b)
    assert (f.examples, f.fixed, f.broke, f.both_right, f.both_wrong) == (6, 2, 1, 2, 1)
    assert f.fixed_ids == ["2", "3"] and f.broke_ids == ["1"]
    assert f.a_accuracy == pytest.approx(3 / 6) and f.b_accuracy == pytest.approx(4 / 6)
    assert f.mcnemar_p == pytest.approx(scipy_stats.binomtest(1, 3, 0.5).pvalue)
    assert set(f.to_dict()) >= {"fixed", "broke", "mcnemar_p", "test", "fixed_ids", "broke_ids"}
    # one run evaluated twice: compare its own steps
    same = flips(a + b, a + b, step_a=1, step_b=2)
    assert (same.fixed, same.broke, same.fixed_ids) == (2, 1, ["2", "3"])


# --- safe filters -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return join_roles({"teacher": (s := synthetic(500, seed=1))[0], "student": s[1]})


@pytest.mark.parametrize(
    "expr,expected",
    [
        ("kl > 1", lambda f: f.kl > 1),
        ("0.5 < kl <= 2", lambda f: (f.kl > 0.5) & (f.kl <= 2)),
        ("gold in (0, 2)", lambda f: f.gold.isin([0, 2])),
        ("gold not in [1, 3]", lambda f: ~f.gold.isin([1, 3])),
        (
            "topic == 'art' or (text_tokens >= 300 and not student_correct)",
            lambda f: (f.topic == "art") | ((f.text_tokens >= 300) & ~f.student_correct.astype(bool)),
        ),
        ("-kl < -1", lambda f: f.kl > 1),
        ("text_tokens / 2 + 1 > kl * 100 - 3", lambda f: f.text_tokens / 2 + 1 > f.kl * 100 - 3),
        (
            "teacher_correct and not student_correct",
            lambda f: f.teacher_correct.astype(bool) & ~f.student_correct.astype(bool),
        ),
        ("cell == 'teacher_only'", lambda f: f.cell == "teacher_only"),
        ("kl == None", lambda f: f.kl.isna()),
        ("kl != None and has_number == True", lambda f: f.kl.notna() & f.has_number),
        ("'12' in text", lambda f: f.text.str.contains("12", regex=False)),
        ("'12' not in text", lambda f: ~f.text.str.contains("12", regex=False)),
        ("True", lambda f: pd.Series(True, index=f.index)),
        ("1 > 2", lambda f: pd.Series(False, index=f.index)),
    ],
)
def test_filter_selects_what_pandas_selects(frame, expr, expected):
    got = parse_filter(expr, frame.columns)(frame)
    want = expected(frame).fillna(False).astype(bool)
    assert got.dtype == bool and got.index.equals(frame.index)
    assert got.tolist() == want.tolist()
    assert 0 < got.sum() < len(frame) or expr in ("True", "1 > 2")


def test_filter_missing_values_match_no_comparison(frame):
    missing = frame.kl.isna()
    assert missing.sum() == 10
    assert not parse_filter("not (kl > 1)")(frame)[missing].any()
    assert not parse_filter("kl != 3")(frame)[missing].any()
    assert parse_filter("kl == None or kl > 100")(frame)[missing].all()
    assert parse_filter("kl in (None, 5)")(frame)[missing].all()


@pytest.mark.parametrize(
    "expr,problem",
    [
        ("__import__('os').system('x')", "function call"),
        ("().__class__", "attribute access"),
        ("kl.real", "attribute access"),
        ("open('f')", "function call"),
        ("[c for c in x]", "comprehension"),
        ("a if b else c", "if-else"),
        ("kl[0] > 1", "indexing"),
        ("(lambda: 1)() > 0", "function call"),
        ("(x := 1) > 0", "assignment"),
        ("kl ** 2 > 1", "'**'"),
        ("kl > 1 & gold", "'&'"),
        ("text == '__class__'", "'__'"),
        ("__builtins__ == 1", "'__builtins__'"),
        ("f'{kl}' == 'a'", "f-string"),
        ("gold in kl", "after 'in'"),
        ("gold in (1, kl)", "inside an 'in' list"),
        ("kl > None", "ordering against None"),
        ("kl is 1", "'is'"),
        ("kl >", "not a valid expression"),
        ("", "empty"),
        ("kl > 1 " + "and kl > 1 " * 400, "longer than"),
        ("not " * 450 + "kl", "nested too deeply"),
        ("(" * 300 + "kl" + ")" * 300 + " > 1", "not a valid expression"),
    ],
)
def test_hostile_or_invalid_filters_are_refused_when_parsed(expr, problem):
    with pytest.raises(KDLensError, match=problem.replace("(", r"\(").replace("*", r"\*").replace("|", r"\|")):
        parse_filter(expr)


def test_unknown_column_names_it_and_lists_columns(frame):
    with pytest.raises(KDLensError, match=r"unknown column 'x' at character 12; columns are example_id, data"):
        parse_filter("kl > 1 and x == 2", frame.columns)
    with pytest.raises(KDLensError, match=r"unknown column 'nope' at character 1; columns are .*student_correct"):
        parse_filter("nope > 1")(frame)  # without columns the check happens when applied


def test_filter_type_errors_are_plain(frame):
    for expr, problem in [
        ("kl", "not a true/false condition"),
        ("text * 100000 == 'a'", "arithmetic needs numbers"),
        ("text < 1", "cannot compare text with 1"),
        ("kl / 0 > 1 or 1 / 0 > 1", "divides by zero"),
        ("not topic", "not a true/false condition"),
        ("'a' in gold", "not one"),
    ]:
        with pytest.raises(KDLensError, match=problem):
            parse_filter(expr)(frame)


def test_filter_positions_count_characters_not_bytes():
    with pytest.raises(KDLensError, match="at character 17;"):  # 18 if UTF-8 bytes were counted
        parse_filter("text == 'é' and zz > 1", ["text"])


def test_select_examples_filters_sorts_and_limits(frame):
    top = select_examples(frame, "student_correct == False", sort_by="kl", limit=5)
    assert len(top) == 5 and not top.student_correct.any()
    wrong = frame.loc[~frame.student_correct.astype(bool), "kl"]
    assert top.kl.tolist() == sorted(wrong.dropna(), reverse=True)[:5]
    with pytest.raises(KDLensError, match="unknown column 'zz'"):
        select_examples(frame, sort_by="zz")


def test_filter_and_sort_10k_rows_well_under_a_second():
    teacher, student = synthetic(10_000, seed=2)
    big = join_roles({"teacher": teacher, "student": student})
    start = time.perf_counter()
    out = select_examples(
        big, "(0.2 < kl <= 3 and text_tokens > 100) or gold in (1, 2) and not student_correct", sort_by="kl"
    )
    elapsed = time.perf_counter() - start
    assert 0 < len(out) < len(big)
    assert elapsed < 0.5, f"filter + sort took {elapsed:.3f}s"


# --- slices -------------------------------------------------------------------------------------------------------


def test_slices_apply_and_round_trip_as_dicts(frame):
    s = Slice("long inputs", "text_tokens > 300")
    assert Slice.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    part = apply_slice(frame, s)
    assert len(part) == int((frame.text_tokens > 300).sum()) and (part.text_tokens > 300).all()
    assert len(apply_slice(frame, "gold == 1")) == int((frame.gold == 1).sum())
    with pytest.raises(KDLensError, match="name and an expression"):
        Slice.from_dict({"name": "x"})


def test_slice_metrics_accuracy_wilson_and_gap(frame):
    slices = [Slice("long", "text_tokens > 300"), Slice("short", "text_tokens <= 300"), Slice("none", "gold == 99")]
    long_, short, none = slice_metrics(frame, slices)
    part = frame[frame.text_tokens > 300]
    t, s = part.teacher_correct.astype(bool), part.student_correct.astype(bool)
    assert long_.n == len(part) and long_.roles["teacher"].n == len(part)
    assert long_.roles["teacher"].accuracy == pytest.approx(t.mean())
    assert long_.roles["student"].accuracy == pytest.approx(s.mean())
    low, high = wilson_interval(s.mean(), len(part))
    assert (long_.roles["student"].ci_low, long_.roles["student"].ci_high) == pytest.approx((low, high))
    assert long_.gap == pytest.approx(t.mean() - s.mean()) and long_.gap > 0.4  # the planted weakness
    assert short.gap < 0.1
    assert none.n == 0 and none.roles["teacher"].accuracy is None and none.gap is None
    row = long_.to_dict()
    assert row["teacher_accuracy"] == pytest.approx(t.mean()) and row["gap"] == long_.gap
    # a long frame (one row per model and example) gives the same numbers
    teacher, student = synthetic(500, seed=1)
    long_frame = records_frame(teacher + student)
    [again] = slice_metrics(long_frame, [Slice("long", "text_tokens > 300")])
    assert again.roles["student"].accuracy == pytest.approx(s.mean())
    assert again.roles["teacher"].accuracy == pytest.approx(t.mean())


# --- Benjamini–Hochberg -------------------------------------------------------------------------------------------


def test_benjamini_hochberg_by_hand_and_against_scipy():
    # hand: m = 4; sorted p·m/i = .04, .06, .04, .08 → monotone from the top: .04, .04, .04, .08
    assert benjamini_hochberg([0.01, 0.03, 0.02, 0.08]) == pytest.approx([0.04, 0.04, 0.04, 0.08])
    assert benjamini_hochberg([]) == [] and benjamini_hochberg([0.9, 0.95]) == pytest.approx([0.95, 0.95])
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = np.concatenate([rng.random(30), rng.random(10) * 1e-3, [1.0, 0.0, 0.5, 0.5]])
        expected = (
            scipy_stats.false_discovery_control(p, method="bh")
            if hasattr(scipy_stats, "false_discovery_control")
            else None
        )
        if expected is None:
            pytest.skip("scipy.stats.false_discovery_control is missing")
        assert benjamini_hochberg(p) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(KDLensError):
        benjamini_hochberg([0.5, 1.5])


# --- the slice finder ---------------------------------------------------------------------------------------------


def test_find_slices_finds_the_planted_slice_and_each_expr_round_trips(frame):
    findings = find_slices(frame, columns=["topic", "score"], bins=4)
    assert findings, "no slices found"
    top = findings[0]
    assert top.feature == "input length" and top.expr.startswith("text_tokens >") and top.gap > 0.4
    assert top.adjusted_p < 1e-3 and top.teacher_only > top.student_only
    # ranked by gap, then adjusted p
    keys = [(-f.gap, f.adjusted_p) for f in findings]
    assert keys == sorted(keys)
    # BH over every kept candidate
    assert [f.adjusted_p for f in findings] == pytest.approx(benjamini_hochberg([f.mcnemar_p for f in findings]))
    t_all = frame.teacher_correct.astype(bool)
    s_all = frame.student_correct.astype(bool)
    features = {f.feature for f in findings}
    assert {
        "input length",
        "gold label",
        "teacher confidence",
        "KL",
        "numbers in the text",
        "topic",
        "score",
    } <= features
    for f in findings:
        assert f.n >= 10
        selected = parse_filter(f.expr, frame.columns)(frame)  # the page can save it as a slice
        assert int(selected.sum()) == f.n
        part = apply_slice(frame, f.to_slice())
        assert len(part) == f.n
        assert f.teacher_accuracy == pytest.approx(t_all[selected].mean())
        assert f.student_accuracy == pytest.approx(s_all[selected].mean())
        assert f.gap == pytest.approx(f.teacher_accuracy - f.student_accuracy)
        assert f.mcnemar_p == pytest.approx(mcnemar_exact_p(f.teacher_only, f.student_only))
        assert f.teacher_ci == pytest.approx(wilson_interval(f.teacher_accuracy, f.n))
        assert f.student_ci == pytest.approx(wilson_interval(f.student_accuracy, f.n))
    # numeric bins of one feature partition the examples that have the value
    for feature, column in [("input length", "text_tokens"), ("KL", "kl"), ("score", "score")]:
        assert sum(f.n for f in findings if f.feature == feature) == int(frame[column].notna().sum())
    assert sorted(f.expr for f in findings if f.feature == "topic") == [
        "topic == 'art'",
        "topic == 'news'",
        "topic == 'sport'",
    ]
    assert sorted(f.expr for f in findings if f.feature == "numbers in the text") == [
        "has_number == False",
        "has_number == True",
    ]


def test_find_slices_minimums_and_rationale_overlap():
    teacher, student = synthetic(200, seed=4)
    for i, r in enumerate(student):
        r["rationale_overlap"] = [0.0, 0.4, 0.8][i % 3]
        r["rare"] = "common" if i >= 4 else "rare"  # 4 examples: below the per-value minimum
    joined = join_roles({"teacher": teacher, "student": student})
    findings = find_slices(joined, columns=["rare"], min_n=30)
    assert all(f.n >= 30 for f in findings)
    assert sorted(f.expr for f in findings if f.feature == "rationale overlap") == [
        "rationale_overlap == 0",
        "rationale_overlap > 0",
    ]
    assert [f.expr for f in findings if f.feature == "rare"] == ["rare == 'common'"]
    fewer = find_slices(joined, min_n=150)
    assert all(f.n >= 150 for f in fewer) and len(fewer) < len(findings)
    for r in student:
        r["everyone"] = "same"  # a feature every example shares selects the whole set: not a slice
    whole = find_slices(join_roles({"teacher": teacher, "student": student}), columns=["everyone"], min_n=30)
    assert all(f.feature != "everyone" and f.n < 200 for f in whole)
    with pytest.raises(KDLensError, match="unknown column 'nope'"):
        find_slices(joined, columns=["nope"])
    with pytest.raises(KDLensError, match="teacher_correct"):
        find_slices(records_frame(teacher))


def test_find_slices_10k_rows_is_fast():
    teacher, student = synthetic(10_000, seed=5)
    big = join_roles({"teacher": teacher, "student": student})
    start = time.perf_counter()
    findings = find_slices(big, columns=["topic"])
    elapsed = time.perf_counter() - start
    assert findings[0].feature == "input length"
    assert elapsed < 2.0, f"find_slices took {elapsed:.3f}s"


def test_paired_gap_interval_reduces_to_the_unpaired_one_and_covers():
    import numpy as np

    from kd_analysis.plots.errors import gap_interval
    from kd_analysis.stats.intervals import wilson_interval
    from kd_analysis.stats.significance import paired_difference_interval

    # φ = 0 (ad − bc within n/2): exactly the unpaired square-and-add of the two Wilson intervals
    a, b, c, d = 10, 10, 10, 10
    n = a + b + c + d
    unpaired = gap_interval(
        {
            "teacher_accuracy": (a + b) / n,
            "student_accuracy": (a + c) / n,
            "teacher_ci": wilson_interval((a + b) / n, n),
            "student_ci": wilson_interval((a + c) / n, n),
        }
    )
    assert paired_difference_interval(a, b, c, d) == pytest.approx(unpaired)
    # answers that agree more (teacher and student right on the same examples) give a narrower interval
    lo, hi = paired_difference_interval(30, 8, 2, 20)
    ulo, uhi = gap_interval(
        {
            "teacher_accuracy": 38 / 60,
            "student_accuracy": 32 / 60,
            "teacher_ci": wilson_interval(38 / 60, 60),
            "student_ci": wilson_interval(32 / 60, 60),
        }
    )
    assert lo < 0.1 < hi and hi - lo < uhi - ulo
    assert paired_difference_interval(0, 0, 0, 0) == (-1.0, 1.0)
    low = wilson_interval(1.0, 50)[0]  # all pairs both right: no margin varies, φ = 0, symmetric about 0
    assert paired_difference_interval(50, 0, 0, 0) == pytest.approx((-(1 - low), 1 - low))
    # coverage by simulation (the independent check): correlated pairs with known marginal accuracies
    rng = np.random.default_rng(0)
    cells = np.array([0.55, 0.20, 0.05, 0.20])  # both, first only, second only, neither: gap = 0.15
    covered = 0
    trials = 2000
    for counts in rng.multinomial(60, cells, size=trials):
        lo, hi = paired_difference_interval(*counts)
        covered += lo <= 0.15 <= hi
    assert 0.93 <= covered / trials <= 0.975, covered / trials


def test_slice_findings_carry_the_paired_interval():
    from kd_analysis.error_analysis.frames import join_roles
    from kd_analysis.error_analysis.slices import find_slices
    from kd_analysis.stats.significance import paired_difference_interval

    rows_t, rows_s = [], []
    for i in range(40):
        common = {"example_id": str(i), "gold": i % 2, "text_tokens": 5 + i, "text": "q"}
        rows_t.append({**common, "role": "teacher", "step": 0, "correct": i % 5 != 0})
        rows_s.append({**common, "role": "student", "step": 9, "correct": i % 3 != 0 and i < 30})
    frame = join_roles({"teacher": rows_t, "student": rows_s})
    findings = find_slices(frame, min_n=5)
    assert findings
    for f in findings:
        both = round(f.teacher_accuracy * f.n) - f.teacher_only  # teacher right = both right + teacher only
        assert f.gap_ci == pytest.approx(
            paired_difference_interval(
                both, f.teacher_only, f.student_only, f.n - both - f.teacher_only - f.student_only
            )
        )
        assert f.gap_ci[0] <= f.gap <= f.gap_ci[1]


def test_joined_frame_has_the_confidence_gap():
    from kd_analysis.error_analysis.frames import join_roles

    rows = {
        "teacher": [
            {"example_id": "a", "role": "teacher", "step": 0, "correct": True, "p_gold": 0.9},
            {"example_id": "b", "role": "teacher", "step": 0, "correct": False, "p_gold": None},
        ],
        "student": [
            {"example_id": "a", "role": "student", "step": 5, "correct": False, "p_gold": 0.25},
            {"example_id": "b", "role": "student", "step": 5, "correct": True, "p_gold": 0.5},
        ],
    }
    frame = join_roles(rows).set_index("example_id")
    assert frame.loc["a", "confidence_gap"] == pytest.approx(0.65) and pd.isna(frame.loc["b", "confidence_gap"])


# --- answers in words ---------------------------------------------------------------------------------------------


def test_classes_are_named_by_the_data_and_a_generic_checkpoint_name_is_dropped():
    from kd_analysis.data.example import class_label, class_names

    assert class_label(0, "negative") == "0: negative"
    assert class_label(0, "LABEL_0") == "0" and class_label(1, None) == "1" and class_label(2, "2") == "2"
    # an id named two ways stays unnamed; NaN (a frame's missing cell) and bools are no names or ids
    assert class_names([(0, "neg"), (1, "pos"), (1, "positive"), (2, float("nan")), (True, "x")]) == {0: "neg"}


def test_classification_records_carry_the_gold_class_name():
    import torch

    from kd_analysis.data.example import Example
    from kd_analysis.training.choice_records import choice_records

    examples = [Example("a", "fine", label=1, answer="positive"), Example("b", "file row", label=0)]
    recs = [r.to_dict() for r in choice_records(examples, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))]
    assert recs[0]["gold_name"] == "positive" and "gold_name" not in recs[1]
    mc = choice_records([Example("c", "q", choices=["x", "y"], label=0, answer="x")], torch.zeros(1, 2))
    assert "gold_name" not in mc[0].to_dict()  # a choice's text is in `choices` already


def test_answers_read_as_choices_classes_or_text():
    from kd_analysis.error_analysis.frames import answer_options, row_answer

    mc = {"choices": ["x", "y"], "gold": 1, "teacher_probs": [0.3, 0.7]}
    cls = {"choices": None, "gold": np.int64(0), "teacher_probs": [0.9, 0.1]}
    gen = {"choices": None, "gold": "42", "teacher_probs": None, "teacher_generated": "it is 42"}
    assert answer_options(mc, "teacher", {}) == ["x", "y"] and row_answer(mc, 1) == "1: y"
    assert answer_options(cls, "teacher", {0: "negative"}) == ["negative", ""]
    assert row_answer(cls, 0, {0: "negative"}) == "0: negative" and row_answer(cls, 1, {0: "negative"}) == "1"
    assert answer_options(gen, "teacher", {}) is None and row_answer(gen, "42") == "42"


def test_gold_slices_are_named_by_choice_position_or_class_name():
    teacher, student = synthetic(400)
    names = {f.expr: f.name for f in find_slices(join_roles({"teacher": teacher, "student": student}), min_n=5)}
    assert names.get("gold == 2") == "gold label: choice 2 (the 3rd)", sorted(names.values())
    for rows in (teacher, student):
        for r in rows:
            r.update(choices=None, gold=r["gold"] % 2, gold_name=["negative", "positive"][r["gold"] % 2])
    names = {f.expr: f.name for f in find_slices(join_roles({"teacher": teacher, "student": student}), min_n=5)}
    assert names.get("gold == 1") == "gold label: class 1 (positive)", sorted(names.values())


def test_slice_bins_near_one_keep_their_edges_apart():
    """Teacher confidences crowd just below 1: the bins' words must still tell their edges apart (they read
    "1 < teacher_p_pred ≤ 1")."""
    teacher, student = synthetic(400)
    rng = np.random.default_rng(3)
    for row in teacher:
        row["p_pred"] = float(1 - rng.random() * 1e-4)
    findings = find_slices(join_roles({"teacher": teacher, "student": student}), min_n=5)
    names = [f.name for f in findings if f.feature == "teacher confidence"]
    assert names and not any(" 1 < " in n or n.endswith(("≤ 1", "> 1")) for n in names), names


def test_slice_table_shows_every_accuracy_with_its_interval():
    from kd_analysis.error_analysis.slices import finding_rows

    teacher, student = synthetic(400)
    findings = [f.to_dict() for f in find_slices(join_roles({"teacher": teacher, "student": student}), min_n=5)]
    rows = finding_rows(findings, ("T", "S"))
    assert len(rows) == len(findings) and set(rows[0]) == {
        "slice",
        "n",
        "T accuracy (95%)",
        "S accuracy (95%)",
        "gap (95%)",
        "adjusted p",
        "filter",
    }
    for row, f in zip(rows, findings):
        low, high = f["teacher_ci"]
        assert row["T accuracy (95%)"] == f"{f['teacher_accuracy']:.0%} ({low:.0%}–{high:.0%})"
        assert len(row["adjusted p"]) <= 8  # two significant figures (it showed 00000000001, cut)
