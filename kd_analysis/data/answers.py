"""Final-number extraction for GSM8K-style answers, by the four rules of Goyal et al.'s scoring code.

The rules are tried in order; the first that yields a number decides:

1. the number inside the first ``\\boxed{...}`` (nested braces such as ``\\boxed{\\frac{1}{2}}`` are matched
   as a whole; the first number inside is taken);
2. the numbers on the first line of the text (its first non-blank line): accepted when there is exactly one
   number there, or when every number on that line is the same number ("5 apples, so 5"); a first line with
   different numbers ("5 + 3 = 8") does not decide;
3. the first number after "the answer is" / "the final answer is" / "the correct answer is" (any case);
4. the last number in the text.

A text with no number at all gives None, which is scored as wrong. Numbers are normalised before they are
compared: thousands separators are dropped ("1,234" = "1234"), trailing decimal zeros too ("5.50" = "5.5",
"5.0" = "5"), and a minus sign is kept ("-3"). A hyphen straight after a digit, letter or closing bracket is
read as subtraction or a dash, not as a sign ("10-3" holds 10 and 3).
"""

from __future__ import annotations

import re

# A number: optional sign (not when the hyphen follows a digit/letter/closing bracket, i.e. a subtraction),
# then digits with proper thousands groups ("1,234,567") or plain digits, then an optional decimal part; or a
# bare decimal part (".5").
NUMBER = r"(?:(?<![\w)\]}])-)?(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?<![\d.])\.\d+)"
_ANY = re.compile(NUMBER)
_BOXED = "\\boxed{"
_STATED = re.compile(r"\bthe\s+(?:final\s+|correct\s+)?answer\s+is\b", re.IGNORECASE)


def normalise_number(num: str) -> str:
    """Canonical text of a number: no thousands separators, no trailing decimal zeros, no leading zeros,
    no negative zero."""
    num = num.replace(",", "").strip()
    sign = "-" if num.startswith("-") else ""
    num = num.lstrip("+-")
    whole, _, frac = num.partition(".")
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    out = whole + ("." + frac if frac else "")
    return "0" if out == "0" else sign + out


def _boxed_content(text: str) -> str | None:
    """What is inside the first \\boxed{...}, braces balanced; None when there is no (closed) box."""
    start = text.find(_BOXED)
    if start < 0:
        return None
    i = start + len(_BOXED)
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def _first_line_number(text: str) -> str | None:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    values = {normalise_number(n) for n in _ANY.findall(lines[0])}
    return values.pop() if len(values) == 1 else None


def _stated_number(text: str) -> str | None:
    for phrase in _STATED.finditer(text):
        m = _ANY.search(text, phrase.end())
        if m:
            return normalise_number(m.group(0))
    return None


def extract_number(text: str | None) -> str | None:
    """The predicted final number (normalised), or None when the text has no number (counted wrong)."""
    if not text:
        return None
    boxed = _boxed_content(text)
    if boxed is not None:
        m = _ANY.search(boxed)
        if m:
            return normalise_number(m.group(0))
    for rule in (_first_line_number, _stated_number):
        found = rule(text)
        if found is not None:
            return found
    nums = _ANY.findall(text)
    return normalise_number(nums[-1]) if nums else None


def is_correct(prediction: str | None, gold) -> bool:
    """Whether the number extracted from `prediction` equals the gold number (both normalised, so a gold of
    "1,234" matches a prediction of 1234). No extracted number, or no gold, is wrong."""
    if gold is None:
        return False
    pred = extract_number(prediction)
    if pred is None:
        return False
    m = _ANY.search(str(gold))
    return pred == (normalise_number(m.group(0)) if m else str(gold).strip())
