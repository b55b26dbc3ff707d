"""`inside`: where in the network a student departs from its teacher (logit lens, layer CKA, head matching)."""

from __future__ import annotations

import argparse
import json

from kd_analysis.cli.args import number, whole_number
from kd_analysis.cli.common import add_data, add_root, creates_runs, reconciled_store
from kd_analysis.cli.models import pair_specs


@creates_runs
def cmd_inside(args: argparse.Namespace) -> None:
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.fileio import atomic_write_text, writable_target
    from kd_analysis.inside.report import inside_report
    from kd_analysis.models.pairs_loading import load_pair

    target = writable_target(args.json, args.force) if args.json else None
    if args.also or args.save:
        _saved_comparison(args, target)
        return
    teacher, student, _ = load_pair(*pair_specs(args))
    examples = load_dataset(args.data).examples[: args.limit]  # --columns is already in args.data
    report = inside_report(teacher, student, examples, threshold=args.threshold, max_length=args.max_length).to_dict()
    if target is not None:
        atomic_write_text(target, json.dumps(report, indent=1) + "\n")
    print(_summary(report, teacher.info().layers, student.info().layers))


def _saved_comparison(args: argparse.Namespace, target) -> None:
    """`--save` / `--also`: the teacher against several students, computed here and saved in the run store as a
    comparison the Models & data page opens side by side (the worker's own job function, run in this process)."""
    import threading

    from kd_analysis.exceptions import KDLensError
    from kd_analysis.inside.job import inside_config, inside_job, load_inside_run
    from kd_analysis.models.specs import ModelSpec, StudentSpec
    from kd_analysis.runs.kinds import INSIDE

    teacher, student = pair_specs(args)
    students = [(student.describe(), student)]
    for item in args.also or []:
        label, _, source = item.rpartition("=")
        if not source:
            raise KDLensError(f"--also takes [LABEL=]SOURCE, e.g. after=runs/x/checkpoint (got {item!r})")
        model = ModelSpec(source, task=args.task, trust_remote_code=args.trust_remote_code)
        students.append((label or source, StudentSpec(kind="model", model=model)))
    cfg = inside_config(
        teacher, students, args.data, limit=args.limit, threshold=args.threshold, max_length=args.max_length,
        name=args.name or "",
    )  # fmt: skip
    store = reconciled_store(args)
    run = store.create(INSIDE, cfg, state="running")
    state, reason, _ = inside_job(run, threading.Event(), store)
    run.set_status(state, reason=reason)
    found = load_inside_run(run) or {"students": []}
    if target is not None:  # one report per student: {"teacher", "data", "students": [{label, cka, heads, lens}]}
        from kd_analysis.fileio import atomic_write_text

        atomic_write_text(target, json.dumps(found, indent=1) + "\n")
    lines = [f"saved as {run.run_id} in {store.root} (Models & data › Inside the pair › Saved comparisons)"]
    for entry in found["students"]:
        lines += [
            f"— {entry['label']}",
            _summary(entry, len(entry["cka"]["teacher_layers"]) - 1, len(entry["cka"]["student_layers"]) - 1),
        ]
    print("\n".join(lines))


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
    q.add_argument(
        "--also",
        action="append",
        metavar="[LABEL=]SOURCE",
        help="a further student (a model source) beside the first, e.g. after=out/checkpoint-500; implies --save",
    )
    q.add_argument("--save", action="store_true", help="keep the comparison in the run store (the page opens it)")
    q.add_argument("--name", help="the saved comparison's name")
    add_root(q)
    q.add_argument("--force", action="store_true", help="overwrite --json OUT; load past the memory estimate")
    q.set_defaults(fn=cmd_inside)
