"""Shared fixtures: tiny random checkpoints of every family, an isolated model cache and run store."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# One de-quantised SmolLM2 per test session, outside the user's own cache.
_SESSION_CACHE = Path(os.environ.get("KD_LENS_TEST_CACHE", ROOT / ".pytest_cache" / "kd-lens-cache"))
os.environ["KD_LENS_CACHE"] = str(_SESSION_CACHE)
# The user's runs (the per-user data folder) of a test session: never the real home. The shipped reference runs stay
# the checkout's cached_runs/, read-only, as for a user.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="kd-lens-data-")  # one per test process: nothing leaks
os.environ.pop("KD_LENS_RUNS", None)
os.environ.pop("KD_LENS_REFERENCE_RUNS", None)

# Under pytest-xdist every worker is its own process: share the cores between workers instead of letting each
# start one thread per core (n workers x n threads oversubscribes the machine and every worker slows down).
# Subprocesses (the CLI, the Streamlit server of the browser tests) inherit the same limit.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, _threads)
    import torch

    torch.set_num_threads(int(_threads))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from kd_analysis.models.tiny import TINY_FAMILIES, build_tiny

    base = tmp_path_factory.mktemp("tiny")
    for family in TINY_FAMILIES:
        build_tiny(family, base / family)
    return base


@pytest.fixture
def run_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("KD_LENS_RUNS", str(root))
    return root


@pytest.fixture(scope="module")
def mc_head(tiny_dir):
    """A tiny BERT with a multiple-choice head (loaded through the user path)."""
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec

    return load_model(ModelSpec(str(tiny_dir / "bert"), task="multiple_choice"))


@pytest.fixture(scope="module")
def decoder(tiny_dir):
    """A tiny Llama scoring multiple choice by the answer's log-probability."""
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec

    return load_model(ModelSpec(str(tiny_dir / "llama"), task="multiple_choice"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item (rep_setup, rep_call, rep_teardown), for fixtures that act on failure
    (the browser tests' screenshot of the page as it was)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


from tests.helpers.error_runs import error_store  # noqa: E402, F401  (a fixture: a store with two error-analysis runs)
