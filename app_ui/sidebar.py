"""The sidebar drawn on every page: the teacher, student and data set that all workflows use."""

from __future__ import annotations

import re

import streamlit as st

from app_ui import state
from app_ui.resources import is_loaded, loaded_teacher
from kd_analysis.data.demo import DEMO_SETS
from kd_analysis.models.builtins import BUILTINS
from kd_analysis.models.specs import TASKS

STUDENT_KIND_LABELS = {
    "drop_layers": "Teacher with layers dropped",
    "shrink": "Smaller random-init config",
    "model": "Another model",
}


# sidebar field -> URL parameter; Home and Models & data write them (their main selection is the sidebar's), and
# any page applies them when a link brings them
URL_FIELDS = {
    "teacher_source": "teacher",
    "teacher_task": "task",
    "student_kind": "student",
    "student_layers": "layers",
    "data_source": "data",
}


def _known_sources() -> tuple[set[str], set[str]]:
    """Teachers and data sets a link may select: built-ins, demo sets and what this session added itself. A link
    never makes the server open a path or hub id the user did not add (a shared link is not a file browser)."""
    teachers = set(BUILTINS) | set(state.get("custom_models")) | set(state.shipped_teachers())
    data = {f"demo:{name}" for name in DEMO_SETS} | set(state.get("custom_data"))
    return teachers, data


def apply_url_selection() -> list[str]:
    """Apply `?teacher=&task=&student=&layers=&data=` arriving in the URL; returns one line per value refused."""
    teachers, data = _known_sources()
    valid = {
        "teacher_source": lambda v: v in teachers,
        "teacher_task": lambda v: v in ("auto", *TASKS),
        "student_kind": lambda v: v in STUDENT_KIND_LABELS,
        # ASCII digits only: str.isdigit() also accepts '²' or '٣', which int() then refuses
        "student_layers": lambda v: re.fullmatch(r"[0-9]{1,3}", v) is not None and 1 <= int(v) <= 128,
        "data_source": lambda v: v in data,
    }
    refused = []
    for field, param in URL_FIELDS.items():
        value = st.query_params.get(param)
        if value is None or value == st.session_state.get(f"_url_seen_{param}"):
            continue
        st.session_state[f"_url_seen_{param}"] = value
        if state.url_param(param) is not None and valid[field](value):
            state.put(field, int(value) if field == "student_layers" else value)
        else:
            refused.append(f"{param} = {value}")
    return refused


def write_url_selection() -> None:
    """Put the sidebar's selection in the URL (Home, Models & data), so a copied link reopens it."""
    for field, param in URL_FIELDS.items():
        if field == "student_layers" and state.get("student_kind") not in ("drop_layers", "shrink"):
            state.write_url_state(param, None)
            continue
        state.write_url_state(param, state.get(field))


def render_sidebar() -> state.Selection:
    sb = st.sidebar
    sb.markdown("### Teacher · student · data")
    for line in apply_url_selection():
        sb.info(
            f"The link's {line} is not among this session's teachers and data sets; add it on Models & data first.",
            icon=":material/link_off:",
        )
    teachers = (
        list(state.shipped_teachers()) + list(BUILTINS) + [m for m in state.get("custom_models") if m not in BUILTINS]
    )
    if state.get("teacher_source") not in teachers:
        teachers.append(state.get("teacher_source"))
    sb.selectbox(
        "Teacher",
        teachers,
        format_func=state.model_label,
        key=state.widget_key("teacher_source"),
        on_change=state.save,
        args=("teacher_source",),
        help="Add local folders or hub ids on the Models & data page.",
    )
    sb.selectbox(
        "Task",
        ["auto", *TASKS],
        key=state.widget_key("teacher_task"),
        on_change=state.save,
        args=("teacher_task",),
        help="auto: the built-in's default or the checkpoint's own head",
    )
    sb.selectbox(
        "Student",
        list(STUDENT_KIND_LABELS),
        format_func=STUDENT_KIND_LABELS.get,
        key=state.widget_key("student_kind"),
        on_change=state.save,
        args=("student_kind",),
    )
    if state.get("student_kind") in ("drop_layers", "shrink"):
        sb.number_input(
            "Student layers",
            min_value=1,
            max_value=128,
            step=1,
            key=state.widget_key("student_layers"),
            on_change=state.save,
            args=("student_layers",),
        )
    else:
        sb.text_input(
            "Student model (built-in, folder or hub id)",
            key=state.widget_key("student_source"),
            on_change=state.save,
            args=("student_source",),
        )
    sources = [f"demo:{name}" for name in DEMO_SETS] + list(state.get("custom_data"))
    if state.get("data_source") not in sources:
        sources.append(state.get("data_source"))
    sb.selectbox(
        "Data set",
        sources,
        key=state.widget_key("data_source"),
        on_change=state.save,
        args=("data_source",),
        format_func=_data_label,
    )
    return state.selection()


def _data_name(key: str) -> str:
    """A data set as sentences name it: its source (`demo:sentiment`), with a file's column mapping in words."""
    from kd_analysis.data.refs import describe_data

    return describe_data(key)


def _data_label(key: str) -> str:
    """A demo set's title; a file with its column mapping, `reviews.csv (text: review, label: sentiment)`."""
    if key.startswith("demo:") and key[5:] in DEMO_SETS:
        return f"{DEMO_SETS[key[5:]].title} (demo)"
    return _data_name(key)


def sidebar_status() -> None:
    """Drawn after the page ran, so it reflects what the page just loaded."""
    sel = state.selection()
    if sel.student.kind == "model" and not sel.student.model.source:
        st.sidebar.info("Name the student model to load the pair.", icon=":material/info:")
    elif is_loaded(sel.teacher, sel.student):
        st.sidebar.success("Teacher and student loaded", icon=":material/check_circle:")
        teacher = loaded_teacher(sel.teacher)
        if teacher is not None and teacher.untrained_head:
            st.sidebar.warning(
                f"The teacher's {teacher.task.replace('_', ' ')} head is untrained: its predictions "
                "are random until you fine-tune it (`python -m kd_analysis train` with `train_teacher: "
                "true`), or pick a fine-tuned teacher such as the reference MC teacher.",
                icon=":material/warning:",
            )
    else:
        st.sidebar.caption("Pair not loaded yet: load it on the home page or on Models & data.")


def data_fit_warning() -> None:
    """Warn in the sidebar, on every page, when the teacher's task cannot score the sidebar's data set."""
    sel = state.selection()
    from app_ui.resources import dataset
    from kd_analysis.data.fit import task_fit
    from kd_analysis.models.loading import expected_task

    teacher = loaded_teacher(sel.teacher)
    task = teacher.task if teacher is not None else expected_task(sel.teacher)
    try:
        examples = dataset(sel.data_source).examples
    except Exception:
        return
    from app_ui.safe_text import md

    message = task_fit(task, examples, md(_data_name(sel.data_source)))
    if message:
        st.sidebar.warning(message, icon=":material/rule:")
