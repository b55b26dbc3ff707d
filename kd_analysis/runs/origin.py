"""Where a run came from, and what a run trained elsewhere does not have, in words for the pages and commands.

kd-lens trains most runs itself; others are written by a transformers Trainer with `KDLensCallback`, by a custom
loop through `kd_analysis.track`, or imported from a Trainer folder (`runs import`). Their config says so under
`origin`, and holds only what was known: the pages say what is missing instead of failing on it."""

from __future__ import annotations

from typing import Any

from kd_analysis.runs import Run, layout

ORIGINS = {
    "callback": "trained by a transformers Trainer with KDLensCallback",
    "track": "logged by a custom training loop (kd_analysis.track)",
    "import": "imported from a Trainer output folder",
}


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def origin_kind(config: dict[str, Any]) -> str | None:
    """ "callback", "track" or "import" for a run trained elsewhere; None for one kd-lens trained."""
    origin = config.get("origin")
    kind = origin.get("kind") if isinstance(origin, dict) else None
    return kind if kind in ORIGINS else None


def origin_words(config: dict[str, Any]) -> str:
    kind = origin_kind(config)
    return ORIGINS[kind] if kind else "trained by kd-lens"


def objective_words(config: dict[str, Any]) -> str:
    """A run trained elsewhere: its trainer's own objective, with the distillation settings it recorded."""
    settings = _mapping(config.get("distillation"))
    shown = ", ".join(f"{k} {v}" for k, v in sorted(settings.items()) if v is not None)
    return "its trainer's own" + (f" ({shown})" if shown else "")


def outside_student(run: Run) -> str | None:
    """The saved weights of a run trained elsewhere that stand for its trained student: the last checkpoint the
    Trainer saved (callback) or the checkpoint an import evaluated; None when there are none."""
    config = run.config()
    kind = origin_kind(config)
    if kind is None:
        return None
    if kind == "import":
        source = _mapping(_mapping(config.get("student")).get("model")).get("source")
    else:
        source = run.status().get("checkpoint")
    return source if isinstance(source, str) and source else None


def missing_words(run: Run) -> list[str]:
    """What a run trained elsewhere lacks for the pages that read it (empty for kd-lens's own runs)."""
    from kd_analysis.fileio import read_jsonl

    config = run.config()
    if origin_kind(config) is None:
        return []
    out = []
    path = run.path / layout.PREDICTIONS
    roles = {r.get("role") for r in read_jsonl(path)} if path.is_file() else set()
    if not roles:
        out.append(
            "no per-example records, so Error analysis cannot open it: give the callback eval_examples, call "
            "run.evaluate (track), or import with --evaluate"
        )
    elif "teacher" not in roles:
        out.append(
            "no teacher records: Error analysis shows its student only beside another run's; give a teacher to "
            "the callback, to run.evaluate or to runs import --teacher"
        )
    if outside_student(run) is None:
        out.append(
            "no saved student: explanations need its trained weights (let the Trainer save checkpoints, or import "
            "its folder)"
        )
    out.append("no loss terms: its loss is the trainer's own, logged as one number")
    return out
