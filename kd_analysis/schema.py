"""Strict parsing of what crosses a trust boundary (run configs, model specs, stored records): one typed schema.

The configs stay plain dataclasses; `strict_schema` marks one (and, through its field types, everything nested in
it) for pydantic v2, and `parse` builds it from JSON-like data or says in one sentence which field is wrong. Why
pydantic: it validates the dataclasses we already have (no second model to keep in step), its strict JSON mode
is exactly the rule we need (a bool is only true or false, an int is never 1.5 or "1", a list may fill a tuple),
unknown keys are refused with `extra="forbid"`, and non-finite numbers with `allow_inf_nan=False`. Data is
validated in JSON mode: it is serialised first (NaN and infinity as JSON's extensions, so they are seen and
refused), which also means a Python object that JSON cannot express is refused rather than smuggled in.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic reads typing's TypedDict only from Python 3.12

from kd_analysis.exceptions import KDLensError

T = TypeVar("T")

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

# pydantic's error types, as the end of a sentence that starts with the field's name
_WORDS = {
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be text",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping of settings",
    "dataclass_type": "must be a mapping of settings",
    "model_type": "must be a mapping of settings",
    "missing": "is required",
    "missing_argument": "is required",
    "unexpected_keyword_argument": "is not a known setting",
    "missing_keyword_only_argument": "is required",
    "extra_forbidden": "is not a known setting",
    "none_required": "must be empty (null)",
}


def strict_schema(cls: type[T]) -> type[T]:
    """Class decorator: this dataclass is parsed strictly (STRICT) wherever it appears in a schema."""
    return with_config(STRICT)(cls)


@functools.cache
def _adapter(kind: Any) -> TypeAdapter:
    return TypeAdapter(kind)


def parse(kind: type[T], data: Any, what: str) -> T:
    """`data` (JSON-like: mappings, lists, text, numbers, true/false, null) as a `kind`, or a KDLensError whose one
    sentence names the first wrong field under `what` (e.g. 'config.teacher.trust_remote_code must be true or
    false (got 'false')')."""
    try:
        text = json.dumps(data, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise KDLensError(f"{what} holds something that is not plain data ({exc})") from None
    try:
        return _adapter(kind).validate_json(text)
    except ValidationError as exc:
        raise KDLensError(describe(exc, what)) from None


def describe(exc: ValidationError, what: str) -> str:
    """The first error as one sentence (and how many more there are)."""
    errors = exc.errors(include_url=False)
    fields: dict[str, Any] = {}
    for error in errors:  # a union reports one error per branch it tried: keep the first per field
        fields.setdefault(_where(error, what), error)
    where, first = next(iter(fields.items()))
    words = _WORDS.get(first["type"], first["msg"][:1].lower() + first["msg"][1:])
    got = "" if first["type"].startswith("missing") else f" (got {_short(first.get('input'))})"
    n = len(fields) - 1
    more = f"; {n} more field{'s' if n > 1 else ''} wrong after it" if n else ""
    return f"{where} {words}{got}{more}"


def _where(error: Any, what: str) -> str:
    return ".".join([what, *(str(p) for p in error["loc"] if not _is_union_branch(p))])


def _is_union_branch(part: Any) -> bool:
    """pydantic names the branch of a union it tried (e.g. 'list[str]', 'function-after[...]'): not a field."""
    return isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool", "none"))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


MAX_YAML_NODES = 100_000  # a run config has a few hundred; an alias bomb has billions once expanded


def load_yaml(text: str, what: str) -> Any:
    """The YAML as data, read with YAML 1.2's core schema (`_Yaml12Loader`), refusing a key named twice in one
    mapping, and a document whose aliases would expand it past MAX_YAML_NODES values (the "billion laughs": a few
    lines of anchors that any later walk over the data, e.g. a copy or JSON, would expand until memory runs out).
    The expanded size is counted on the composed node graph, once per node."""
    import yaml

    loader = _yaml12_loader()
    root = yaml.compose(text, Loader=loader)
    if root is not None and _expanded_size(root, {}, 0) > MAX_YAML_NODES:
        raise KDLensError(
            f"{what} expands to more than {MAX_YAML_NODES:,} values through its YAML aliases (&anchor / *alias); "
            "write the settings out"
        )
    return yaml.load(text, Loader=loader)


# YAML 1.2's core schema, in place of PyYAML's YAML 1.1 rules, which read `name: no` as false, `time: 1:30` as 90
# (base 60), `seed: 010` as 8 (octal), `date: 2026-01-01` as a date, and `lr: 1e-5` as a string. Under 1.2 these
# are the string "no", the string "1:30", 10, a string and 0.00001; true/false are the only booleans.
_CORE_TAGS = {
    "tag:yaml.org,2002:bool": r"true|True|TRUE|false|False|FALSE",
    "tag:yaml.org,2002:int": r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+",
    "tag:yaml.org,2002:float": (
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN"
    ),
    "tag:yaml.org,2002:null": r"~|null|Null|NULL|",
}


def dump_yaml(data: Any) -> str:
    """YAML that `load_yaml` reads back as `data`: `yaml.safe_dump` quotes a string only when YAML 1.1 would read
    it as something else, so a string that is a number or a bool only under 1.2 ("0o17", "1e5") is quoted too."""
    import re

    import yaml

    core = re.compile("|".join(f"(?:{p})" for p in _CORE_TAGS.values()))

    class _Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'" if core.fullmatch(value) else None)

    _Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


@functools.cache
def _yaml12_loader() -> type:
    import re

    import yaml

    class _Yaml12Loader(yaml.SafeLoader):
        pass

    # keep only the resolvers 1.2 shares with 1.1 (merge `<<`, `=`), then add the core schema's own
    dropped = set(_CORE_TAGS) | {"tag:yaml.org,2002:timestamp"}
    _Yaml12Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in dropped]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    for tag, pattern in _CORE_TAGS.items():
        firsts = list("-+0123456789.~ntfTFN") + [""]  # every first character a core scalar can start with
        _Yaml12Loader.add_implicit_resolver(tag, re.compile(f"^(?:{pattern})$"), firsts)

    def to_bool(loader: yaml.SafeLoader, node: yaml.Node) -> bool:
        return loader.construct_scalar(node).lower() == "true"

    def to_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
        text = loader.construct_scalar(node)
        if text.startswith(("0o", "0x")):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text, 10)  # "010" is ten, as in JSON and YAML 1.2

    def to_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
        text = loader.construct_scalar(node).lower()
        return float(text.replace(".inf", "inf").replace(".nan", "nan"))  # a NaN is refused later, by the schema

    _Yaml12Loader.add_constructor("tag:yaml.org,2002:bool", to_bool)
    _Yaml12Loader.add_constructor("tag:yaml.org,2002:int", to_int)
    _Yaml12Loader.add_constructor("tag:yaml.org,2002:float", to_float)
    return _Yaml12Loader


def _expanded_size(node: Any, seen: dict[int, int], depth: int) -> int:
    import yaml

    if id(node) in seen:
        return seen[id(node)]
    if depth > 200:
        raise KDLensError("the YAML is nested more than 200 levels deep")
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, seen, depth + 1) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.value != "<<"]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:  # PyYAML keeps the last silently: `steps: 2` then `steps: 3` would train 3
            raise KDLensError(f"the YAML names {repeated[0]!r} twice in one mapping (line {node.start_mark.line + 1})")
        size = 1 + sum(_expanded_size(k, seen, depth + 1) + _expanded_size(v, seen, depth + 1) for k, v in node.value)
    else:
        size = 1
    seen[id(node)] = min(size, MAX_YAML_NODES + 1)  # capped: the sums stay small however deep the bomb
    return seen[id(node)]


# --- stored records: read leniently, field by field ------------------------------------------------------------
# A run folder's status.json and metrics.jsonl rows are read by every page; one wrong field must not hide the run.
# They are checked against these schemas (strict types, finite numbers, bounded pids; other fields allowed), and
# a field that fails is dropped and reported rather than the record refused.

PID_MAX = 2**22  # Linux's PID_MAX_LIMIT: no process has a larger pid, and os.kill overflows past 2³¹ − 1
_Pid = Annotated[int, Field(gt=0, le=PID_MAX)]
# a time in seconds since 1970, before 2100: a heartbeat of 1e18 would keep a dead run "running" for ever
_Epoch = Annotated[float, Field(ge=0, le=4_102_444_800)]
_Count = Annotated[int, Field(ge=0, le=10**9)]


def _utc_time(text: str) -> str:
    from datetime import datetime

    when = datetime.fromisoformat(text)  # ValueError (a wrong field) for anything but an ISO 8601 time
    if when.tzinfo is None or not 1970 <= when.year < 2100:
        raise ValueError("not a time with its zone, between 1970 and 2100")
    return text


# an ISO 8601 time with its zone, as the store writes it: runs sort by `created`, and a "9999" would pin one on top
_Stamp = Annotated[str, StringConstraints(max_length=40), AfterValidator(_utc_time)]
# a job kind is a registry name ("train", "rationales"): short, lower case, never a path or markup
_JobKind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
_RECORD = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


@with_config(_RECORD)
class StatusRecord(TypedDict, total=False):
    state: str
    reason: str | None
    kind: _JobKind
    created: _Stamp
    updated: _Stamp
    heartbeat: _Epoch
    pid: _Pid
    pgid: _Pid
    reference: bool
    started: _Epoch
    token: str | None
    boot_id: str | None
    proc_start: str | None
    warnings: list
    data_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    phase: Annotated[str, StringConstraints(max_length=300)] | None
    phase_at: _Epoch


@with_config(_RECORD)
class MetricRow(TypedDict, total=False):
    step: _Count
    time: _Epoch
    total_steps: _Count


def check_fields(record: dict[str, Any], kind: Any) -> tuple[dict[str, Any], list[str]]:
    """`record` without the fields that fail `kind` (a StatusRecord or MetricRow schema), and what was dropped
    ("pid=2147483648"). Never raises for a field: the caller reports what was dropped."""
    try:
        _adapter(kind).validate_python(record)
        return record, []
    except ValidationError as exc:
        bad = sorted({str(e["loc"][0]) for e in exc.errors(include_url=False) if e["loc"]})
    return {k: v for k, v in record.items() if k not in bad}, [f"{k}={record[k]!r:.40}" for k in bad if k in record]


# --- URL parameters: what a shared link may carry --------------------------------------------------------------
# A link is typed by whoever sends it. Each parameter a page reads has a shape here; a value of another shape is
# dropped before any page sees it (pages then check membership: a run that exists, a teacher this session knows).
# text without control characters or the bidi controls that reorder what a page shows after them
_TEXT = Annotated[
    str, StringConstraints(min_length=1, max_length=1000, pattern=r"^[^\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]*$")
]
_WORD = Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,40}$")]
_RUN = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


@with_config(_RECORD)
class UrlParams(TypedDict, total=False):
    teacher: _TEXT
    data: _TEXT
    task: _WORD
    student: _WORD
    layers: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}$")]  # ASCII digits: '²' passes str.isdigit()
    view: _WORD
    cell: _WORD
    runs: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(,[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,49}$")
    ]
    run: _RUN
    against: _RUN
    watch: _RUN
    job: _RUN
    outputs_job: _RUN
    heads_job: _RUN
    a: _TEXT
    b: _TEXT
    example: _TEXT
    method: _WORD
    explain: _WORD
    k: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}$")]
    examples: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,4}$")]


def url_param(name: str, raw: str | None) -> str | None:
    """The value of URL parameter `name` if it has the shape UrlParams gives it, else None (as if absent)."""
    if raw is None:
        return None
    if name not in UrlParams.__annotations__:
        return None  # a parameter no page reads
    clean, _ = check_fields({name: raw}, UrlParams)
    return clean.get(name)
