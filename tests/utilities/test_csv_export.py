"""CSV downloads are safe to open in a spreadsheet: text that would start a formula is shown as text."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from kd_analysis.csv_export import csv_text

ROOT = Path(__file__).resolve().parents[2]


def test_text_cells_that_start_a_formula_are_quoted_and_numbers_stay_numbers():
    frame = pd.DataFrame(
        {
            "example": ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rx", "plain", "a=b"],
            "loss": [-0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        }
    )
    frame["=name"] = "ok"
    rows = list(csv.reader(io.StringIO(csv_text(frame), newline="")))
    assert rows[0] == ["example", "loss", "'=name"]
    assert [r[0] for r in rows[1:]] == [
        '\'=HYPERLINK("http://x","y")',
        "'+1+1",
        "'-2+3",
        "'@SUM(A1)",
        "'\tcmd",
        "'\rx",
        "plain",
        "a=b",
    ]
    assert rows[1][1] == "-0.5"  # a negative number is a number, not text


def test_every_page_writes_its_csv_downloads_through_the_neutraliser():
    sources = [*ROOT.joinpath("pages").glob("*.py"), *ROOT.joinpath("app_ui").glob("*.py"), ROOT / "app.py"]
    raw = [str(p.relative_to(ROOT)) for p in sources if ".to_csv(" in p.read_text(encoding="utf-8")]
    assert raw == [], f"these build CSV without csv_text: {raw}"
