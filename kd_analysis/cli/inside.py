"""`inside`: where in the network a student departs from its teacher (logit lens, layer CKA, head matching)."""

from __future__ import annotations

import argparse
import json

from kd_analysis.cli.args import number, whole_number
from kd_analysis.cli.common import add_data
from kd_analysis.cli.models import pair_specs


def cmd_inside(args: argparse.Namespace) -> None:
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.fileio import atomic_write_text, writable_target
    from kd_analysis.inside.report import inside_report
    from kd_analysis.models.pairs_loading import load_pair

    target = writable_target(args.json, args.force) if args.json else None
    teacher, student, _ = load_pair(*pair_specs(args))
    examples = load_dataset(args.data).examples[: args.limit]  # --columns is already in args.data
    report = inside_report(teacher, student, examples, threshold=args.threshold, max_length=args.max_length).to_dict()
    if target is not None:
        atomic_write_text(target, json.dumps(report, indent=1) + "\n")
    print(_summary(report, teacher.info().layers, student.info().layers))


def _summary(report: dict, teacher_layers: int, student_layers: int) -> str:
    """A few lines for the terminal: which teacher layer each student layer is most like, and the heads."""
    lines = [f"{report['examples']} examples · teacher {teacher_layers} layers · student {student_layers} layers"]
    matrix = report["cka"]["matrix"]
    if matrix:
        columns = list(zip(*matrix))
        for j, col in enumerate(columns):
            known = [i for i, v in enumerate(col) if v is not None]
            if not known:
                lines.append(f"student layer {j}: the same for every example (no CKA)")
                continue
            best = max(known, key=col.__getitem__)
            lines.append(f"student layer {j}: most like teacher layer {best} (CKA {col[best]:.2f})")
    heads = report["heads"]
    if heads["note"]:
        lines.append(f"heads: {heads['note']}")
    elif heads["pairs"]:
        mean = sum(p["similarity"] for p in heads["pairs"]) / len(heads["pairs"])
        lines.append(
            f"heads: {len(heads['pairs'])} student heads matched (mean similarity {mean:.2f}); "
            f"{len(heads['lost'])} teacher heads below {heads['threshold']:g}"
        )
    return "\n".join(lines)


def add_inside(sub) -> None:
    q = sub.add_parser(
        "inside",
        help="where inside the student departs from its teacher: logit lens, layer CKA and head matching",
    )
    q.add_argument("--teacher", required=True)
    q.add_argument("--student", help="a model source; default: a layer-dropped copy of the teacher")
    q.add_argument("--layers", type=whole_number, help="student layers (drop or shrink)")
    q.add_argument("--keep", help="comma-separated teacher layers to keep, e.g. 0,3,5")
    q.add_argument("--shrink", action="store_true", help="random-init smaller config instead of dropping layers")
    q.add_argument("--task", choices=["classification", "multiple_choice", "causal_lm", "seq2seq"])
    q.add_argument("--trust-remote-code", action="store_true", help="run the checkpoint's own code (only if trusted)")
    add_data(q, required=True)
    q.add_argument("--limit", type=whole_number, default=64, help="examples read (default 64)")
    q.add_argument("--max-length", type=whole_number, default=128, help="tokens of one input (default 128)")
    q.add_argument("--threshold", type=number, default=0.5, help="a teacher head below this similarity is lost")
    q.add_argument("--json", metavar="OUT", help="write the whole result as JSON to this file")
    q.add_argument("--force", action="store_true", help="overwrite --json OUT; load past the memory estimate")
    q.set_defaults(fn=cmd_inside)
