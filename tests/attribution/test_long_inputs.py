"""Long inputs are cut from the left of the question, to the model's real maximum or the user's cap, and say so."""

from __future__ import annotations

import json

import pytest

from kd_analysis.attribution import attribute, overlap, select_rationale
from kd_analysis.attribution.targets import build_target
from kd_analysis.data import Example
from kd_analysis.models import ModelSpec
from kd_analysis.models.loading import load_model

CHOICES = ["five", "banana", "seven"]
# ~2,000 tokens of question whose last words ("which of these is a fruit") are the part that matters
QUESTION = " ".join(["the cat sat on the mat"] * 300) + " which of these is a fruit"
LONG = Example("long", QUESTION, choices=CHOICES, label=1, answer="banana")


def _question_tokens(loaded) -> int:
    return len(loaded.tokenizer(QUESTION, add_special_tokens=False)["input_ids"])


def _assert_end_and_choices_kept(a, tgt):
    words = [w.text for w in a.words]
    assert words[-len(CHOICES) :] == CHOICES  # every choice is still input
    question = [w.text for w in a.words if w.segment == "question"]
    assert question[-6:] == ["which", "of", "these", "is", "a", "fruit"]  # the end of the question stays
    assert question[0] in {"the", "cat", "sat", "on", "mat"}  # cut at a word, not inside one
    assert [s.text for s in tgt.segments[1:]] == CHOICES
    o = overlap(a, select_rationale(a, 3))
    assert o.defined  # the gold answer "banana" is in the input, so overlap is measured


def test_multiple_choice_head_cuts_the_question_from_the_left(mc_head):
    """BERT pairs: [CLS] question [SEP] choice [SEP]; only the start of the question goes, to the model's 128."""
    a = attribute(mc_head, LONG, method="saliency")
    tgt = build_target(mc_head, LONG)
    _assert_end_and_choices_kept(a, tgt)
    tok = mc_head.tokenizer
    ids = tgt.extra["input_ids"]
    assert ids.shape[1] == 128  # the model's real maximum (cap 512 is larger)
    for row, choice in zip(ids.tolist(), CHOICES):
        row = [i for i in row if i != tok.pad_token_id]
        assert row[0] == tok.cls_token_id and row[-1] == tok.sep_token_id
        assert tok.decode(row[-2:-1]) == choice and row[-3] == tok.sep_token_id
    assert a.truncated and len(a.notes) == 1
    kept = len(tok(tgt.segments[0].text, add_special_tokens=False)["input_ids"])
    assert a.notes[0] == (
        f"question cut from the left: kept the last {kept} of {_question_tokens(mc_head):,} "
        "tokens; input truncated to 128 tokens (model maximum; cap 512)"
    )


def test_decoder_prompt_keeps_choices_and_answer_cue(decoder):
    a = attribute(decoder, LONG, method="saliency", max_tokens=64)
    tgt = build_target(decoder, LONG, max_tokens=64)
    _assert_end_and_choices_kept(a, tgt)
    prompt = tgt.extra["prompt"]
    assert prompt.startswith("Question: ") and prompt.endswith("\nChoices: (A) five (B) banana (C) seven\nAnswer:")
    n_prompt = len(decoder.tokenizer(prompt)["input_ids"])
    assert tgt.embeds.shape[1] == n_prompt
    assert n_prompt + len(decoder.tokenizer(" banana", add_special_tokens=False)["input_ids"]) <= 64
    kept = len(decoder.tokenizer(tgt.segments[0].text, add_special_tokens=False)["input_ids"])
    assert a.notes == [
        f"question cut from the left: kept the last {kept} of {_question_tokens(decoder):,} tokens; "
        "input truncated to 64 tokens (cap; model maximum 128)"
    ]


def test_short_input_is_not_cut(mc_head, decoder):
    short = Example("s", "which of these is a fruit", choices=CHOICES, label=1, answer="banana")
    for loaded in (mc_head, decoder):
        a = attribute(loaded, short, method="saliency")
        assert not a.truncated and a.notes == []


def test_real_maximum_and_cap():
    """The limit is the smaller of the cap and the model's own maximum; a tokenizer's 1e30 'no limit' is ignored."""
    from types import SimpleNamespace

    from transformers import BertConfig, LlamaConfig

    from kd_analysis.truncation import model_max_tokens, token_limit

    no_limit = SimpleNamespace(model_max_length=int(1e30))
    smol = SimpleNamespace(model=SimpleNamespace(config=LlamaConfig(max_position_embeddings=8192)), tokenizer=no_limit)
    assert model_max_tokens(smol.model, no_limit) == 8192
    assert token_limit(smol, 512).describe() == "512 tokens (cap; model maximum 8,192)"
    assert token_limit(smol, 20000).describe() == "8,192 tokens (model maximum; cap 20,000)"
    minilm = SimpleNamespace(
        model=SimpleNamespace(config=BertConfig(max_position_embeddings=512)),
        tokenizer=SimpleNamespace(model_max_length=512),
    )
    assert token_limit(minilm, 4096).tokens == 512


def test_bad_cap_is_one_clear_error(mc_head):
    from kd_analysis.exceptions import KDLensError

    with pytest.raises(KDLensError, match="max tokens must be a positive whole number"):
        attribute(mc_head, LONG, method="saliency", max_tokens=0)


def test_choices_alone_over_the_limit_is_one_clear_error(mc_head):
    from kd_analysis.exceptions import KDLensError

    wide = Example("wide", "a question", choices=[" ".join(["banana"] * 40), "seven"], label=0)
    with pytest.raises(KDLensError, match="example wide: .* more than the limit of 16 tokens"):
        attribute(mc_head, wide, method="saliency", max_tokens=16)


def test_head_statistics_cut_the_question_and_keep_the_template(tiny_dir):
    from kd_analysis.attention.stats import encode, fit_prompt, head_stats
    from kd_analysis.truncation import token_limit

    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    prompt = lambda ex: f"Solve this. {ex.text}\nAnswer:"  # noqa: E731
    text, cut = fit_prompt(lm, LONG, prompt, token_limit(lm, 48))
    assert text.startswith("Solve this. ") and text.endswith("which of these is a fruit\nAnswer:")
    assert len(lm.tokenizer(text)["input_ids"]) <= 48 and cut.total == _question_tokens(lm)
    stats = head_stats(lm, [LONG, Example("s", "a short one")], prompt, max_tokens=48)
    assert stats.truncated == 1
    assert "1 of 2 example(s)" in stats.notes[0] and "(cap; model maximum 128)" in stats.notes[0]
    assert f"kept the last {cut.kept} of {cut.total:,} tokens" in stats.notes[0]

    bert = load_model(ModelSpec(str(tiny_dir / "bert")))
    ids, was_cut = encode(bert, QUESTION, 32)
    tok = bert.tokenizer
    assert was_cut and len(ids) == 32 and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.decode(ids[-2:-1]) == "fruit"  # the end of the text stays


def _mc_file(path, n_long=2):
    rows = [
        {
            "question": QUESTION if i < n_long else "which of these is a fruit",
            "answerKey": "B",
            "choices": {"label": ["A", "B", "C"], "text": CHOICES},
        }
        for i in range(3)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_rationales_reports_cuts(tiny_dir, tmp_path, capsys):
    from kd_analysis.cli import main

    data = _mc_file(tmp_path / "mc.jsonl")
    args = [
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
        "--max-tokens",
        "48",
    ]
    assert main(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["truncated"] == {"teacher": 2} and report["max_tokens"] == 48
    assert report["teacher"]["defined"] == 3 and report["teacher"]["truncated"] == 2
    notes = report["truncation_notes"]
    assert len(notes) == 2 and all(
        "kept the last" in n["note"] and "(cap; model maximum 128)" in n["note"] for n in notes
    )
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "teacher: 2 of 3 inputs cut to fit the token limit (--max-tokens 48)" in out
    assert "question cut from the left: kept the last" in out
    assert main(args[:-1] + ["0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "max" in err[0] and "(got 0)" in err[0]


def test_cli_attention_stats_reports_cuts(tiny_dir, tmp_path, capsys):
    from kd_analysis.cli import main

    data = _mc_file(tmp_path / "mc.jsonl")
    (tmp_path / "runs").mkdir()  # a --root that does not exist is refused by commands that only read it
    args = [
        "attention",
        "stats",
        "--model",
        f"tiny={tiny_dir / 'llama'}",
        "--data",
        str(data),
        "--max-tokens",
        "40",
        "--root",
        str(tmp_path / "runs"),
    ]
    assert main(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["truncated"] == {"tiny": 2}
    assert len(report["notes"]["tiny"]) == 1 and "2 of 3 example(s)" in report["notes"]["tiny"][0]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "tiny: 2 of 3 examples cut to fit the token limit (--max-tokens 40)" in out


def test_saved_results_keep_their_cut_counts(mc_head):
    from kd_analysis.attention.stats import HeadStats
    from kd_analysis.attribution import Attribution

    a = attribute(mc_head, LONG, method="saliency", max_tokens=48)
    again = Attribution.from_dict(json.loads(json.dumps(a.to_dict())))
    assert again.truncated and again.notes == a.notes
    old = {k: v for k, v in a.to_dict().items() if k != "truncated"}
    old["notes"] = ["input truncated to the model's maximum"]  # written before the flag existed
    assert Attribution.from_dict(old).truncated
    saved = {
        "label": "x",
        "layers": 1,
        "heads": 1,
        "examples": 3,
        "mean": {},
        "ci": {},
        "notes": ["2 example(s) longer than 64 tokens were cut to their last 64"],
    }
    assert HeadStats.from_dict(saved).truncated == 2


@pytest.mark.slow
def test_saliency_page_warns_about_cut_inputs(tiny_dir, tmp_path):
    from tests.helpers.pages import attribute_live, open_with

    data = _mc_file(tmp_path / "mc.jsonl")
    at = open_with(tiny_dir / "bert", "multiple_choice", "pages/saliency_rationales.py", layers=1, data=data)
    next(s for s in at.selectbox if s.label == "Method").set_value("saliency").run()
    assert not at.exception, [e.value for e in at.exception]
    attribute_live(at)
    warnings = [w.value for w in at.warning if "cut from the left" in w.value]
    assert len(warnings) == 2 and warnings[0].startswith("Teacher: 2 of 3 inputs")  # teacher and student
    assert "model maximum" in warnings[0]
    next(n for n in at.number_input if n.label == "max tokens (cap)").set_value(48).run()
    attribute_live(at)
    warnings = [w.value for w in at.warning if "cut from the left" in w.value]
    assert warnings and "48 tokens \\(cap; model maximum 128\\)" in warnings[0]


def test_priming_page_warns_about_cut_inputs(tiny_dir, run_root):
    from kd_analysis.attention.job import STATS_FILE, attention_config
    from kd_analysis.attention.stats import head_stats
    from kd_analysis.runs import RunStore
    from tests.helpers.pages import open_page

    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    stats = head_stats(
        lm, [LONG, Example("s", "a short one")], lambda ex: ex.text + "\nAnswer:", label="none", max_tokens=40
    )
    job = RunStore(run_root).create("attention", attention_config([], "demo:arithmetic"), run_id="heads")
    job.write_json(STATS_FILE, [stats.to_dict()])
    job.set_status("finished")
    at = open_page("pages/priming_attention.py")
    assert not at.exception, [e.value for e in at.exception]
    warnings = [w.value for w in at.warning if "cut from the left" in w.value]
    assert len(warnings) == 1 and "none 1 of 2 examples" in warnings[0]
