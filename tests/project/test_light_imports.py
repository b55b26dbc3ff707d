"""Modules that read run folders load without torch: the run store, its per-example records and the error-analysis
frames are what a page or `errors` command reads first, and importing torch costs seconds on a cold start."""

from __future__ import annotations

import subprocess
import sys

import pytest

LIGHT = ["kd_analysis.runs", "kd_analysis.runs.records", "kd_analysis.runs.layout", "kd_analysis.error_analysis.frames"]


@pytest.mark.parametrize("module", LIGHT)
def test_reading_run_records_does_not_import_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False", f"{module} imports torch"
