"""Loaders on format samples written here, the demo sets, and bad files."""

from __future__ import annotations

import json
import re

import pytest

from kd_analysis.data import (
    DEMO_SETS,
    ColumnMapping,
    detect_format,
    gold_number,
    inspect_data,
    load_dataset,
    load_demo,
    load_file,
    loaders,
    preview_data,
    write_demo,
)
from kd_analysis.exceptions import DataError


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_gsm8k_jsonl(tmp_path):
    f = _jsonl(
        tmp_path / "g.jsonl",
        [
            {"question": "Ann has 3 pens and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
            {"question": "Big?", "answer": "1,000 + 234 = 1,234\n#### 1,234"},
        ],
    )
    ds = load_file(f)
    assert ds.format == "gsm8k"
    assert [e.answer for e in ds.examples] == ["7", "1234"]
    assert ds.examples[0].solution == "3 + 4 = 7"
    assert ds.examples[0].task == "generation"


def test_commonsenseqa_nested_and_flat(tmp_path):
    rows = [
        {
            "id": "q1",
            "question": "Where is a stove?",
            "answerKey": "B",
            "choices": {"label": ["A", "B", "C"], "text": ["garden", "kitchen", "car"]},
        },
        {
            "id": "q2",
            "question": {"stem": "What cuts paper?"},
            "answerKey": "A",
            "choices": {"label": ["A", "B"], "text": ["scissors", "spoon"]},
        },
    ]
    ds = load_file(_jsonl(tmp_path / "c.jsonl", rows))
    assert ds.format == "commonsenseqa"
    assert ds.examples[0].label == 1 and ds.examples[0].answer == "kitchen"
    assert ds.examples[1].text == "What cuts paper?" and ds.examples[1].answer == "scissors"


def test_commonsenseqa_original_release_nests_its_choices_in_the_question(tmp_path):
    """The original release's rows: {answerKey, id, question: {question_concept, choices: [{label, text}], stem}}."""
    rows = [
        {
            "answerKey": "C",
            "id": "q1",
            "question": {
                "question_concept": "stove",
                "choices": [
                    {"label": "A", "text": "garden"},
                    {"label": "B", "text": "car"},
                    {"label": "C", "text": "kitchen"},
                ],
                "stem": "Where is a stove?",
            },
        }
    ]
    ds = load_file(_jsonl(tmp_path / "c.jsonl", rows))
    assert ds.format == "commonsenseqa" and ds.skipped == 0
    [ex] = ds.examples
    assert ex.text == "Where is a stove?" and ex.choices == ["garden", "car", "kitchen"]
    assert ex.label == 2 and ex.answer == "kitchen" and ex.meta["choice_labels"] == ["A", "B", "C"]


def test_sst2_tsv_with_stray_quotes(tmp_path):
    f = tmp_path / "train.tsv"
    f.write_text("sentence\tlabel\nit 's a \" charming film\t1\nflat and dull\t0\n", encoding="utf-8")
    ds = load_file(f)
    assert ds.format == "sst2"
    assert [e.label for e in ds.examples] == [1, 0]
    assert ds.examples[0].text == "it 's a \" charming film"


def test_generic_csv_with_mapping(tmp_path):
    f = tmp_path / "g.csv"
    f.write_text('review,stars,opts\n"good, really",1,\n"bad",0,\n', encoding="utf-8")
    with pytest.raises(DataError, match="no text column"):
        load_file(f)
    ds = load_file(f, mapping=ColumnMapping(text="review", label="stars"))
    assert ds.format == "generic"
    assert [(e.text, e.label) for e in ds.examples] == [("good, really", 1), ("bad", 0)]


def test_generic_guesses_common_columns(tmp_path):
    f = _jsonl(tmp_path / "x.jsonl", [{"text": "hi", "label": 1}, {"text": "yo", "label": 0}])
    ds = load_file(f)
    assert ds.format == "generic" and [e.label for e in ds.examples] == [1, 0]


def test_mapping_to_missing_column_is_clear(tmp_path):
    f = _jsonl(tmp_path / "x.jsonl", [{"text": "hi"}])
    with pytest.raises(DataError, match=r"column 'sentence' \(mapped to text\) is not in the file"):
        load_file(f, mapping=ColumnMapping(text="sentence"))


def test_wrong_columns_reports_found_columns(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("foo,bar\n1,2\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_file(f)
    assert "['foo', 'bar']" in str(err.value)


def test_bad_rows_are_reported_not_silently_dropped(tmp_path):
    f = _jsonl(
        tmp_path / "g.jsonl",
        [{"question": "a", "answer": "2\n#### 2"}, {"question": "b", "answer": "no gold here #### ?"}],
    )
    ds = load_file(f)
    assert len(ds.examples) == 1 and ds.skipped == 1
    assert "row 2" in ds.problems[0]


@pytest.mark.parametrize(
    "content,match", [(b"", "is empty"), (b"   \n\n", "empty"), (b"sentence,label\n", "no data rows")]
)
def test_empty_files(tmp_path, content, match):
    f = tmp_path / "e.csv"
    f.write_bytes(content)
    with pytest.raises(DataError, match=match):
        load_file(f)


def test_non_utf8_file(tmp_path):
    f = tmp_path / "latin.csv"
    f.write_bytes("sentence,label\ncaf\xe9 cr\xe8me,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8 text.*0xe9"):
        load_file(f)
    ds = load_file(f, encoding="latin-1")
    assert ds.examples[0].text == "café crème"


def test_invalid_json_line(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"1 of 2 lines are not JSON objects.*first: line 2: not valid JSON"):
        load_file(f)


def test_a_few_bad_jsonl_lines_are_skipped_and_reported(tmp_path):
    """The docs promise unreadable rows are counted: good rows are kept, bad lines named by number."""
    lines = [json.dumps({"text": f"sentence {i}", "label": i % 2}) for i in range(20)]
    lines[6] = '{"text": "cut short'
    lines[11] = "[1, 2]"
    f = tmp_path / "x.jsonl"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = load_file(f)
    assert len(ds.examples) == 18 and ds.skipped == 2 and ds.rows == 20
    assert ds.problems[0].startswith("line 7: not valid JSON") and ds.problems[1].startswith("line 12: a JSON list")
    report = preview_data(f)
    assert report.skipped == 2 and "line 7" in report.problems[0]


def test_previews_judge_bad_lines_on_the_whole_file_and_keep_u2028(tmp_path):
    lines = ['{"text": "cut short'] + [
        json.dumps({"text": f"sentence {i}\u2028two", "label": i % 2}, ensure_ascii=False) for i in range(1000)
    ]
    f = tmp_path / "x.jsonl"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert preview_data(f).skipped == 1  # 1 bad line in 1,001: a preview of the first rows must not refuse it
    ds = load_file(f)
    assert len(ds.examples) == 1000 and ds.rows == 1001 and "\u2028" in ds.examples[0].text


def test_error_reasons_never_echo_file_content(tmp_path):
    """A config naming a system file (e.g. /etc/shadow) must not copy its first line into the run's reason."""
    f = tmp_path / "shadow"
    f.write_text("root:$6$s3cr3tHash$abc:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    with pytest.raises(DataError) as err:
        load_file(f)
    assert "s3cr3tHash" not in str(err.value) and "root" not in str(err.value)
    assert "does not look like a header" in str(err.value)
    good = tmp_path / "named.csv"
    good.write_text("sentence_id,score\n1,2\n")
    with pytest.raises(DataError, match=r"its columns are \['sentence_id', 'score'\]"):
        load_file(good)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_file(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is a folder"):
        load_file(tmp_path)


def test_large_csv_preview_reads_only_the_start(tmp_path, monkeypatch):
    f = tmp_path / "big.csv"
    with open(f, "w", encoding="utf-8") as fh:
        fh.write("sentence,label\n")
        for i in range(100_000):
            fh.write(f"sentence number {i},{i % 2}\n")
    seen = []
    real = loaders.rows_to_examples
    monkeypatch.setattr(
        "kd_analysis.data.inspect.rows_to_examples", lambda rows, *a, **k: seen.append(len(rows)) or real(rows, *a, **k)
    )
    report = preview_data(f)
    assert seen == [20], "the preview must convert only the first rows"
    assert report.rows == 100_000 and report.partial and report.format == "sst2"
    assert len(report.preview) == 20


def test_format_detection_needs_content_not_just_columns():
    assert detect_format(["question", "answer"], [{"question": "q", "answer": "no mark"}]) == "generic"
    assert detect_format(["question", "answer"], [{"question": "q", "answer": "x #### 3"}]) == "gsm8k"
    assert gold_number("so the total is 12.\n#### 1,024 apples") == "1024"


@pytest.mark.parametrize("name", list(DEMO_SETS))
def test_demo_sets_are_sizeable_and_deterministic(name):
    a, b = load_demo(name), load_demo(name)
    assert a.format == DEMO_SETS[name].format
    assert len(a.examples) >= 250 and a.skipped == 0
    assert [e.to_dict() for e in a.examples] == [e.to_dict() for e in b.examples]
    inputs = {(e.text, tuple(e.choices or ())) for e in a.examples}
    assert len(inputs) == len(a.examples), "no duplicate inputs"


def test_demo_mcq_answer_is_among_choices():
    for ex in load_demo("mcq").examples:
        assert len(ex.choices) == 5 and len(set(ex.choices)) == 5
        assert ex.choices[ex.label] == ex.answer


def test_demo_arithmetic_solutions_are_correct():
    """Every equation in every worked solution holds, and the last result is the gold number."""
    eq = re.compile(r"(\d+(?: [-+*/] \d+)+) = (\d+)")
    for ex in load_demo("arithmetic").examples:
        found = eq.findall(ex.solution)
        assert found, ex.solution
        for expr, result in found:
            assert eval(expr) == int(result), (expr, result)
        assert found[-1][1] == ex.answer


def test_demo_sentiment_is_balanced():
    labels = [e.label for e in load_demo("sentiment").examples]
    assert 0.35 < sum(labels) / len(labels) < 0.65


@pytest.mark.parametrize("name", list(DEMO_SETS))
def test_demo_round_trips_through_its_file_format(tmp_path, name):
    path = write_demo(name, tmp_path / f"{name}{DEMO_SETS[name].suffix}")
    report = inspect_data(str(path))
    assert report.format == DEMO_SETS[name].format
    assert report.examples == len(load_demo(name).examples)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".txt"])
def test_a_demo_is_written_in_the_format_its_file_name_says(tmp_path, suffix):
    """`data demo sentiment --out x.csv` once wrote JSONL into x.csv, which the loaders then read as CSV."""
    path = write_demo("sentiment", tmp_path / f"s{suffix}")
    assert path.read_text().startswith({".csv": "sentence,label", ".tsv": "sentence\tlabel"}.get(suffix, "{"))
    loaded = [(e.text, e.label) for e in load_dataset(str(path)).examples]
    assert loaded == [(e.text, e.label) for e in load_demo("sentiment").examples]
    with pytest.raises(DataError, match="demo:mcq has nested fields \\(choices\\) that a .csv file cannot hold"):
        write_demo("mcq", tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()


def test_sources_dispatch_and_hub_offline(monkeypatch):
    assert load_dataset("demo:sentiment", limit=5).examples.__len__() == 5
    with pytest.raises(DataError, match="unknown demo set"):
        load_dataset("demo:nope")
    monkeypatch.setattr("kd_analysis.data.sources.hub_reachable", lambda: False)
    with pytest.raises(DataError, match="offline"):
        load_dataset("hf:gsm8k:main@test")
    with pytest.raises(DataError, match="hf:org/data"):
        load_dataset("org/data")


def test_a_first_row_over_a_megabyte_previews_as_a_row(tmp_path):
    """The preview reads 1 MiB, and more while the header and first row are longer (a 2 MB document in one cell
    previewed as "a header but no data rows"); csv's 128 KB cell limit no longer stops the read either."""
    from kd_analysis.data.loaders import read_rows_checked

    path = tmp_path / "long.csv"
    path.write_text("text,label\n" + '"' + "x" * (2 << 20) + '",1\nshort,0\n')
    preview = read_rows_checked(path, limit=5)
    assert [len(r["text"]) for r in preview.rows] == [2 << 20, 5]
    assert len(read_rows_checked(path).rows) == 2


def test_advice_for_a_non_utf8_file_fits_the_page_too(tmp_path):
    from kd_analysis.data.loaders import read_rows_checked
    from kd_analysis.exceptions import DataError

    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"re-save it as UTF-8 \(the CLI also reads other encodings"):
        read_rows_checked(path)


REVIEWS = "review,sentiment\n" + "".join(f"review number {i},{i % 2}\n" for i in range(30))


def test_a_data_set_carries_its_column_mapping_in_every_form(tmp_path):
    """YAML `data: {path, columns}`, the key string a page or a link holds, and the CLI's --columns all name the
    same data set, read the same way."""
    from kd_analysis.cli import build_parser
    from kd_analysis.cli.args import check_args
    from kd_analysis.data.refs import data_key, data_ref
    from kd_analysis.training.config import TrainConfig

    f = tmp_path / "reviews.csv"
    f.write_text(REVIEWS, encoding="utf-8")
    config = tmp_path / "run.yaml"
    config.write_text(f"teacher: minilm\ndata: {{path: {f}, columns: {{text: review, label: sentiment}}}}\n")
    key = TrainConfig.load(config).data
    assert key == data_key({"path": str(f), "columns": {"label": "sentiment", "text": "review"}})
    assert data_ref(key).describe() == f"{f} (label: sentiment, text: review)"
    assert [e.label for e in load_dataset(key).examples[:2]] == [0, 1]
    args = build_parser().parse_args(
        ["rationales", "--teacher", "minilm", "--data", str(f), "--columns", "text=review,label=sentiment"]
    )
    check_args(args)
    assert args.data == key
    with pytest.raises(DataError, match="no text column found"):  # without the mapping, as before
        load_dataset(str(f))


@pytest.mark.parametrize(
    "value,words",
    [
        ({"path": "x.csv", "columns": {"txt": "review"}}, "names the role 'txt'; the roles are text, label"),
        ({"path": "x.csv", "columns": {"text": ""}}, "data.columns.text must be a column name"),
        ({"path": "x.csv", "cols": {}}, "data has no setting 'cols'; it takes path and columns"),
        ({"columns": {"text": "a"}}, "data.path must name a data file"),
        ('x.csv {"colour": "red"}', "names the role 'colour'"),
    ],
)
def test_a_malformed_column_mapping_is_one_sentence(value, words):
    from kd_analysis.data.refs import data_ref

    with pytest.raises(DataError, match=re.escape(words)):
        data_ref(value)


def test_a_file_whose_name_looks_like_a_key_is_still_that_file(tmp_path):
    from kd_analysis.data.refs import data_ref

    odd = tmp_path / 'odd {"text": "x"}'
    odd.write_text("x")
    assert data_ref(str(odd)).source == str(odd) and data_ref(str(odd)).columns == ()


def test_cli_columns_mistakes_are_one_sentence():
    from kd_analysis.cli import main

    for spec in ("text", "txt=review", "text=a,text=b", ""):
        assert main(["rationales", "--teacher", "minilm", "--data", "x.csv", "--columns", spec]) == 2


def test_an_upload_in_use_under_a_mapped_key_is_kept(tmp_path):
    import io

    from kd_analysis.data.loaders import ColumnMapping
    from kd_analysis.data.refs import with_columns
    from kd_analysis.data.uploads import is_upload, remove_uploads, store_upload

    stored = store_upload("reviews.csv", io.BytesIO(REVIEWS.encode()), root=tmp_path)
    key = with_columns(str(stored), ColumnMapping(text="review"))
    assert is_upload(key, root=tmp_path)
    assert remove_uploads(keep=[key], root=tmp_path).removed == [] and stored.exists()


def test_an_uploaded_file_is_named_as_uploaded_not_by_its_store_folder(tmp_path, monkeypatch):
    """Pages name a data set by `describe_data`: an upload reads `sst2.tsv (…)`, a typed path stays as typed."""
    from kd_analysis.data.refs import data_key, describe_data

    monkeypatch.setenv("KD_LENS_CACHE", str(tmp_path / "cache"))
    stored = tmp_path / "cache" / "uploads" / "session-abc" / "sst2.tsv"
    stored.parent.mkdir(parents=True)
    stored.write_text("review\tsentiment\ngood\t1\n", encoding="utf-8")
    key = data_key({"path": str(stored), "columns": {"text": "review", "label": "sentiment"}})
    assert describe_data(key) == "sst2.tsv (label: sentiment, text: review)"
    typed = tmp_path / "mine.tsv"
    assert describe_data(str(typed)) == str(typed)
    assert describe_data("demo:mcq") == "demo:mcq"
