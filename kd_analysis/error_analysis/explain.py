"""Why one example went wrong: both models' attributions over its input and, for generation, the log-probability
of each gold-answer token under each model (where the student falls off the teacher's path).

Computed on demand from the run's own weights, exactly as its final evaluation ran them (`evaluated_models`), and
cached in the run folder (`explanations.jsonl`, one line per example, method and target), so the page, the CLI and
the HTML report reuse them. A run that kept no weights can get them back with `rebuild=True` (retrained from its
config and kept only when it reproduces every logged evaluation; see `backfill.rebuild_checkpoint`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kd_analysis.exceptions import KDLensError
from kd_analysis.fileio import append_jsonl, read_jsonl
from kd_analysis.runs import Run, RunStore, layout
from kd_analysis.runs.origin import missing_words, origin_kind, outside_student

EXPLANATIONS = "explanations.jsonl"
DEFAULT_METHOD = "input_x_gradient"  # one backward pass per model: seconds on CPU, exact for linear models
TARGETS = {"predicted": "its own answer", "gold": "the gold answer"}


class NoWeights(KDLensError):
    """The run kept no checkpoint: its weights must be rebuilt before anything can be computed from them."""


@dataclass
class Explanation:
    run_id: str
    example_id: str
    method: str
    target: str  # predicted | gold: the answer each model's attributions explain
    attributions: dict[str, dict] = field(default_factory=dict)  # role -> Attribution.to_dict()
    # generation: role -> [[token, log p], ...] along the gold answer, teacher-forced after the prompt the run used
    token_logprobs: dict[str, list[list]] = field(default_factory=dict)
    reads: dict[str, str] = field(default_factory=dict)  # role -> what that model read (the run's prompt or view)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Explanation:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})

    def token_gaps(self, first: str = "teacher", second: str = "student") -> list[dict[str, Any]] | None:
        """Per gold-answer token: both log-probabilities and first − second, over the tokens both scored (a longer
        prompt, e.g. a priming one, can leave fewer answer tokens under the run's max_length). None when either is
        missing or the two scored different tokens (different tokenizers cannot be compared token by token)."""
        a, b = self.token_logprobs.get(first), self.token_logprobs.get(second)
        if not a or not b:
            return None
        k = min(len(a), len(b))
        if [t for t, _ in a[:k]] != [t for t, _ in b[:k]]:
            return None
        return [
            {"position": i, "token": ta, first: la, second: lb, "gap": la - lb}
            for i, ((ta, la), (_, lb)) in enumerate(zip(a[:k], b[:k]))
        ]

    def tokens_cut(self, first: str = "teacher", second: str = "student") -> dict[str, int]:
        """How many answer tokens each model scored, when they differ (the rest fell past max_length)."""
        counts = {r: len(self.token_logprobs.get(r) or []) for r in (first, second)}
        return counts if len(set(counts.values())) > 1 else {}


@dataclass
class RunModels:
    """A finished run's teacher and live model, and every example as each of them read it."""

    run_id: str
    cfg: Any  # TrainConfig
    models: dict[str, Any]  # role -> LoadedModel
    views: dict[str, dict[str, Any]]  # role -> example id -> Example (rationale runs give the student its own view)
    prompts: dict[str, Callable | None]  # role -> the prompt function the run evaluated with (None: standard)
    reads: dict[str, str]
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> example id -> recorded prediction


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class OutsideSettings:
    """What an explanation reads from a run's config, for a run trained elsewhere (no kd-lens TrainConfig)."""

    max_length: int = 256
    priming: Any = None


def _outside_run_models(run: Run, device: str, say: Callable[[str], None]) -> RunModels:
    """A run trained elsewhere: its saved student (the Trainer's last checkpoint, or the one an import
    evaluated), the teacher by the name its config gives, the examples of its records as kd-lens prompts them."""
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec

    cfg = run.config()
    source = outside_student(run)
    if source is None or not Path(source).exists():
        raise NoWeights(f"run {run.run_id}: " + "; ".join(w for w in missing_words(run) if "saved student" in w))
    task = cfg.get("task") if isinstance(cfg.get("task"), str) else None
    say(f"loading the student from {source}")
    models = {"student": load_model(ModelSpec(source, task=task, device=device))}
    teacher = cfg.get("teacher") if isinstance(cfg.get("teacher"), dict) else {}
    reads = {"student": "the example as is"}
    if isinstance(teacher.get("source"), str) and teacher["source"]:
        say(f"loading the teacher from {teacher['source']}")
        models["teacher"] = load_model(ModelSpec(teacher["source"], task=task, device=device))
        reads["teacher"] = "the example as is" + (
            " (loaded by the name the training gave; weights changed in memory are not seen)"
            if teacher.get("in_memory")
            else ""
        )
    ids = {str(r.get("example_id")) for r in read_jsonl(run.path / layout.PREDICTIONS)}
    found = {ex.id: ex for ex in load_dataset(cfg["data"]).examples if ex.id in ids} if cfg.get("data") else {}
    if not found:
        raise KDLensError(f"run {run.run_id}: the examples of its records cannot be read from {cfg.get('data')!r}")
    return RunModels(
        run_id=run.run_id,
        cfg=OutsideSettings(max_length=int(cfg.get("max_length") or 256)),
        models=models,
        views=dict.fromkeys(models, found),
        prompts=dict.fromkeys(models),
        reads=reads,
        answers=_recorded_answers(run),
    )


def load_run_models(
    store: RunStore, run_id: str, *, device: str = "cpu", progress: Callable[[str], None] | None = None
) -> RunModels:
    """Load a finished training run's models as its final evaluation had them (NoWeights without a checkpoint)."""
    from kd_analysis.data.example import CLASS_NAMES, class_names
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.error_analysis.backfill import check_run, eval_views, evaluated_models
    from kd_analysis.training.run_data import split_examples
    from kd_analysis.training.run_prompts import student_prompt_fn, teacher_prompt

    say = progress or (lambda m: None)
    run = store.get(run_id)
    if origin_kind(run.config()) is not None:
        return _outside_run_models(run, device, say)
    cfg, *_ = check_run(run, force=True, need_checkpoint=False)
    folder = run.path / layout.CHECKPOINT
    if not folder.is_dir():
        raise NoWeights(
            f"run {run_id} kept no weights (save_checkpoint was off), so nothing can be computed from "
            f"them; rebuild them first: `python -m kd_analysis errors explain {run_id} EXAMPLE_ID "
            "--rebuild` retrains the run from its config and keeps the weights only if it reproduces "
            "every evaluation the run logged"
        )
    teacher, live = evaluated_models(cfg, folder, device, say)
    data = load_dataset(cfg.data).examples
    _, eval_set = split_examples(data, cfg)
    named = class_names((e.label, e.answer) for e in data if not e.choices)
    if named:  # every class by the data's name, the predicted one too (not only the example's gold)
        eval_set = [replace(e, meta={**e.meta, CLASS_NAMES: named}) for e in eval_set]
    models, views, prompts, reads = {}, {}, {}, {}
    if teacher is not None:
        models["teacher"], views["teacher"] = teacher, {ex.id: ex for ex in eval_set}
        prompts["teacher"] = teacher_prompt(cfg, teacher)
        reads["teacher"] = f"the {cfg.priming.strategy} priming prompt" if cfg.priming else "the example as is"
    role = "teacher" if cfg.train_teacher else "student"
    models[role] = live
    views[role] = {ex.id: ex for ex in eval_views(cfg, teacher, eval_set, run.path, say)}
    prompts[role] = student_prompt_fn(cfg, live)
    reads[role] = (
        {
            "tag": "the example with its rationale tags",
            "append": "the example with the teacher's rationale words appended",
        }.get(cfg.rationales.mode, "the example as is")
        if cfg.rationales
        else "the student prompt"
        if cfg.priming
        else "the example as is"
    )
    return RunModels(
        run_id=run_id, cfg=cfg, models=models, views=views, prompts=prompts, reads=reads, answers=_recorded_answers(run)
    )


def _recorded_answers(run: Run) -> dict[str, dict[str, Any]]:
    """Each role's answer at its last recorded evaluation (teacher: step 0; live model: the final step)."""
    from kd_analysis.runs.records import PREDICTIONS

    latest: dict[tuple[str, str], tuple[int, Any]] = {}
    path = run.path / PREDICTIONS
    for r in read_jsonl(path) if path.exists() else []:
        key, step = (r.get("role"), r.get("example_id")), r.get("step", 0)
        if isinstance(step, int) and (key not in latest or step >= latest[key][0]):
            latest[key] = (step, r.get("prediction"))
    out: dict[str, dict[str, Any]] = {}
    for (role, eid), (_, pred) in latest.items():
        out.setdefault(role, {})[eid] = pred
    return out


def token_logprobs(loaded, example, prompt: Callable | None, max_length: int) -> list[list]:
    """[[token text, log p], ...] for each gold-answer token the model scores after `prompt` (teacher-forced, the
    same target and truncation as the run's answer NLL)."""
    import torch

    from kd_analysis.training.batches import lm_outputs

    with torch.no_grad():
        out = lm_outputs(loaded, [example], max_length, prompt)
    mask = out.labels[0] != -100
    ids = out.labels[0][mask]
    logp = torch.log_softmax(out.logits[0][mask].float(), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    tok = loaded.tokenizer
    return [[tok.decode([int(i)]), float(v)] for i, v in zip(ids.tolist(), logp.tolist())]


def explain_example(
    models: RunModels, example_id: str, *, method: str = DEFAULT_METHOD, target: str = "predicted"
) -> Explanation:
    """Attributions of both models over one held-out example (and, for generation, the gold answer's token
    log-probabilities), through the attribution registry."""
    from kd_analysis.attribution.methods import METHODS
    from kd_analysis.attribution.rationales import attribute

    if method not in METHODS:
        raise KDLensError(f"unknown attribution method {method!r}; one of {', '.join(METHODS)}")
    if target not in TARGETS:
        raise KDLensError(f"unknown target {target!r}; one of {', '.join(TARGETS)}")
    if not any(example_id in view for view in models.views.values()):
        raise KDLensError(f"example {example_id!r} is not among run {models.run_id}'s held-out examples")
    started = time.monotonic()
    out = Explanation(
        run_id=models.run_id,
        example_id=example_id,
        method=method,
        target=target,
        reads=dict(models.reads),
        created=_now(),
    )
    for role, loaded in models.models.items():
        ex = models.views[role][example_id]
        recorded = models.answers.get(role, {}).get(example_id)
        chosen: str | int = target
        if target == "predicted" and ex.choices and isinstance(recorded, int) and not isinstance(recorded, bool):
            chosen = recorded  # the answer the run's evaluation recorded, whatever this prompt would pick
        attr = attribute(loaded, ex, method=method, target=chosen)
        if chosen != target and attr.predicted_label != attr.target_label:
            out.notes.append(
                f"{role}: the attributions read the example through a plain 'Question … Choices … "
                f"Answer:' prompt, under which it would pick {attr.predicted_label!r}; they explain "
                f"{attr.target_label!r}, the answer the run's own evaluation recorded"
            )
        out.attributions[role] = attr.to_dict()
        if loaded.task == "causal_lm" and not ex.choices:
            out.token_logprobs[role] = token_logprobs(loaded, ex, models.prompts[role], models.cfg.max_length)
    if out.token_logprobs:
        out.notes.append(
            "attributions explain log p(gold answer) after a plain 'Question: … Answer:' prompt, the "
            "same for both models; the token log-probabilities use the prompt each model was "
            "evaluated with"
        )
        if models.cfg.priming:
            out.notes.append(f"the teacher was evaluated under the {models.cfg.priming.strategy} priming prompt")
    if any(math.isnan(v) for rows in out.token_logprobs.values() for _, v in rows):
        out.notes.append("some token log-probabilities are not finite")
    out.seconds = time.monotonic() - started
    return out


def cached(
    store: RunStore, run_id: str, example_id: str | None = None, *, method: str | None = None, target: str | None = None
) -> dict[tuple[str, str, str], Explanation]:
    """The run's saved explanations, newest per (example, method, target)."""
    out: dict[tuple[str, str, str], Explanation] = {}
    # a reference run's shipped explanations, then what this user added (its own folder, or its annotations)
    paths = dict.fromkeys([store.get(run_id).path / EXPLANATIONS, store.annotations(run_id) / EXPLANATIONS])
    rows = [row for path in paths if path.exists() for row in read_jsonl(path)]
    for row in rows:
        if not isinstance(row, dict) or not {"example_id", "method", "target"} <= row.keys():
            continue
        if (
            (example_id is not None and row["example_id"] != example_id)
            or (method is not None and row["method"] != method)
            or (target is not None and row["target"] != target)
        ):
            continue
        try:
            out[(row["example_id"], row["method"], row["target"])] = Explanation.from_dict(row)
        except TypeError:
            continue  # a line from another version; it is recomputed when asked for
    return out


def save(store: RunStore, explanation: Explanation) -> None:
    store.get(explanation.run_id)  # refuses an unknown run
    folder = store.annotations(explanation.run_id)  # never inside a read-only reference run
    folder.mkdir(parents=True, exist_ok=True)
    append_jsonl(folder / EXPLANATIONS, explanation.to_dict())


def explain(
    store: RunStore,
    run_id: str,
    example_ids: Sequence[str],
    *,
    method: str = DEFAULT_METHOD,
    target: str = "predicted",
    rebuild: bool = False,
    refresh: bool = False,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
    on_step: Callable[[str, int, int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[Explanation]:
    """Explanations of `example_ids` (cached ones reused unless `refresh`), saving each as it is done. Loads the
    run's models only when something is missing; `rebuild` first retrains a run that kept no weights.
    `on_step(phase, done, total)` reports progress; `should_stop` is polled between examples."""
    say = progress or (lambda m: None)
    have = {} if refresh else cached(store, run_id, method=method, target=target)
    todo = [e for e in dict.fromkeys(example_ids) if (e, method, target) not in have]
    if todo:
        run = store.get(run_id)
        if rebuild and not (run.path / layout.CHECKPOINT).is_dir():
            from kd_analysis.error_analysis.backfill import rebuild_checkpoint

            rebuild_checkpoint(
                store,
                run_id,
                progress=say,
                should_stop=should_stop,
                on_metrics=lambda m: (
                    on_step and on_step("retraining", int(m.get("step", 0)), int(m.get("total_steps") or 0))
                ),
            )
        models = load_run_models(store, run_id, device=device, progress=say)
        for i, eid in enumerate(todo):
            if should_stop():
                break
            if on_step:
                on_step("explaining", i, len(todo))
            found = explain_example(models, eid, method=method, target=target)
            save(store, found)
            have[(eid, method, target)] = found
            say(f"explained {eid} in {found.seconds:.1f} s")
        if on_step and not should_stop():
            on_step("explaining", len(todo), len(todo))
    return [have[(e, method, target)] for e in example_ids if (e, method, target) in have]


def explain_config(
    run_id: str,
    example_ids: Sequence[str],
    *,
    method: str = DEFAULT_METHOD,
    target: str = "predicted",
    rebuild: bool = False,
) -> dict[str, Any]:
    """A background job's config (kind "explanations"), as the page starts it."""
    if not example_ids:
        raise KDLensError("no example to explain")
    return {
        "run": run_id,
        "examples": list(example_ids),
        "method": method,
        "target": target,
        "rebuild": rebuild,
        "name": f"Explain {len(example_ids)} example{'s' * (len(example_ids) != 1)} of {run_id}",
    }


def explain_job(run: Run, stop: threading.Event, store: RunStore | None = None) -> tuple[str, str | None, dict]:
    """The background job: progress rows in its metrics ({step, total_steps, phase}), the results in the
    explained run's folder."""
    import torch

    cfg = run.config()
    store = store or RunStore(run.path.parent)

    def step(phase: str, done: int, total: int) -> None:
        run.append_metrics({"step": done, "total_steps": total, "phase": phase})

    try:
        found = explain(
            store,
            cfg["run"],
            cfg["examples"],
            method=cfg.get("method", DEFAULT_METHOD),
            target=cfg.get("target", "predicted"),
            rebuild=bool(cfg.get("rebuild")),
            device="cuda" if torch.cuda.is_available() else "cpu",
            progress=run.log,
            on_step=step,
            should_stop=stop.is_set,
        )
    except KDLensError:
        if stop.is_set():  # a cancelled retrain ends in an error by design: nothing of it was kept
            return "cancelled", "cancelled while rebuilding the weights (nothing kept)", {}
        raise
    if stop.is_set() and len(found) < len(cfg["examples"]):
        return "cancelled", f"cancelled after {len(found)} of {len(cfg['examples'])} examples (those are kept)", {}
    run.log(f"finished: {len(found)} examples explained")
    return "finished", None, {}
