"""GSM8K answer extraction, written from the four rules of Goyal et al.'s scoring code (docs/methods.md §2):
(1) first \\boxed{}; (2) the first line's numbers when there is one or all are equal; (3) the first number after
"the [final/correct] answer is"; (4) the last number; no number = None (wrong)."""

import pytest

from kd_analysis.data.answers import extract_number, is_correct, normalise_number


# Rule 1: the first \boxed{} wins over every other rule.
def test_boxed_wins_over_first_line_stated_and_last_number():
    text = "7\nThe answer is 8.\nSo \\boxed{9} and later \\boxed{10}, then 11"
    assert extract_number(text) == "9"


def test_boxed_with_nested_braces_and_separators():
    assert extract_number("Total: $\\boxed{\\text{1,234}}$ dollars, not 5") == "1234"


def test_boxed_without_a_number_falls_through():
    assert extract_number("We get \\boxed{x}\nthe answer is 4, check 6") == "4"


# Rule 2: the numbers on the first line.
def test_first_line_with_one_number_among_words():
    # the old code accepted only a line that was a lone number; one number in a sentence counts too
    assert extract_number("She pays 18 dollars in total.\nThat is 9 + 9 = 18, then 20 more") == "18"


def test_first_line_with_the_same_number_repeated():
    assert extract_number("5 apples, so 5\nand later 7") == "5"


def test_first_line_same_number_written_differently_counts_as_same():
    assert extract_number("1,000 or 1000.0 in all\nnot 3") == "1000"


def test_first_line_with_different_numbers_falls_through_to_stated_answer():
    assert extract_number("5 + 3 = 8\nthe answer is 8 apples, plus 2") == "8"


def test_first_line_with_different_numbers_falls_through_to_last_number():
    assert extract_number("5 + 0 = 5\nSo she keeps 12 of them.") == "12"


def test_first_line_is_the_first_non_blank_line():
    assert extract_number("\n\n  42 cookies\n1 2 3") == "42"


def test_first_line_without_numbers_falls_through():
    assert extract_number("Let us think.\nShe had 3 then 4.") == "4"


# Rule 3: the first number after "the [final/correct] answer is".
@pytest.mark.parametrize("phrase", ["the answer is", "The final answer is", "THE CORRECT ANSWER IS"])
def test_stated_answer_wins_over_last_number(phrase):
    text = f"Step one: 2 + 3 = 5.\nSo {phrase}: $15. Check: 15 - 5 = 10."
    assert extract_number(text) == "15"


def test_stated_answer_takes_the_first_number_after_the_phrase_even_past_words():
    assert extract_number("We add 2 and 3.\nThe answer is therefore 5 cups, or 6 with the spare.") == "5"


def test_stated_phrase_without_a_number_after_it_falls_to_last_number():
    assert extract_number("Add 2 and 3 to get 5.\nI do not know what the answer is") == "5"


# Rule 4: the last number.
def test_last_number_when_no_other_rule_applies():
    assert extract_number("First 3 + 4 = 7.\nThen 7 * 2 = 14 in all") == "14"


# No number.
@pytest.mark.parametrize("text", ["", None, "   \n ", "I cannot solve this.", "no digits here\nat all"])
def test_no_number_is_none_and_wrong(text):
    assert extract_number(text) is None
    assert is_correct(text, "3") is False


# Number forms.
def test_thousands_separators_are_dropped():
    assert extract_number("Costs add up.\nShe earns 1,234,567 a year") == "1234567"


def test_commas_between_numbers_are_not_thousands_separators():
    assert extract_number("pick 5,6 and 7") == "7"
    assert extract_number("values 12,3456") == "3456"


@pytest.mark.parametrize(
    "raw,canon",
    [
        ("5.50", "5.5"),
        ("5.0", "5"),
        ("0.25", "0.25"),
        ("007", "7"),
        ("-0", "0"),
        ("-3.10", "-3.1"),
        ("2,500.00", "2500"),
    ],
)
def test_normalise_number(raw, canon):
    assert normalise_number(raw) == canon


def test_decimals_compare_without_trailing_zeros():
    assert extract_number("Add it up.\nThe answer is $5.50") == "5.5"
    assert is_correct("Add it up.\nThe answer is $5.50", "5.5")
    assert not is_correct("Add it up.\nThe answer is $5.50", "5.05")


def test_negative_numbers_keep_their_sign():
    assert extract_number("Work it out.\nThe temperature drops to -3 degrees") == "-3"
    assert extract_number("\\boxed{-12}") == "-12"
    assert extract_number("Work it out.\nthe answer is -4.") == "-4"


def test_hyphen_after_a_digit_is_subtraction_not_a_sign():
    assert extract_number("Work it out.\nWe get 10-3") == "3"


# is_correct against the gold.
def test_is_correct_with_a_comma_in_the_gold():
    assert is_correct("Add them.\nThe answer is 1234.", "1,234")
    assert is_correct("Add them.\nThe answer is 1,234.", "1234")
    assert not is_correct("Add them.\nThe answer is 1,235.", "1,234")


def test_is_correct_without_gold_is_wrong():
    assert is_correct("42", None) is False


def test_is_correct_uses_the_rule_order():
    # the first line says 18 (one number), the last number is 20: rule 2 decides
    assert is_correct("18 dollars\nbecause 2 * 10 = 20", "18")
    assert not is_correct("18 dollars\nbecause 2 * 10 = 20", "20")


@pytest.mark.parametrize(
    "text,expected", [("The answer is .5", "0.5"), ("It costs $-.25 now.\nok", "-0.25"), ("1.5 and .5 make 2", "2")]
)
def test_decimals_without_a_leading_zero(text, expected):
    assert extract_number(text) == expected
