"""CLI for error analysis: `errors matrix|examples|slices|note|notes|backfill` (the workspace's functions)."""
from __future__ import annotations

import json

from kd_analysis.cli import _print


def _store(args):
    from kd_analysis.runs import RunStore

    return RunStore(args.root)


def cmd_matrix(args) -> None:
    from kd_analysis.errors.workspace import matrix

    out = matrix(_store(args), args.run_id, args.against)

    def text(d: dict) -> str:
        if "against" in d:
            return "\n".join(f"{k}: {v}" for k, v in d.items() if not isinstance(v, list))
        return (f"{d['examples']} examples · teacher {d['teacher_accuracy']:.1%} · student {d['student_accuracy']:.1%}\n"
                f"both right {d['both_right']} · teacher only {d['teacher_only']} · student only "
                f"{d['student_only']} · both wrong {d['both_wrong']}\n{d['test']}: p = {d['mcnemar_p']:.3g}")

    _print(out, args.json, text)


def cmd_examples(args) -> None:
    from kd_analysis.errors.workspace import examples

    frame = examples(_store(args), args.run_id, args.slice, args.where, args.sort, args.limit)
    if args.json:
        print(frame.to_json(orient="records", force_ascii=False))
        return
    cols = [c for c in ("example_id", "cell", "teacher_p_gold", "student_p_gold", "kl", "text") if c in frame]
    print(frame[cols].to_string(index=False, max_colwidth=60) if len(frame) else "no examples")


def cmd_slices(args) -> None:
    from kd_analysis.errors.workspace import slices

    rows = slices(_store(args), args.run_id, args.min_n)
    _print(rows, args.json, lambda rs: "\n".join(
        f"{r['name']:<40} n {r['n']:>4} · gap {r['gap']:+.1%} · adjusted p {r['p_adjusted']:.3g} · {r['expr']}"
        for r in rs) or "no slice with enough examples")


def cmd_note(args) -> None:
    from kd_analysis.errors.workspace import notes_store, run_data

    store = _store(args)
    data = run_data(store, args.run_id)
    notes = notes_store(store)
    out: dict = {"data": data, "example_id": args.example_id}
    if args.text:
        out["note"] = notes.add_note(data, args.example_id, args.text, author=args.author).__dict__
    if args.tag:
        out["tags_added"] = notes.add_tags(data, args.example_id, args.tag, author=args.author)
    _print(out, args.json, lambda d: json.dumps(d, default=str))


def cmd_notes(args) -> None:
    from kd_analysis.errors.workspace import notes_store, run_data

    store = _store(args)
    data = run_data(store, args.run_id)
    notes = notes_store(store)
    out = {"data": data, "notes": [n.__dict__ for n in notes.notes(data=data)], "tags": notes.tags(data)}
    _print(out, args.json, lambda d: "\n".join(
        [f"{n['example_id']}: {n['text']} ({n['author'] or 'anonymous'}, {n['created']})" for n in d["notes"]]
        + [f"{ex}: tags {', '.join(t)}" for ex, t in d["tags"].items()]) or "no notes")


def cmd_backfill(args) -> None:
    from kd_analysis.errors.backfill import backfill_run

    store = _store(args)
    done = [backfill_run(store, rid, force=args.force, retrain=args.retrain).to_dict() for rid in args.run_ids]
    _print(done, args.json, lambda rs: "\n".join(json.dumps(r, default=str) for r in rs))


def register(sub, parser_class) -> None:
    err = sub.add_parser("errors", help="error analysis: where the student fails and the teacher did not, slices, "
                                        "notes and tags")
    esub = err.add_subparsers(dest="action", required=True, parser_class=parser_class)

    def common(q):
        q.add_argument("--json", action="store_true")
        q.add_argument("--root", help="run store folder (default: cached_runs/ or $KD_LENS_RUNS)")

    q = esub.add_parser("matrix", help="teacher/student right-wrong matrix with an exact McNemar test, or the "
                                       "examples a second run fixed and broke (--against)")
    q.add_argument("run_id", metavar="RUN_ID")
    q.add_argument("--against", metavar="RUN_ID", help="compare this run's student with another run's")
    common(q)
    q.set_defaults(fn=cmd_matrix)
    q = esub.add_parser("examples", help="the examples of one cell, filtered and sorted")
    q.add_argument("run_id", metavar="RUN_ID")
    q.add_argument("--slice", default="all",
                   choices=["teacher_only", "student_only", "both_right", "both_wrong", "all"])
    q.add_argument("--where", metavar="EXPR", help="a filter such as \"kl > 0.5 and text_tokens < 40\"")
    q.add_argument("--sort", metavar="COLUMN")
    q.add_argument("--limit", type=int)
    common(q)
    q.set_defaults(fn=cmd_examples)
    q = esub.add_parser("slices", help="slice finder: slices ranked by the teacher-student gap (BH-adjusted p)")
    q.add_argument("run_id", metavar="RUN_ID")
    q.add_argument("--min-n", type=int, default=10, help="smallest slice to consider")
    common(q)
    q.set_defaults(fn=cmd_slices)
    q = esub.add_parser("note", help="add a note and/or tags to an example (kept per data set, across runs)")
    q.add_argument("run_id", metavar="RUN_ID")
    q.add_argument("example_id", metavar="EXAMPLE_ID")
    q.add_argument("--text")
    q.add_argument("--tag", action="append")
    q.add_argument("--author")
    common(q)
    q.set_defaults(fn=cmd_note)
    q = esub.add_parser("notes", help="the notes and tags of the run's data set")
    q.add_argument("run_id", metavar="RUN_ID")
    common(q)
    q.set_defaults(fn=cmd_notes)
    q = esub.add_parser("backfill", help="write per-example records for finished runs trained before records "
                                         "existed (checked against each run's own final metric)")
    q.add_argument("run_ids", metavar="RUN_ID", nargs="+")
    q.add_argument("--force", action="store_true", help="rewrite existing records")
    q.add_argument("--retrain", action="store_true",
                   help="for a run without a checkpoint: train it again from its config in a temporary folder and "
                        "keep the records only if every logged evaluation and per-step loss is reproduced")
    common(q)
    q.set_defaults(fn=cmd_backfill)
