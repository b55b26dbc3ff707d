"""Training with the teacher's rationales (Ballout et al. 2024): its top-k salient input words.

Two ways to use them, chosen by `RationaleSettings.mode`:
- multitask (after "Distilling step-by-step", Hsieh et al. 2023): one student, two tasks told apart by a tag.
  The label task sees `[label] question`; the rationale task learns the teacher's words: a decoder generates
  them after `[rationale] question`, an encoder (no LM head) marks each input token as rationale or not.
  Loss = label losses + λ·rationale loss; only the label task runs at inference, so no teacher is needed then.
- append: the words are appended to the question, in training and at evaluation (where they come from the
  teacher's attribution of its own predicted answer, never the gold one).
Rationales are computed once per run and kept in the run folder (`rationales.jsonl`), so a rerun reuses them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from kd_analysis.attribution.rationales import attribute, normalise, select_rationale
from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.fileio import append_jsonl, read_jsonl
from kd_analysis.runs import layout
from kd_analysis.runs.kinds import RATIONALES
from kd_analysis.training.config import RationaleSettings

logger = logging.getLogger(__name__)

LABEL_TAG, RATIONALE_TAG = "[label]", "[rationale]"
CACHE_FILE = "rationales.jsonl"


def _key(settings: RationaleSettings, target: str) -> tuple:
    return (settings.method, settings.k, target, settings.filter_stopwords)


def teacher_rationales(
    teacher,
    examples: Sequence[Example],
    settings: RationaleSettings,
    *,
    target: str,
    cache: Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, list[str]]:
    """Example id -> the teacher's top-k words (original order), read from `cache` when it has them."""
    key = _key(settings, target)
    found: dict[str, list[str]] = {}
    if cache is not None and cache.exists():
        for row in read_jsonl(cache):
            if tuple(row.get("key", ())) == key:
                found[row["id"]] = row["words"]
    if settings.source_run:
        wanted = {ex.id for ex in examples} - set(found)
        reused = _from_job(settings, teacher.spec.source, target, cache.parent if cache is not None else None)
        for ex_id, words in reused.items():
            if ex_id in wanted:
                found[ex_id] = words
                if cache is not None:  # the run folder records what it trained with, wherever it came from
                    append_jsonl(cache, {"key": list(key), "id": ex_id, "words": words, "from": settings.source_run})
    todo = [ex for ex in examples if ex.id not in found]
    if todo:
        logger.info(f"attributing {len(todo)} examples with {settings.method} ({target} answer) for rationales")
    for i, ex in enumerate(todo, 1):
        if should_stop():
            raise InterruptedError("cancelled while computing rationales")
        attr = attribute(teacher, ex, method=settings.method, target=target)
        words = select_rationale(attr, settings.k, filter_stopwords=settings.filter_stopwords).words
        found[ex.id] = words
        if cache is not None:
            append_jsonl(cache, {"key": list(key), "id": ex.id, "words": words, "teacher_right": attr.correct})
        if i % 50 == 0 or i == len(todo):
            logger.info(f"rationales: {i}/{len(todo)}")
    return {ex.id: found[ex.id] for ex in examples}


def _resolve_run(source: str, run_dir: Path | None) -> Path:
    from kd_analysis.runs import RUN_ID, RunStore

    candidates = [Path(source)]
    if run_dir is not None:
        candidates.append(run_dir.parent / source)  # a run id next to this run
    if RUN_ID.match(source):  # a run id: the user's run, else a shipped reference run
        candidates.append(RunStore().folder(source))
    for c in candidates:
        if (c / layout.CONFIG).exists():
            return c
    raise KDLensError(f"rationales.source_run: no run {source!r} in the run store")


def _same_source(a: str, b: str) -> bool:
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())


def check_source_run(source: str, teacher_source: str, method: str, run_dir: Path | None = None):
    """The folder and config of a rationales job whose attributions a run may reuse; why not, otherwise. The
    source may be a folder outside the store (a config names data files anywhere too); it is only read, through
    the store's own reader, so a damaged or planted config.json is a sentence, not a crash or a hang."""
    from kd_analysis.runs import CONFIG, Run

    folder = _resolve_run(source, run_dir)
    job, bad = Run(folder).checked_object(CONFIG)
    if bad:
        raise KDLensError(f"rationales.source_run: {folder.name}'s {CONFIG} {bad[0]}")
    if job.get("kind") != RATIONALES:
        raise KDLensError(f"rationales.source_run: {folder.name} is a {job.get('kind')} run, not a rationales job")
    if not _same_source(str(job.get("teacher", {}).get("source")), teacher_source):
        raise KDLensError(
            f"rationales.source_run: {folder.name} attributed {job.get('teacher', {}).get('source')}, "
            f"not this run's teacher {teacher_source}"
        )
    if job.get("method") != method:
        raise KDLensError(f"rationales.source_run: {folder.name} used {job.get('method')}, this run asks for {method}")
    return folder, job


def _from_job(
    settings: RationaleSettings, teacher_source: str, target: str, run_dir: Path | None
) -> dict[str, list[str]]:
    """Rationales from a rationales job's saved teacher attributions, when its method and target match."""
    from kd_analysis.attribution.job import ATTRIBUTIONS
    from kd_analysis.attribution.rationales import Attribution

    folder, job = check_source_run(settings.source_run, teacher_source, settings.method, run_dir)
    if job.get("target", "gold") != target:
        logger.info(
            f"{folder.name} attributed the {job.get('target', 'gold')} answer; {target}-answer rationales are "
            "computed here"
        )
        return {}
    out = {}
    for row in read_jsonl(folder / ATTRIBUTIONS):
        if row.pop("role", "teacher") == "teacher":
            attr = Attribution.from_dict(row)
            out[attr.example_id] = select_rationale(attr, settings.k, filter_stopwords=settings.filter_stopwords).words
    logger.info(f"rationales for {len(out)} examples reused from {folder.name}")
    return out


def rationale_text(words: Sequence[str]) -> str:
    return " ".join(words) if words else "(none)"


def label_view(ex: Example, settings: RationaleSettings, words: Sequence[str] | None) -> Example:
    """What the student's label task sees for `ex` under this mode."""
    if settings.mode == "append":
        return replace(ex, text=f"{ex.text}\nRationale: {rationale_text(words or [])}")
    return replace(ex, text=f"{LABEL_TAG} {ex.text}")


def rationale_input_words(ex: Example) -> list[str]:
    """The rationale task's input, as words: question, then choices (the teacher attributed over both)."""
    words = [RATIONALE_TAG, *ex.text.split()]
    for i, c in enumerate(ex.choices or []):
        words += [f"({chr(65 + i)})", *c.split()]
    return words


def tag_targets(tok, examples: Sequence[Example], rationales: dict[str, list[str]], max_length: int):
    """Encoded rationale-task inputs, a 0/1 target per token (its word is a rationale word) and the mask of
    tokens that count (word tokens; not the tag, special tokens or padding)."""
    words = [rationale_input_words(ex) for ex in examples]
    enc = tok(
        words, is_split_into_words=True, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    targets = torch.zeros(enc["input_ids"].shape)
    mask = torch.zeros(enc["input_ids"].shape, dtype=torch.bool)
    for row, ex in enumerate(examples):
        chosen = {normalise(w) for w in rationales.get(ex.id, [])}
        for col, wid in enumerate(enc.word_ids(row)):
            if wid is not None and wid > 0:  # word 0 is the tag
                mask[row, col] = True
                targets[row, col] = float(normalise(words[row][wid]) in chosen)
    return enc, targets, mask


class RationaleObjective(torch.nn.Module):
    """The auxiliary rationale task's loss for a batch; owns the token tagger when the student has no LM head."""

    def __init__(self, student):
        super().__init__()
        self.generates = student.head in ("lm", "seq2seq")
        self.tagger = None
        if not self.generates:
            hidden = getattr(student.model.config, "hidden_size", None) or getattr(student.model.config, "dim", None)
            if not hidden:
                raise KDLensError("the student's config names no hidden size, so it cannot learn rationale tags")
            self.tagger = torch.nn.Linear(int(hidden), 1)

    def forward(
        self, live, examples: Sequence[Example], rationales: dict[str, list[str]], max_length: int
    ) -> torch.Tensor:
        if self.generates:
            from kd_analysis.training.batches import lm_outputs

            views = [
                Example(
                    id=ex.id, text=" ".join(rationale_input_words(ex)), answer=rationale_text(rationales.get(ex.id, []))
                )
                for ex in examples
            ]
            out = lm_outputs(live, views, max_length)
            logits = out.logits.float()
            return torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), out.labels.reshape(-1), ignore_index=-100
            )
        return self._tag_loss(live, examples, rationales, max_length)

    def _tag_loss(self, live, examples, rationales, max_length) -> torch.Tensor:
        enc, targets, mask = tag_targets(live.tokenizer, examples, rationales, max_length)
        inputs = {k: v.to(live.device) for k, v in enc.items()}
        if live.head == "choice_head":  # a multiple-choice model wants [batch, choices, length]: one "choice"
            inputs = {k: v.unsqueeze(1) for k, v in inputs.items()}
        hidden = live.model(**inputs, output_hidden_states=True).hidden_states[-1]
        logits = self.tagger(hidden.float()).squeeze(-1)
        mask, targets = mask.to(logits.device), targets.to(logits.device)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], targets[mask])


def prepare(
    teacher,
    train_set: list[Example],
    eval_set: list[Example],
    settings: RationaleSettings,
    *,
    cache: Path | None,
    should_stop: Callable[[], bool],
):
    """Rationales for both splits, and the label-task views the student trains and is evaluated on."""
    train_r = teacher_rationales(
        teacher, train_set, settings, target=settings.target, cache=cache, should_stop=should_stop
    )
    eval_r = (
        teacher_rationales(teacher, eval_set, settings, target="predicted", cache=cache, should_stop=should_stop)
        if settings.mode == "append"
        else {}
    )
    train_views = [label_view(ex, settings, train_r.get(ex.id)) for ex in train_set]
    eval_views = [label_view(ex, settings, eval_r.get(ex.id)) for ex in eval_set]
    return train_r, train_views, eval_views
