"""One example inside both models: where the student's reading departs from its teacher's, where the gold
answer's rank falls behind, and which of its heads attend least like any teacher head on this example.

Layers are matched by relative depth (layer / layers): each student layer is set beside the teacher layer at the
nearest depth. "Departs" is the first student layer whose reading is more than `DEPART_NATS` from the teacher's
at that depth (KL(teacher ‖ student) over the same outputs); "falls behind" is the first student layer where the
gold answer ranks lower than in the teacher's reading at that depth, with a probability `BEHIND_BY` lower."""

from __future__ import annotations

from typing import Any

import torch

from kd_analysis.data.example import Example
from kd_analysis.inside.heads import HeadMatching, head_names
from kd_analysis.inside.reading import Reading, read_example

DEPART_NATS = 0.1
BEHIND_BY = 0.05  # and the gold answer's probability at least this much below the teacher's (ranks in a flat
# reading differ by rounding)
TOP = 5


def _nearest(depth: float, layers: int) -> int:
    return min(range(layers + 1), key=lambda i: abs(i / max(layers, 1) - depth))


def _label(loaded: Any, index: int, example: Example) -> str:
    if loaded.head == "lm":
        return loaded.tokenizer.decode([index])
    if example.choices and index < len(example.choices):
        return f"{index}: {example.choices[index]}"
    return str(index)


def _rows(loaded: Any, reading: Reading, example: Example) -> list[dict[str, Any]]:
    last = max(len(reading.lens) - 1, 1)
    out = []
    for i, lens in enumerate(reading.lens):
        top = torch.topk(lens, min(TOP, lens.shape[-1]))
        gold = reading.gold if reading.gold is not None and 0 <= reading.gold < lens.shape[-1] else None
        out.append(
            {
                "layer": i,
                "depth": i / last,
                "gold_prob": float(lens[gold].exp()) if gold is not None else None,
                "gold_rank": int((lens > lens[gold]).sum()) + 1 if gold is not None else None,
                "top": [[_label(loaded, int(j), example), float(v.exp())] for v, j in zip(top.values, top.indices)],
            }
        )
    return out


def _behind(student: dict[str, Any], teacher: dict[str, Any]) -> bool:
    if student["gold_rank"] is None or teacher["gold_rank"] is None:
        return False
    return student["gold_rank"] > teacher["gold_rank"] and student["gold_prob"] < teacher["gold_prob"] - BEHIND_BY


def example_inside(teacher: Any, student: Any, example: Example, *, max_length: int = 128) -> dict[str, Any]:
    """Both models' logit lens on one example by depth, where the student departs and falls behind, and its heads
    that attend least like any teacher head here (when the two tokenize the example alike)."""
    rt = read_example(teacher, example, attentions=True, max_length=max_length)
    rs = read_example(student, example, attentions=True, max_length=max_length)
    t_rows, s_rows = _rows(teacher, rt, example), _rows(student, rs, example)
    t_layers = len(rt.lens) - 1
    same_outputs = rt.lens[0].shape == rs.lens[0].shape
    departs = behind = None
    for row, lens in zip(s_rows, rs.lens):
        j = _nearest(row["depth"], t_layers)
        row["teacher_layer"] = j
        if same_outputs:
            t = rt.lens[j].double()
            row["kl_from_teacher"] = float((t.exp() * (t - lens.double())).sum().clamp_min(0))
            if departs is None and row["layer"] > 0 and row["kl_from_teacher"] > DEPART_NATS:
                departs = row["layer"]
        if behind is None and row["layer"] > 0 and _behind(row, t_rows[j]):
            behind = row["layer"]
    heads: list[dict[str, Any]] = []
    note = None
    if rt.tokens == rs.tokens and rt.attentions and rs.attentions:
        match = HeadMatching(head_names(rs.attentions), head_names(rt.attentions))
        match.add(rs.attentions, rt.attentions)
        sim = match.similarity()
        best, at = sim.max(1)
        order = torch.argsort(best)[:TOP]
        heads = [
            {
                "student": list(match.student_heads[i]),
                "closest_teacher": list(match.teacher_heads[at[i]]),
                "similarity": float(best[i]),
            }
            for i in order.tolist()
        ]
    else:
        note = "the two models tokenize this example differently, so their heads cannot be compared on it"
    return {
        "example_id": example.id,
        "teacher": t_rows,
        "student": s_rows,
        "departs_at": departs,
        "falls_behind_at": behind,
        "depart_nats": DEPART_NATS,
        "heads_least_alike": heads,
        "heads_note": note,
    }


SAVED = "inside_examples.jsonl"


def save_example_inside(store: Any, run_id: str, found: dict[str, Any]) -> None:
    """Keep one example's inside view with the run (in its annotations folder, never inside a read-only
    reference run), so the page reopens it and the HTML report shows it for a pinned example."""
    from kd_analysis.fileio import append_jsonl

    store.get(run_id)  # refuses an unknown run
    folder = store.annotations(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    append_jsonl(folder / SAVED, found)


def saved_example_inside(store: Any, run_id: str) -> dict[str, dict[str, Any]]:
    """The run's saved inside views, newest per example id."""
    from kd_analysis.fileio import read_jsonl

    path = store.annotations(run_id) / SAVED
    rows = read_jsonl(path) if path.exists() else []
    return {str(r["example_id"]): r for r in rows if isinstance(r, dict) and "example_id" in r and "student" in r}
