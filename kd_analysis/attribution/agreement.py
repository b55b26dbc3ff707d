"""Teacher vs student: do they look at the same words? Rank correlation and top-k overlap per example."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from kd_analysis.attribution.rationales import Attribution, normalise, select_rationale
from kd_analysis.exceptions import KDLensError


@dataclass
class Agreement:
    example_id: str
    spearman: float | None  # rank correlation of word scores (None when a side is constant)
    topk_overlap: float  # |top-k teacher ∩ top-k student| / k, on the rationale filters
    words: int

    def to_dict(self) -> dict:
        return asdict(self)


def _aligned(t: Attribution, s: Attribution) -> tuple[list[float], list[float]]:
    tw, sw = [normalise(w.text) for w in t.words], [normalise(w.text) for w in s.words]
    if tw != sw:  # different tokenizers can split words differently; compare the words both have, in order
        pairs, j = [], 0
        for i, word in enumerate(tw):
            while j < len(sw) and sw[j] != word:
                j += 1
            if j < len(sw):
                pairs.append((i, j))
                j += 1
        return [t.words[i].score for i, _ in pairs], [s.words[j].score for _, j in pairs]
    return [w.score for w in t.words], [w.score for w in s.words]


def agreement(teacher: Attribution, student: Attribution, k: int = 5) -> Agreement:
    from scipy.stats import spearmanr

    if teacher.example_id != student.example_id:
        raise KDLensError("teacher and student attributions are for different examples")
    ts, ss = _aligned(teacher, student)
    rho = None
    if len(ts) >= 2 and len(set(ts)) > 1 and len(set(ss)) > 1:
        rho = float(spearmanr(ts, ss).statistic)
    rt = {normalise(w) for w in select_rationale(teacher, k).words}
    rs = {normalise(w) for w in select_rationale(student, k).words}
    return Agreement(teacher.example_id, rho, len(rt & rs) / max(k, 1), len(ts))


def agreement_summary(teacher: Sequence[Attribution], student: Sequence[Attribution], k: int = 5) -> dict:
    by_id = {a.example_id: a for a in student}
    rows = [agreement(t, by_id[t.example_id], k) for t in teacher if t.example_id in by_id]
    rhos = [r.spearman for r in rows if r.spearman is not None]
    return {
        "examples": len(rows),
        "k": k,
        "mean_spearman": sum(rhos) / len(rhos) if rhos else None,
        "mean_topk_overlap": sum(r.topk_overlap for r in rows) / len(rows) if rows else None,
        "rows": [r.to_dict() for r in rows],
    }
