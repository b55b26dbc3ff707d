"""What other analyses of the same data know about each example, joined onto the error-analysis frame by example id.

- A finished rationales job (Saliency rationales page): `rationale_overlap`, 1 when the teacher's top-k rationale
  (the job's own k and method) covers a word of the gold answer, 0 when it does not, missing where undefined (the
  answer does not appear in the input). The slice finder then tests "rationale overlap: yes / no".
- A finished teacher-outputs job (Priming page): per strategy, `primed_<strategy>_correct` (the primed teacher's
  generated answer right or not) and `primed_<strategy>_logprob` (its gold-answer log-probability per token).

The newest finished job on the run's data set is used; `Joined.sources` names it, so the page can say which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from kd_analysis.fileio import read_jsonl
from kd_analysis.runs import RunStore
from kd_analysis.runs.kinds import RATIONALES, TEACHER_OUTPUTS


@dataclass
class Joined:
    frame: pd.DataFrame
    sources: list[str] = field(default_factory=list)  # "rationales job <id> (saliency, k = 5)", ...
    features: list[str] = field(default_factory=list)  # joined columns to pass to find_slices(columns=...)


def _newest_finished(store: RunStore, kind: str, data: str) -> str | None:
    for summary in store.list(kind=kind):  # newest first
        if summary.state != "finished":
            continue
        if store.get(summary.run_id).config().get("data") == data:
            return summary.run_id
    return None


def rationale_overlaps(store: RunStore, job_id: str) -> tuple[pd.DataFrame, str]:
    """Per example of a rationales job: whether the teacher's rationale overlaps the gold answer."""
    from kd_analysis.attribution.job import ATTRIBUTIONS
    from kd_analysis.attribution.rationales import Attribution, overlap, select_rationale

    run = store.get(job_id)
    cfg = run.config()
    k = int(cfg.get("k") or 5)
    rows = []
    for line in read_jsonl(run.path / ATTRIBUTIONS):
        if line.get("role", "teacher") != "teacher":
            continue
        line = {key: v for key, v in line.items() if key != "role"}
        try:
            attr = Attribution.from_dict(line)
        except (TypeError, KeyError):
            continue  # a line of another version: that example stays without the column
        found = overlap(attr, select_rationale(attr, k))
        rows.append({"example_id": str(attr.example_id), "rationale_overlap": found.any if found.defined else None})
    frame = pd.DataFrame(rows, columns=["example_id", "rationale_overlap"]).drop_duplicates("example_id", keep="last")
    return frame, f"rationales job {job_id} ({cfg.get('method')}, k = {k})"


def _column(strategy: str) -> str:
    return re.sub(r"\W", "_", str(strategy)).strip("_") or "strategy"


def primed_outputs(store: RunStore, job_id: str) -> tuple[pd.DataFrame, str]:
    """Per example of a teacher-outputs job: each strategy's correctness and gold-answer log-probability."""
    from kd_analysis.priming.job import OUTPUTS_FILE

    wide: dict[str, dict[str, object]] = {}
    for line in read_jsonl(store.get(job_id).path / OUTPUTS_FILE):
        eid, strategy = line.get("example_id"), line.get("strategy")
        if eid is None or strategy is None:
            continue
        row = wide.setdefault(str(eid), {"example_id": str(eid)})
        name = _column(strategy)
        row[f"primed_{name}_correct"] = line.get("correct")
        row[f"primed_{name}_logprob"] = line.get("answer_logprob_per_token")
    return pd.DataFrame(list(wide.values())), f"teacher-outputs job {job_id}"


def join_analyses(frame: pd.DataFrame, store: RunStore, data: str) -> Joined:
    """`frame` with the columns of the newest finished rationales and teacher-outputs jobs on `data` (left join:
    every example stays; examples a job did not cover get missing values)."""
    out = Joined(frame)
    for kind, load in ((RATIONALES, rationale_overlaps), (TEACHER_OUTPUTS, primed_outputs)):
        job = _newest_finished(store, kind, data)
        if job is None:
            continue
        try:
            extra, source = load(store, job)
        except Exception:
            continue
        extra = extra[[c for c in extra.columns if c == "example_id" or c not in out.frame.columns]]
        if extra.empty or len(extra.columns) < 2 or not set(extra["example_id"]) & set(out.frame["example_id"]):
            continue
        out.frame = out.frame.merge(extra, on="example_id", how="left")
        out.sources.append(source)
        out.features += [c for c in extra.columns if c.startswith("primed_") and c.endswith("_correct")]
    return out
