"""Per-example records for runs trained before records existed, rebuilt from their saved checkpoint.

A finished training run that kept its checkpoint holds everything its final evaluation used: the config (data,
seed, split, prompts, rationale or priming settings) and the trained weights. `backfill_run` repeats that
evaluation as `train()` did it (the teacher at step 0, the saved model as the live model at the run's final step,
KL against the teacher's probabilities) and writes the run's `predictions.jsonl`, every line marked
`"backfilled": true`. The records are written only when they reproduce the run's own final metric exactly: records
that disagree with the run they claim to describe would mislead every analysis built on them.

A run shipped without its checkpoint can still be rebuilt with `retrain=True`: it is trained again from its own
config.json (same device, precision and seed) in a temporary folder, never in the run folder, and its records are
kept only when the retrained run reproduces every evaluation the original logged (every `eval_*` and `teacher_*`
value at every step, within TOLERANCE) and every per-step loss (within LOSS_TOLERANCE). The records are then the
retrained run's own (teacher at step 0, live model at the final step), each line also marked `"retrained": true`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from kd_analysis.exceptions import KDLensError
from kd_analysis.fileio import atomic_write_text, read_jsonl
from kd_analysis.logs import lines_to
from kd_analysis.runs import RunStore, layout
from kd_analysis.runs.records import PREDICTIONS, record_lines, with_text_tokens

TOLERANCE = 1e-9  # accuracies are counts over the same examples: anything above rounding is a different run
# Continuous metrics (answer NLL) fingerprint the weights far better than exact match on a few dozen questions;
# the same forward pass on the same weights agrees to ~1e-7, a different model by orders of magnitude more.
CONTINUOUS_TOLERANCE = 1e-4
# A retrained run repeats the same float32 arithmetic on the same batches, but reductions may round differently on
# another machine and the drift compounds over the steps: the shipped reference runs came back within 0-5e-6 (8 runs)
# or 1e-5-6e-5 (4 runs, all evaluations still exact). A different run (data, order, seed, code) is off by far more.
LOSS_TOLERANCE = 1e-4


class BackfillMismatch(KDLensError):
    """The rebuilt records do not reproduce the run's metric; `result` says by how much (nothing was written)."""

    def __init__(self, message: str, result: BackfillResult):
        super().__init__(message)
        self.result = result


@dataclass
class BackfillResult:
    run_id: str
    path: str  # the predictions file (written only when `written`)
    role: str  # the live model's role: student, or teacher for a train_teacher run
    step: int  # the run's final step, where its live-model records sit
    examples: int  # live-model records (the held-out examples)
    teacher_examples: int  # teacher records at step 0 (0 for a train_teacher run)
    metric: str  # accuracy | exact_match
    run_value: float  # the run's own final eval_<metric> from metrics.jsonl
    records_value: float  # the same metric computed from the backfilled records
    difference: float
    teacher_run_value: float | None = None  # teacher_<metric> at step 0, when the run logged it
    teacher_records_value: float | None = None
    # every other metric the run logged for these evaluations (e.g. eval_answer_nll): {name: [run, rebuilt]}
    other_metrics: dict[str, list[float]] = field(default_factory=dict)
    matches: bool = False
    written: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    # retrain=True only: the run was trained again because it had no checkpoint
    retrained: bool = False
    eval_values_compared: int = 0  # eval_*/teacher_* values of the run's metrics.jsonl checked against the retrain
    max_eval_difference: float | None = None  # the largest of those differences
    max_eval_difference_at: str | None = None  # "name@step" where it is
    losses_compared: int = 0
    max_loss_difference: float | None = None  # the largest per-step |loss| difference
    max_loss_difference_at: int | None = None  # its step

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def backfill_run(
    store: RunStore,
    run_id: str,
    *,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    retrain: bool = False,
) -> BackfillResult:
    """Rebuild and write `predictions.jsonl` for a finished training run that saved its checkpoint.

    Refuses (KDLensError, one line) when the run is not a finished training run, has no checkpoint (unless
    `retrain`, which trains it again from its config in a temporary folder), or already has records (unless
    `force`, which replaces the file atomically), and when the rebuilt records do not reproduce the run's final
    metric, or the retrained run any metric or loss the run logged (BackfillMismatch, carrying the result)."""
    say = progress or (lambda m: None)
    started = time.monotonic()
    run = store.get(run_id)
    cfg, metric, final, teacher_row = check_run(run, force, need_checkpoint=not retrain)
    if not (run.path / layout.CHECKPOINT).is_dir():
        return _retrain(run, cfg, metric, final, teacher_row, say, started)
    rebuilt = _rebuild(run, cfg, int(final["step"]), say)
    result = _checked_result(run_id, run.path / PREDICTIONS, rebuilt, metric, final, teacher_row)
    result.seconds = time.monotonic() - started
    if not result.matches:
        raise BackfillMismatch(f"run {run_id} is not reproduced: {_why(result)}; nothing was written", result)
    atomic_write_text(run.path / PREDICTIONS, "".join(rebuilt.lines))
    result.written = True
    result.seconds = time.monotonic() - started
    say(f"wrote {len(rebuilt.teacher_records) + len(rebuilt.live_records)} records to {result.path}")
    return result


@dataclass
class _Rebuilt:
    """A run's final evaluation repeated: the records' lines, the records and what `evaluate` reported."""

    role: str
    step: int
    lines: list[str]
    teacher_records: list
    live_records: list
    teacher_eval: dict[str, Any]
    live_eval: dict[str, Any]
    notes: list[str]


def _rebuild(run, cfg, step: int, say: Callable[[str], None]) -> _Rebuilt:
    """The teacher at step 0 and the saved model at `step` evaluated as train() evaluated them: the same device,
    precision, seed, split, prompts and eval views."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from kd_analysis.data.sources import load_dataset
    from kd_analysis.training.evaluate import evaluate
    from kd_analysis.training.run_data import check_task, split_examples, text_tokens
    from kd_analysis.training.run_prompts import student_prompt_fn, teacher_prompt
    from kd_analysis.training.setup import device_and_precision

    cpu, mixed = device_and_precision(cfg)
    acc = Accelerator(cpu=cpu, mixed_precision=mixed)
    set_seed(cfg.seed)
    teacher, live = evaluated_models(cfg, run.path / layout.CHECKPOINT, str(acc.device), say)
    train_set, eval_set = split_examples(load_dataset(cfg.data).examples, cfg)
    check_task((teacher or live).task, train_set + eval_set, cfg.data)
    held_out = next((m.get("held_out") for m in run.metrics() if m.get("step") == 0 and "held_out" in m), None)
    if held_out is not None and held_out != len(eval_set):
        raise KDLensError(
            f"run {run.path.name} held out {held_out} examples but {cfg.data} now gives {len(eval_set)}: the "
            "data changed since the run, so its records cannot be rebuilt"
        )
    teacher_eval_set = list(eval_set)  # the teacher always sees the untouched examples
    eval_set = eval_views(cfg, teacher, eval_set, run.path, say)
    lengths = text_tokens(live.tokenizer, eval_set)
    notes = []
    if cfg.records_every_eval:
        notes.append("the run kept records at every evaluation; only its final evaluation can be rebuilt")

    lines, teacher_probs, t_records, t_eval = [], None, [], {}
    common = {"run_id": run.path.name, "data": cfg.data, "backfilled": True}
    if teacher is not None:
        say(f"evaluating the teacher on {len(teacher_eval_set)} examples")
        t_eval = evaluate(teacher, teacher_eval_set, cfg, prompt=teacher_prompt(cfg, teacher), records=t_records)
        teacher_probs = {r.example_id: r.probs for r in t_records if r.probs is not None}
        lines.append(record_lines(with_text_tokens(t_records, lengths), **common, role="teacher", step=0))
    role = "teacher" if cfg.train_teacher else "student"
    say(f"evaluating the saved {role} on {len(eval_set)} examples")
    s_records: list = []
    s_eval = evaluate(
        replace(live, model=acc.prepare(live.model)),
        eval_set,
        cfg,
        unwrap=acc.unwrap_model,
        prompt=student_prompt_fn(cfg, live),
        records=s_records,
        teacher_probs=teacher_probs,
        teacher_lm=(
            (teacher, teacher_prompt(cfg, teacher)) if teacher is not None and teacher.task == "causal_lm" else None
        ),
    )
    lines.append(record_lines(with_text_tokens(s_records, lengths), **common, role=role, step=step))
    return _Rebuilt(role, step, lines, t_records, s_records, t_eval, s_eval, notes)


def _checked_result(
    run_id: str, path: Path, rebuilt: _Rebuilt, metric: str, final: dict, teacher_row
) -> BackfillResult:
    """The rebuilt records' metrics beside the run's own: the result, with `matches` set."""
    value = _share_correct(rebuilt.live_records)
    t_value = _share_correct(rebuilt.teacher_records) if rebuilt.teacher_records else None
    t_run = teacher_row.get(f"teacher_{metric}") if teacher_row else None
    result = BackfillResult(
        run_id=run_id,
        path=str(path),
        role=rebuilt.role,
        step=rebuilt.step,
        examples=len(rebuilt.live_records),
        teacher_examples=len(rebuilt.teacher_records),
        metric=metric,
        run_value=float(final[f"eval_{metric}"]),
        records_value=value,
        difference=abs(value - float(final[f"eval_{metric}"])),
        teacher_run_value=t_run,
        teacher_records_value=t_value,
        notes=rebuilt.notes,
        other_metrics=_others(final, "eval_", rebuilt.live_eval, metric)
        | _others(teacher_row or {}, "teacher_", rebuilt.teacher_eval, metric),
    )
    result.matches = (
        result.difference <= TOLERANCE
        and not _off(result)
        and (t_run is None or t_value is None or abs(t_value - t_run) <= TOLERANCE)
    )
    return result


def _off(result: BackfillResult) -> dict[str, float]:
    """Other metrics the rebuild moved by more than CONTINUOUS_TOLERANCE: name → difference."""
    return {k: abs(a - b) for k, (a, b) in result.other_metrics.items() if abs(a - b) > CONTINUOUS_TOLERANCE}


def _why(result: BackfillResult) -> str:
    """Why the rebuilt records do not reproduce the run, in one clause."""
    metric, off = result.metric, _off(result)
    if result.difference > TOLERANCE:
        return (
            f"{metric} {result.records_value:.6f} from the rebuilt records, {result.run_value:.6f} in the run's "
            f"final eval_{metric} (off by {result.difference:.3g})"
        )
    if off:
        name = max(off, key=lambda k: off[k])
        run_v, new_v = result.other_metrics[name]
        return f"{name} {new_v:.6f} rebuilt, {run_v:.6f} in the run's metrics (off by {off[name]:.3g})"
    t_value, t_run = result.teacher_records_value, result.teacher_run_value
    assert t_value is not None and t_run is not None
    return (
        f"teacher {metric} {t_value:.6f} from the rebuilt records, {t_run:.6f} in the run's metrics "
        f"(off by {abs(t_value - t_run):.3g})"
    )


def check_run(run, force: bool, need_checkpoint: bool = True):
    """The run's config, metric name, final eval row and step-0 row; refuses what cannot be backfilled."""
    from kd_analysis.training.config import TrainConfig

    damaged = [p for p in run.problems() if not p.startswith("metrics")]
    if damaged:
        raise KDLensError(f"run {run.run_id} is damaged ({damaged[0]}), so its records cannot be rebuilt")
    config, status = run.config(), run.status()
    kind = config.get("kind", status.get("kind"))
    if kind != "train":
        raise KDLensError(f"run {run.run_id} is a {kind} run, not a training run: only training runs have records")
    if status.get("state") != "finished":
        raise KDLensError(
            f"run {run.run_id} is {status.get('state', 'in an unknown state')}, not finished: only a "
            "finished run's final evaluation can be rebuilt"
        )
    if need_checkpoint and not (run.path / layout.CHECKPOINT).is_dir():
        raise KDLensError(
            f"run {run.run_id} has no saved checkpoint (save_checkpoint was off or its weights were "
            "removed), so its records cannot be rebuilt; retrain it (--retrain) to rebuild them"
        )
    if (run.path / PREDICTIONS).exists() and not force:
        raise KDLensError(f"run {run.run_id} already has {PREDICTIONS}; rebuild it with force (--force) to replace it")
    cfg = TrainConfig.from_dict(config)
    metrics = run.metrics()
    for metric in ("accuracy", "exact_match"):
        finals = [m for m in metrics if isinstance(m.get(f"eval_{metric}"), (int, float)) and m["step"] > 0]
        if finals:
            final = sorted(finals, key=lambda m: m["step"])[-1]
            first = next((m for m in metrics if m["step"] == 0 and f"teacher_{metric}" in m), None)
            return cfg, metric, final, first
    raise KDLensError(
        f"run {run.run_id} logged no final eval_accuracy or eval_exact_match, so rebuilt records "
        "could not be checked against it"
    )


def _retrain(
    run, cfg, metric: str, final: dict, teacher_row: dict | None, say: Callable[[str], None], started: float
) -> BackfillResult:
    """Train the run again from its config in a temporary folder; keep its records only if it is the same run."""
    result, t_records, s_records = _retrain_checked(run, cfg, metric, final, teacher_row, say, started)
    lines = "".join(
        json.dumps({**r, "backfilled": True, "retrained": True}, allow_nan=False) + "\n" for r in t_records + s_records
    )
    atomic_write_text(run.path / PREDICTIONS, lines)
    result.written = True
    result.seconds = time.monotonic() - started
    say(f"wrote {len(t_records) + len(s_records)} retrained records to {result.path}")
    return result


def rebuild_checkpoint(
    store: RunStore,
    run_id: str,
    *,
    progress: Callable[[str], None] | None = None,
    on_metrics: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> BackfillResult:
    """Give a finished run that kept no weights its checkpoint back, so that analyses needing the weights (one
    example's attributions) can run: it is retrained from its config in a temporary folder and the weights are
    moved into the run folder only when the retrained run reproduces every evaluation and loss the run logged.
    Its records and metrics are left untouched. Cancelled (`should_stop`) or mismatched: nothing is kept."""
    say = progress or (lambda m: None)
    started = time.monotonic()
    run = store.get(run_id)
    if (run.path / layout.CHECKPOINT).is_dir():
        raise KDLensError(f"run {run_id} already has its checkpoint; nothing to rebuild")
    cfg, metric, final, teacher_row = check_run(run, force=True, need_checkpoint=False)
    result, _, _ = _retrain_checked(
        run,
        cfg,
        metric,
        final,
        teacher_row,
        say,
        started,
        keep_checkpoint=True,
        on_metrics=on_metrics,
        should_stop=should_stop,
    )
    result.notes.append(f"weights kept in {run.path / 'checkpoint'}; records and metrics untouched")
    result.seconds = time.monotonic() - started
    return result


def _retrain_checked(
    run,
    cfg,
    metric: str,
    final: dict,
    teacher_row: dict | None,
    say: Callable[[str], None],
    started: float,
    *,
    keep_checkpoint: bool = False,
    on_metrics: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[BackfillResult, list, list]:
    """Retrain in a temporary folder and check it against everything the run logged: (result, teacher records,
    live-model records). `keep_checkpoint` moves the retrained weights into the run folder once they pass."""
    from kd_analysis.training import rationale_tasks
    from kd_analysis.training.loop import train

    step = int(final["step"])
    role = "teacher" if cfg.train_teacher else "student"
    again = replace(cfg, save_checkpoint=keep_checkpoint, report_to=[])
    if cfg.rationales and cfg.rationales.source_run:  # resolved next to the run, as train() resolved it there
        again = replace(
            again,
            rationales=replace(
                cfg.rationales,
                source_run=str(rationale_tasks._resolve_run(cfg.rationales.source_run, run.path).resolve()),
            ),
        )
    notes = [
        f"retrained from config.json (no checkpoint): {cfg.device} device, {cfg.precision} precision, seed {cfg.seed}"
    ]
    if cfg.records_every_eval:
        notes.append(
            "the run kept records at every evaluation; only the teacher's and the final evaluation's are written"
        )
    rows: list[dict] = []

    def keep_row(m: dict) -> None:
        rows.append(dict(m))
        if on_metrics:
            on_metrics(dict(m))

    with tempfile.TemporaryDirectory(prefix="kd-retrain-") as tmp:
        out = Path(tmp) / run.path.name  # the records' run_id is the folder's name, as in the run itself
        out.mkdir()
        if (run.path / rationale_tasks.CACHE_FILE).exists():  # the rationales the run trained with, read from a copy
            shutil.copyfile(run.path / rationale_tasks.CACHE_FILE, out / rationale_tasks.CACHE_FILE)
        say(f"retraining {run.run_id} from its config in {out}")
        with lines_to(say):
            trained = train(again, out_dir=out, on_metrics=keep_row, should_stop=should_stop)
        records = read_jsonl(out / PREDICTIONS) if (out / PREDICTIONS).exists() else []
        if trained.state != "finished":
            raise KDLensError(f"retraining {run.run_id} ended {trained.state}, so nothing was kept")
        result, t_records, s_records = _check_retrained(
            run, cfg, metric, final, teacher_row, rows, records, step, role, notes, started
        )
        if keep_checkpoint:
            _move_into(out / layout.CHECKPOINT, run.path / layout.CHECKPOINT)
    return result, t_records, s_records


def _move_into(source: Path, target: Path) -> None:
    """Copy a folder next to its target, then rename: a reader never sees a half-written checkpoint."""
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    os.replace(staging, target)


def _check_retrained(
    run,
    cfg,
    metric: str,
    final: dict,
    teacher_row: dict | None,
    rows: list[dict],
    records: list[dict],
    step: int,
    role: str,
    notes: list[str],
    started: float,
) -> tuple[BackfillResult, list, list]:
    logged = run.metrics()
    eval_diffs, loss_diffs = _compare(logged, rows)
    t_records = [r for r in records if r["role"] == "teacher" and r["step"] == 0] if not cfg.train_teacher else []
    s_records = [r for r in records if r["role"] == role and r["step"] == step]
    value = _share_correct_rows(s_records)
    t_value = _share_correct_rows(t_records) if t_records else None
    t_run = teacher_row.get(f"teacher_{metric}") if teacher_row else None
    run_value = float(final[f"eval_{metric}"])
    result = BackfillResult(
        run_id=run.run_id,
        path=str(run.path / PREDICTIONS),
        role=role,
        step=step,
        examples=len(s_records),
        teacher_examples=len(t_records),
        metric=metric,
        run_value=run_value,
        records_value=value,
        difference=abs(value - run_value),
        teacher_run_value=t_run,
        teacher_records_value=t_value,
        notes=notes,
        retrained=True,
        eval_values_compared=len(eval_diffs),
        losses_compared=len(loss_diffs),
    )
    if eval_diffs:
        at = max(eval_diffs, key=eval_diffs.get)
        result.max_eval_difference, result.max_eval_difference_at = eval_diffs[at], f"{at[0]}@{at[1]}"
    if loss_diffs:
        at_step = max(loss_diffs, key=loss_diffs.get)
        result.max_loss_difference, result.max_loss_difference_at = loss_diffs[at_step], at_step
    why = None
    if not s_records:
        why = f"the retrained run wrote no {role} records at step {step}"
    elif not eval_diffs:
        why = "the run logged no eval_* or teacher_* values to check the retrained run against"
    elif result.max_eval_difference > TOLERANCE:
        name, at_step = max(eval_diffs, key=eval_diffs.get)
        why = (
            f"{name} at step {at_step} is off by {result.max_eval_difference:.3g} "
            f"({_value(rows, name, at_step)} retrained, {_value(logged, name, at_step)} in the run's metrics)"
        )
    elif loss_diffs and result.max_loss_difference > LOSS_TOLERANCE:
        why = (
            f"the loss at step {result.max_loss_difference_at} is off by {result.max_loss_difference:.3g} "
            f"({_value(rows, 'loss', result.max_loss_difference_at)} retrained, "
            f"{_value(logged, 'loss', result.max_loss_difference_at)} in the run's metrics)"
        )
    elif result.difference > TOLERANCE:
        why = (
            f"{metric} {value:.6f} from the retrained records, {run_value:.6f} in the run's final eval_{metric} "
            f"(off by {result.difference:.3g})"
        )
    elif t_run is not None and t_value is not None and abs(t_value - t_run) > TOLERANCE:
        why = (
            f"teacher {metric} {t_value:.6f} from the retrained records, {t_run:.6f} in the run's metrics (off by "
            f"{abs(t_value - t_run):.3g})"
        )
    result.matches = why is None
    result.seconds = time.monotonic() - started
    if why is not None:
        raise BackfillMismatch(f"run {run.run_id} is not reproduced by retraining: {why}; nothing was written", result)
    return result, t_records, s_records


def _by_step(rows: list[dict]) -> dict[int, dict]:
    """metrics rows merged per step (step 0 has the teacher's row and the live model's first evaluation)."""
    merged: dict[int, dict] = {}
    for row in rows:
        if isinstance(row.get("step"), int):
            merged.setdefault(row["step"], {}).update(row)
    return merged


def _compare(logged: list[dict], retrained: list[dict]) -> tuple[dict[tuple[str, int], float], dict[int, float]]:
    """|logged - retrained| for every eval_*/teacher_* value the run logged ({(name, step): diff}) and every
    per-step loss ({step: diff}); a value the retrained run did not log counts as infinitely far off."""
    new = _by_step(retrained)
    evals, losses = {}, {}
    for at, row in _by_step(logged).items():
        for name, v in row.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if name.startswith(("eval_", "teacher_")) or name == "loss":
                w = new.get(at, {}).get(name)
                d = abs(float(v) - float(w)) if isinstance(w, (int, float)) else math.inf
                if name == "loss":
                    losses[at] = d
                else:
                    evals[(name, at)] = d
    return evals, losses


def _value(rows: list[dict], name: str, at: int):
    return _by_step(rows).get(at, {}).get(name, "nothing")


def _share_correct_rows(rows: list[dict]) -> float:
    return sum(bool(r["correct"]) for r in rows) / len(rows) if rows else 0.0


def evaluated_models(cfg, folder: Path, device: str, say: Callable[[str], None]):
    """(teacher or None, live model) as train() had them at its final evaluation: the teacher loaded as train()
    loads it; a LoRA adapter applied, unmerged, to the same base train() wrapped (so the forward pass is the
    one it evaluated); a full checkpoint loaded in float32, the precision train() kept the student in."""
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec
    from kd_analysis.models.students import derive_student
    from kd_analysis.training.setup import teacher_spec

    adapter = (folder / "adapter_config.json").exists()
    teacher = None
    if not cfg.train_teacher or adapter:
        tspec = teacher_spec(cfg, device)  # loaded as train() loads it
        say(f"loading teacher {tspec.source} on {device}")
        teacher = load_model(tspec)
    if adapter:
        from peft import PeftModel

        if cfg.train_teacher:
            base = teacher
        else:
            base = derive_student(teacher, cfg.student)
            base.model.float()
        say(f"applying the LoRA adapter from {folder}")
        live = replace(base, model=PeftModel.from_pretrained(base.model, str(folder)))
    else:
        task = teacher.task if teacher is not None else (cfg.task or cfg.teacher.task)
        say(f"loading the checkpoint {folder}")
        live = load_model(ModelSpec(str(folder), task=task, device=device, dtype="float32"))
    live.model.eval()
    return (None if cfg.train_teacher else teacher), live


def eval_views(cfg, teacher, eval_set: list, run_dir: Path, say: Callable[[str], None]) -> list:
    """The eval set as the live model read it: rationale runs tag it or append the teacher's words (from the
    run's own rationale cache, read from a copy so that the run folder is never written)."""
    if not cfg.rationales:
        return eval_set
    from kd_analysis.training import rationale_tasks

    settings, words = cfg.rationales, {}
    if settings.mode == "append":
        if teacher is None:
            raise KDLensError("appended rationales need the teacher, and a train_teacher run has none")
        if settings.source_run:  # resolved as train() resolved it, next to the run, before the cache moves
            settings = replace(settings, source_run=str(rationale_tasks._resolve_run(settings.source_run, run_dir)))
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / rationale_tasks.CACHE_FILE
            if (run_dir / rationale_tasks.CACHE_FILE).exists():
                shutil.copyfile(run_dir / rationale_tasks.CACHE_FILE, cache)
            with lines_to(say):
                words = rationale_tasks.teacher_rationales(teacher, eval_set, settings, target="predicted", cache=cache)
    return [rationale_tasks.label_view(ex, settings, words.get(ex.id)) for ex in eval_set]


def _others(row: dict, prefix: str, rebuilt: dict, metric: str) -> dict[str, list[float]]:
    """[logged, rebuilt] for each numeric metric besides `metric` that both the run's row and the rebuild have."""
    return {
        prefix + k: [float(row[prefix + k]), float(v)]
        for k, v in rebuilt.items()
        if k != metric and isinstance(v, (int, float)) and isinstance(row.get(prefix + k), (int, float))
    }


def _share_correct(records: list) -> float:
    return sum(bool(r.correct) for r in records) / len(records) if records else 0.0
