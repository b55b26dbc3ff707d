"""Teacher outputs shared by the runs of one process (`runs make-reference`): thirty students of one frozen teacher
on one data set need its logits on the same examples thirty times. Off unless a caller opens
`shared_teacher_outputs()`; only classification and multiple-choice rows (raw logits, before any temperature)
and the teacher's step-0 evaluation are shared, keyed by everything that determines them."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_SHARED: dict[str, Any] | None = None


@contextlib.contextmanager
def shared_teacher_outputs() -> Iterator[None]:
    global _SHARED
    previous, _SHARED = _SHARED, {}
    try:
        yield
    finally:
        _SHARED = previous


def share_in_this_process() -> None:
    """Share for the rest of this process's life (a worker process of `runs make-reference --jobs N`)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = {}


def _weights_stamp(source: str) -> list:
    """A local teacher's files and their modification times: a retrained teacher is a new key."""
    folder = Path(source)
    if not folder.is_dir():
        return [source]
    return sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir() if p.is_file())


def teacher_key(cfg: Any, task: str) -> str | None:
    if _SHARED is None or task not in ("classification", "multiple_choice") or cfg.train_teacher:
        return None
    return json.dumps(
        [cfg.teacher.to_dict(), _weights_stamp(cfg.teacher.source), task, cfg.data, cfg.max_length],
        sort_keys=True,
        default=str,
    )


def shared_rows(key: str | None) -> dict | None:
    """The entries dict every run with this key fills and reads (None: not sharing)."""
    if key is None or _SHARED is None:
        return None
    return _SHARED.setdefault(f"rows:{key}", {})


def shared_eval(key: str | None, eval_ids: list[str], compute: Callable[[], tuple[dict, list]]) -> tuple[dict, list]:
    """The teacher's evaluation on these examples: computed once per key and example list."""
    if key is None or _SHARED is None:
        return compute()
    slot = f"eval:{key}:{json.dumps(eval_ids)}"
    if slot not in _SHARED:
        _SHARED[slot] = compute()
    return _SHARED[slot]


# Settings that shape only training, not the student before its first step nor how it is evaluated.
_TRAINING_ONLY = frozenset(
    {
        "name",
        "group",
        "preset",
        "losses",
        "steps",
        "epochs",
        "lr",
        "tau",
        "tau_squared",
        "eval_every",
        "teacher_topk",
        "teacher_cache",
        "balance_every",
        "save_checkpoint",
        "report_to",
        "warmup_steps",
        "schedule",
        "weight_decay",
        "optimizer",
        "max_grad_norm",
        "grad_accum",
        "labels",
        "train_size",
        "records_every_eval",
    }
)


def student_start_key(cfg: Any) -> str | None:
    """Runs whose students are the same model at step 0 and are evaluated the same way (the six priming
    strategies differ only in the teacher's prompt) share that first evaluation. Priming counts only as on or
    off here: it changes the student's prompt format, not with the strategy. Never for rationale runs (their eval
    texts may carry rationales) or a teacher being fine-tuned."""
    if _SHARED is None or cfg.rationales or cfg.train_teacher:
        return None
    settings = {k: v for k, v in cfg.to_dict().items() if k not in _TRAINING_ONLY}
    settings["priming"] = bool(cfg.priming)
    return "student:" + json.dumps([settings, _weights_stamp(cfg.teacher.source)], sort_keys=True, default=str)
