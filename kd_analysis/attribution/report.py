"""One call for the page and CLI: teacher (and student) attributions on examples, rationales, overlap, agreement."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from kd_analysis.attribution.agreement import agreement_summary
from kd_analysis.attribution.rationales import (Attribution, aggregate, answer_positions, attribute_many, overlap,
                                                select_rationale)

KS = (1, 2, 3, 5, 8, 10)


@dataclass
class RationaleReport:
    method: str
    k: int
    teacher: list[Attribution]
    student: list[Attribution] = field(default_factory=list)
    aggregate: list[dict[str, Any]] = field(default_factory=list)
    agreement: dict[str, Any] | None = None

    def rows(self) -> list[dict[str, Any]]:
        """One row per example: rationale, correctness and every overlap definition (None when undefined)."""
        by_id = {a.example_id: a for a in self.student}
        out = []
        for t in self.teacher:
            r = select_rationale(t, self.k)
            o = overlap(t, r)
            row = {"example": t.example_id, "gold": t.gold_label, "teacher answer": t.predicted_label,
                   "teacher right": t.correct, "rationale": r.text, "overlap defined": o.defined,
                   **{f"overlap {d}": o.get(d) for d in ("any", "fraction", "f1", "iou")}, "ig delta": t.delta}
            s = by_id.get(t.example_id)
            if s is not None:
                row.update({"student answer": s.predicted_label, "student right": s.correct,
                            "student rationale": select_rationale(s, self.k).text})
            out.append(row)
        return out

    def heat(self, example_id: str, role: str = "teacher") -> dict[str, Any] | None:
        attrs = self.teacher if role == "teacher" else self.student
        a = next((x for x in attrs if x.example_id == example_id), None)
        if a is None:
            return None
        return {"words": [(w.text, w.score) for w in a.words], "rationale": set(select_rationale(a, self.k).indices),
                "answer": answer_positions(a) or set(), "attribution": a}


def analyse_rationales(teacher, examples: Sequence, *, student=None, method: str = "ig", k: int = 5,
                       target: str = "gold", steps: int = 32,
                       progress: Callable[[str, int, int], None] | None = None) -> RationaleReport:
    say = progress or (lambda role, i, n: None)
    t_attrs = attribute_many(teacher, examples, method=method, target=target, steps=steps,
                             progress=lambda i, n: say("teacher", i, n))
    rows = [dict(r, method=method, model="teacher") for r in aggregate(t_attrs, ks=sorted(set(KS) | {k}))]
    s_attrs: list[Attribution] = []
    agree = None
    if student is not None:
        s_attrs = attribute_many(student, examples, method=method, target=target, steps=steps,
                                 progress=lambda i, n: say("student", i, n))
        rows += [dict(r, method=method, model="student") for r in aggregate(s_attrs, ks=sorted(set(KS) | {k}))]
        agree = agreement_summary(t_attrs, s_attrs, k)
    return RationaleReport(method=method, k=k, teacher=t_attrs, student=s_attrs, aggregate=rows, agreement=agree)
