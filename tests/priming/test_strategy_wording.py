"""Priming prompt wording: the paper's four strategies (docs/methods.md §2) are our paraphrases, say so, and carry
nothing their strategy does not ask for (no chain-of-thought phrasing: that is `cot`'s job)."""

import re

import pytest

from kd_analysis.data.example import Example
from kd_analysis.priming import STRATEGIES, render_template
from kd_analysis.prompting.strategies import OWN_WORDING, PAPER_WORDING

PAPER = ("none", "teacher", "ai_to_ai", "confidence")
OURS = ("gold", "cot")
EX = Example(id="q", text="Ann has 3 pens and buys 4 more. How many pens?", answer="7", solution="3 + 4 = 7")
# chain-of-thought phrasings the paper's prompts do not have
COT = re.compile(
    r"step[\s-]*by[\s-]*step|each step|every step|think (?:it )?through|reason(?:ing)? (?:out|through)"
    r"|intermediate (?:result|step)|show (?:your|all) work",
    re.IGNORECASE,
)


def test_the_paper_strategies_and_ours_are_registered():
    assert [s for s in STRATEGIES if STRATEGIES[s].paper] == list(PAPER)
    assert set(OURS) <= set(STRATEGIES) and not any(STRATEGIES[s].paper for s in OURS)


@pytest.mark.parametrize("name", PAPER)
def test_paper_strategy_has_no_step_by_step(name):
    template = STRATEGIES[name].template
    assert "step by step" not in template.lower() and "step-by-step" not in template.lower()
    assert not COT.search(template), COT.search(template)


def test_cot_is_where_step_by_step_lives():
    assert "step by step" in STRATEGIES["cot"].template.lower()
    assert COT.search(STRATEGIES["cot"].template)


@pytest.mark.parametrize("name", PAPER)
def test_paper_strategy_is_labelled_as_our_wording(name):
    s = STRATEGIES[name]
    assert s.wording == PAPER_WORDING == "our wording of the paper's prompt"
    assert PAPER_WORDING in s.description  # the help text pages and the CLI show


@pytest.mark.parametrize("name", OURS)
def test_our_strategies_are_labelled_ours(name):
    s = STRATEGIES[name]
    assert s.wording == OWN_WORDING and s.wording in s.description and PAPER_WORDING not in s.description


def test_gold_uses_the_answer_and_ai_to_ai_does_not():
    assert STRATEGIES["gold"].uses_gold and "{answer}" in STRATEGIES["gold"].template
    assert "7" in render_template(STRATEGIES["gold"].template, EX).replace(EX.text, "")
    ai = STRATEGIES["ai_to_ai"]
    assert not ai.uses_gold and "{answer}" not in ai.template and "{solution}" not in ai.template
    assert "7" not in render_template(ai.template, EX).replace(EX.text, "")  # the paper's name misleads


def test_each_paper_prompt_says_what_its_strategy_asks():
    t = {s: STRATEGIES[s].template.lower() for s in PAPER}
    assert t["none"] == "{question}"
    assert (
        "teacher" in t["teacher"] and "student" in t["teacher"] and "clear" in t["teacher"] and "simple" in t["teacher"]
    )
    assert "detail" in t["ai_to_ai"] and "smaller" in t["ai_to_ai"] and "learn" in t["ai_to_ai"]
    assert t["confidence"].startswith("{question}") and "double-check" in t["confidence"]  # appended
