"""Final-number extraction for GSM8K-style answers, by the rules of Goyal et al.'s scoring code.

Order: the first \\boxed{...}; else a lone number on the first line; else the number after "the final/correct
answer is"; else the last number in the text. Numbers are compared without thousands separators.
"""
from __future__ import annotations

import re

NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
_BOXED = re.compile(r"\\boxed\{([^}]*)\}")
_LONE = re.compile(rf"^\s*\$?\s*({NUMBER})\s*\.?\s*$")
_STATED = re.compile(rf"the (?:final |correct )?answer is[:\s]*\$?\s*({NUMBER})", re.IGNORECASE)
_ANY = re.compile(NUMBER)


def _clean(num: str) -> str:
    num = num.replace(",", "")
    if "." in num:
        num = num.rstrip("0").rstrip(".")
    return num


def extract_number(text: str) -> str | None:
    """The predicted final number, or None when the text has no parseable number (counted wrong)."""
    if not text:
        return None
    m = _BOXED.search(text)
    if m:
        inner = _ANY.search(m.group(1))
        if inner:
            return _clean(inner.group(0))
    first = text.strip().splitlines()[0] if text.strip() else ""
    m = _LONE.match(first)
    if m:
        return _clean(m.group(1))
    m = _STATED.search(text)
    if m:
        return _clean(m.group(1))
    nums = _ANY.findall(text)
    return _clean(nums[-1]) if nums else None


def is_correct(prediction: str, gold: str) -> bool:
    pred = extract_number(prediction)
    return pred is not None and gold is not None and pred == _clean(str(gold))
