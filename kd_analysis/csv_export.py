"""CSV for people who open it in a spreadsheet: text cells that would start a formula are neutralised.

A cell that begins with =, +, -, @, a tab or a carriage return is run as a formula by Excel, LibreOffice and
Google Sheets (CSV injection); example texts, run names, notes and model outputs are user data and may begin that
way. OWASP's rule: prefix such a text cell with a single quote, which the spreadsheet shows as text. Numbers stay
numbers (a negative loss is written as -0.5, not '-0.5).
"""

from __future__ import annotations

import csv
from typing import Any

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A text cell that would start a formula, prefixed with a quote; anything else as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(frame: pd.DataFrame) -> str:
    """`frame` as CSV text (no index), every text cell and column name neutralised and quoted."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(neutralise)
    safe.columns = [neutralise(str(c)) for c in safe.columns]
    # every text cell quoted: pandas leaves a bare carriage return unquoted, which splits the row in a reader
    return safe.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC)
