"""The job kinds a run folder can hold, in one registry at the run store's layer: the store, the schema's checks,
the worker, the pages and the CLI all name a kind through it.

Each kind names its code as "module:function" and the worker imports it on use: the code sits in the methods
and analyses above the store (a decorator there could only fill this registry once something imported it), and
a training worker never loads the attribution or attention code. Adding a kind is one function and one line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobKind:
    name: str
    title: str
    entry: str  # "module:function"; a background job's function takes (run, stop, store)
    exclusive: bool = False  # it times things, so a plan runs it with nothing beside it


JOB_KINDS: dict[str, JobKind] = {}


def register_kind(name: str, title: str, entry: str, *, exclusive: bool = False) -> str:
    JOB_KINDS[name] = JobKind(name, title, entry, exclusive)
    return name


TRAIN = register_kind("train", "distillation run", "kd_analysis.training.worker:run_worker")
RATIONALES = register_kind("rationales", "saliency rationales", "kd_analysis.attribution.job:rationale_job")
ATTENTION = register_kind("attention", "attention-head statistics", "kd_analysis.attention.job:attention_job")
TEACHER_OUTPUTS = register_kind("teacher_outputs", "primed teacher outputs", "kd_analysis.priming.job:outputs_job")
EXPLANATIONS = register_kind("explanations", "one example explained", "kd_analysis.error_analysis.explain:explain_job")
INSIDE = register_kind("inside", "inside the pair", "kd_analysis.inside.job:inside_job")
SIZE_SPEED = register_kind(
    "size_speed", "size and speed", "kd_analysis.evidence.size_speed:size_speed_job", exclusive=True
)


def exclusive_kinds() -> frozenset[str]:
    return frozenset(k for k, spec in JOB_KINDS.items() if spec.exclusive)
