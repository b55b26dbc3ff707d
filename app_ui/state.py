"""The user's selection (teacher, student, data set), kept across pages in st.session_state.

Widget keys are wiped by Streamlit when a page that does not draw them runs, so each selection lives under a
permanent key and is copied into its widget key before the widget is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from kd_analysis.models.specs import ModelSpec, StudentSpec

DEFAULTS: dict[str, Any] = {
    "teacher_source": "minilm",
    "teacher_task": "auto",
    "trust_remote_code": False,
    "student_kind": "drop_layers",
    "student_layers": 2,
    "student_keep": "",
    "student_source": "",
    "data_source": "demo:mcq",
    "custom_models": [],
    "custom_data": [],
}


def reference_teacher() -> str | None:
    """The shipped MC reference teacher (MiniLM + LoRA fine-tuned on the MC demo), when its adapter is present."""
    from kd_analysis.demo.reference import teacher_source
    from kd_analysis.runs import RunStore

    store = RunStore()
    return teacher_source(store) if teacher_source(store) in shipped_teachers() else None


def shipped_teachers() -> dict[str, str]:
    """The reference teachers present in the run store: their sources and titles, for the sidebar's list."""
    from kd_analysis.demo import reference
    from kd_analysis.runs import RunStore

    return reference.shipped_teachers(RunStore())


def model_label(source: str) -> str:
    """What a model source is called on the page: a reference teacher by its title, a built-in by its name, any
    other by its source (a path or hub id is what the user typed)."""
    from kd_analysis.models.builtins import BUILTINS

    shipped = shipped_teachers()
    if source in shipped:
        return shipped[source]
    return BUILTINS[source].title if source in BUILTINS else source


def default_teacher() -> str:
    return reference_teacher() or "minilm"


def _store(name: str) -> str:
    return f"_kd_{name}"


def get(name: str) -> Any:
    if _store(name) not in st.session_state:
        st.session_state[_store(name)] = default_teacher() if name == "teacher_source" else DEFAULTS[name]
    return st.session_state[_store(name)]


def put(name: str, value: Any) -> None:
    st.session_state[_store(name)] = value


def widget_key(name: str) -> str:
    """Seed the widget's key from the permanent value; pair with on_change=save, args=(name,)."""
    st.session_state[f"w_{name}"] = get(name)
    return f"w_{name}"


def save(name: str) -> None:
    put(name, st.session_state[f"w_{name}"])


def add_choice(list_name: str, value: str) -> None:
    items = list(get(list_name))
    if value and value not in items:
        items.append(value)
    put(list_name, items)


@dataclass(frozen=True)
class Selection:
    teacher: ModelSpec
    student: StudentSpec
    data_source: str

    def describe(self) -> str:
        """The selection in words: models by the names the sidebar shows, the data set with its column mapping."""
        from kd_analysis.data.refs import describe_data

        return f"{model_label(self.teacher.source)} → {self.student.describe()} on {describe_data(self.data_source)}"


def parse_keep(text: str) -> tuple[int, ...] | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return tuple(int(x) for x in text.replace(" ", "").split(",") if x != "")
    except ValueError:
        raise ValueError(f"layers to keep must be numbers separated by commas, e.g. 0,3,5 (got {text!r})") from None


def selection() -> Selection:
    task = get("teacher_task")
    teacher = ModelSpec(
        source=get("teacher_source"),
        task=None if task == "auto" else task,
        trust_remote_code=bool(get("trust_remote_code")),
    )
    kind = get("student_kind")
    if kind == "model":
        student = StudentSpec(
            kind="model",
            model=ModelSpec(
                source=get("student_source"), task=teacher.task, trust_remote_code=teacher.trust_remote_code
            ),
        )
    else:
        try:
            keep = parse_keep(get("student_keep")) if kind == "drop_layers" else None
        except ValueError:
            keep = None
        student = StudentSpec(kind=kind, keep_layers=keep, num_layers=int(get("student_layers")))
    return Selection(teacher=teacher, student=student, data_source=get("data_source"))


def url_param(name: str) -> str | None:
    """URL parameter `name` as the one URL schema allows it (`kd_analysis.schema.UrlParams`); None when absent or
    of another shape, so no page ever reads a hostile value raw."""
    from kd_analysis.schema import url_param as checked

    return checked(name, st.query_params.get(name))


_NO_DEFAULT = object()


def url_changed(param: str) -> bool:
    """The URL's `?param=` changed from outside (a link, a pasted address, the back button) since this session
    last applied or wrote it."""
    return url_param(param) != st.session_state.get(f"_url_seen_{param}", _NO_DEFAULT)


def url_arrivals(*params: str) -> dict[str, str | None] | None:
    """The one way a page binds its state to the URL. When any of `params` changed from outside, their values (each
    checked by the URL schema, None when absent) for the page to apply, marked as applied; else None. The page
    puts its state back with `write_url_state`, so its own writes never read as a pasted link."""
    if not any(url_changed(p) for p in params):
        return None
    values = {p: url_param(p) for p in params}
    for p, value in values.items():
        st.session_state[f"_url_seen_{p}"] = value
    return values


def url_state(param: str, session_key: str, valid=lambda value: True, default: Any = _NO_DEFAULT) -> bool:
    """`url_arrivals` for one parameter kept in `session_key`: a valid value arriving in the URL is applied once;
    with `default`, an address without the parameter (or with a value `valid` refuses) sets the default. True when
    this call applied a value from the URL."""
    arrived = url_arrivals(param)
    if arrived is None:
        return False
    value = arrived[param]
    if value is not None and valid(value):
        st.session_state[session_key] = value
        return True
    if default is not _NO_DEFAULT:
        st.session_state[session_key] = default
    return False


def write_url_state(param: str, value: Any) -> None:
    want = None if value is None else str(value)
    if st.query_params.get(param) != want:
        if want is None:
            st.query_params.pop(param, None)
        else:
            st.query_params[param] = want
    st.session_state[f"_url_seen_{param}"] = want
