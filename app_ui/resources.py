"""Models and data sets loaded once per server and shared by every page and session.

st.cache_resource holds a registry object; loading happens outside the cached call so a progress box can be
shown while it runs (a cached function would replay it on every hit).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import streamlit as st

from app_ui import state
from app_ui.safe_text import md
from kd_analysis.exceptions import KDLensError, user_message
from kd_analysis.models.specs import ModelSpec, StudentSpec


class _Registry:
    def __init__(self) -> None:
        self.items: dict[str, Any] = {}
        self.lock = threading.Lock()


@st.cache_resource(show_spinner=False)
def _models() -> _Registry:
    return _Registry()


@st.cache_resource(show_spinner=False)
def _datasets() -> _Registry:
    return _Registry()


def is_loaded(teacher: ModelSpec, student: StudentSpec | None = None) -> bool:
    key = teacher.key() if student is None else f"{teacher.key()}|{student.key()}"
    return key in _models().items


def load_teacher(spec: ModelSpec) -> Any:
    reg = _models()
    key = spec.key()
    if key not in reg.items:
        with reg.lock:
            if key not in reg.items:
                from kd_analysis.models.loading import load_model

                started = time.monotonic()
                with st.status(f"Loading {md(spec.source)}…", expanded=True) as box:
                    try:  # each step is written as it starts, with the seconds measured so far (no guesses)
                        reg.items[key] = load_model(spec, progress=lambda msg: box.write(md(msg)))
                    except BaseException:
                        box.update(label=f"Could not load {md(spec.source)}", state="error")
                        raise
                    took = time.monotonic() - started
                    box.update(
                        label=f"Loaded {md(state.model_label(spec.source))} in {took:.0f} s",
                        state="complete",
                        expanded=False,
                    )
                if took > 5:  # a long load ends where the user is looking, not only in a collapsed box
                    st.toast(
                        f"Loaded {md(state.model_label(spec.source))} in {took:.0f} s", icon=":material/check_circle:"
                    )
    return reg.items[key]


def load_pair(teacher_spec: ModelSpec, student_spec: StudentSpec) -> tuple[Any, Any, Any]:
    from kd_analysis.models.pair import check_pair
    from kd_analysis.models.students import derive_student

    teacher = load_teacher(teacher_spec)
    reg = _models()
    key = f"{teacher_spec.key()}|{student_spec.key()}"
    if key not in reg.items:
        with st.spinner(f"Building the student ({md(student_spec.describe())})…"):
            student = derive_student(teacher, student_spec)
            reg.items[key] = (student, check_pair(teacher, student))
    student, report = reg.items[key]
    return teacher, student, report


def dataset(source: str) -> Any:
    from kd_analysis.data.refs import data_ref
    from kd_analysis.data.sources import load_dataset

    reg = _datasets()
    path = Path(data_ref(source).source)
    stamp = f"{path.stat().st_mtime_ns}" if path.exists() else ""
    key = f"{source}@{stamp}"
    if key not in reg.items:
        reg.items[key] = load_dataset(source)
    return reg.items[key]


def show_error(exc: BaseException) -> None:
    """Bad input gets one clear sentence; anything else a short message (the full error goes to the log)."""
    if isinstance(exc, KDLensError):
        st.error(md(exc), icon=":material/error:")  # messages name paths, columns and values from the data
    else:
        import logging

        logging.getLogger("kd-lens").exception("unexpected error")
        st.error(f"Something went wrong: {md(user_message(exc, kind=True))}", icon=":material/error:")


def load_run_model(store: Any, run_id: str) -> Any:
    """The trained student of a finished run (LoRA merged), loaded once per server."""
    from kd_analysis.training.run_models import load_run_student

    reg = _models()
    run = store.get(run_id)
    key = f"run:{run.path.resolve()}:{run.status().get('updated', '')}"
    if key not in reg.items:
        with reg.lock:
            if key not in reg.items:
                with st.spinner(f"Loading the student of {md(run_id)}…"):
                    reg.items[key] = load_run_student(run)
    return reg.items[key]


def run_models_quietly(store: Any, run_id: str, progress=None) -> Any:
    """A finished run's teacher and student as its evaluation had them (`load_run_models`), for a background
    thread: loaded once and shared by the inside views of its examples and slices. Only the latest run's are kept
    (two models each), so opening run after run does not pile models up in memory."""
    from kd_analysis.error_analysis.explain import load_run_models

    reg = _models()
    run = store.get(run_id)
    key = f"runmodels:{run.path.resolve()}:{run.status().get('updated', '')}"
    with reg.lock:
        if key not in reg.items:
            for old in [k for k in reg.items if k.startswith("runmodels:")]:
                del reg.items[old]
            reg.items[key] = load_run_models(store, run_id, progress=progress)
    return reg.items[key]


def load_teacher_quietly(spec: ModelSpec, progress=None) -> Any:
    """load_teacher for a background thread (no Streamlit calls): the same registry, progress to a callback."""
    from kd_analysis.models.loading import load_model

    reg = _models()
    key = spec.key()
    with reg.lock:
        if key not in reg.items:
            reg.items[key] = load_model(spec, progress=progress)
    return reg.items[key]


def loaded_teacher(spec: ModelSpec) -> Any | None:
    """The teacher if this server already loaded it (never loads)."""
    return _models().items.get(spec.key())
