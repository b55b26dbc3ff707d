"""CLI for error analysis: `errors matrix|examples|slices|save-slice|saved-slices|note|notes|explain|report|backfill`
(the workspace's functions)."""

from __future__ import annotations

import json

from kd_analysis.cli.args import whole_number
from kd_analysis.cli.common import Parser, add_root, print_result


def _store(args):
    from kd_analysis.runs import RunStore

    return RunStore(args.root)


def cmd_matrix(args) -> None:
    from kd_analysis.error_analysis.workspace import matrix

    out = matrix(_store(args), args.run_id, args.against)

    def text(d: dict) -> str:
        if "against" in d:
            return "\n".join(f"{k}: {v}" for k, v in d.items() if not isinstance(v, list))
        return (
            f"{d['examples']} examples · teacher {d['teacher_accuracy']:.1%} · student {d['student_accuracy']:.1%}\n"
            f"both right {d['both_right']} · teacher only {d['teacher_only']} · student only "
            f"{d['student_only']} · both wrong {d['both_wrong']}\n{d['test']}: p = {d['mcnemar_p']:.3g}"
        )

    print_result(out, args.json, text)


def cmd_examples(args) -> None:
    from kd_analysis.error_analysis.workspace import examples

    frame = examples(_store(args), args.run_id, args.slice, args.where, args.sort, args.limit)
    if args.json:
        print(frame.to_json(orient="records", force_ascii=False))
        return
    cols = [c for c in ("example_id", "cell", "teacher_p_gold", "student_p_gold", "kl", "text") if c in frame]
    print(frame[cols].to_string(index=False, max_colwidth=60) if len(frame) else "no examples")


def cmd_slices(args) -> None:
    from kd_analysis.error_analysis.workspace import slices

    rows = slices(_store(args), args.run_id, args.min_n)
    print_result(
        rows,
        args.json,
        lambda rs: (
            "\n".join(
                f"{r['name']:<40} n {r['n']:>4} · gap {r['gap']:+.1%} · adjusted p {r['adjusted_p']:.3g} · {r['expr']}"
                for r in rs
            )
            or "no slice with enough examples"
        ),
    )


def cmd_note(args) -> None:
    from kd_analysis.error_analysis.workspace import notes_store, run_data, run_records
    from kd_analysis.exceptions import KDLensError

    if not args.text and not args.tag:
        raise KDLensError("give the note's text, a --tag, or both (nothing was saved)")
    store = _store(args)
    data = run_data(store, args.run_id)
    known = set(run_records(store, args.run_id)["example_id"].astype(str))
    if args.example_id not in known:  # a typo would file a note nobody ever sees next to an example
        raise KDLensError(
            f"run {args.run_id} has no example {args.example_id!r} (its records hold {len(known)}; "
            "`errors examples` lists them); nothing was saved"
        )
    notes = notes_store(store)
    out: dict = {"data": data, "example_id": args.example_id}
    if args.text:
        out["note"] = notes.add_note(data, args.example_id, args.text, author=args.author).__dict__
    if args.tag:
        out["tags_added"] = notes.add_tags(data, args.example_id, args.tag, author=args.author)
    print_result(out, args.json, lambda d: json.dumps(d, default=str))


def cmd_notes(args) -> None:
    from kd_analysis.error_analysis.workspace import notes_store, run_data

    store = _store(args)
    data = run_data(store, args.run_id)
    notes = notes_store(store)
    out = {"data": data, "notes": [n.__dict__ for n in notes.notes(data=data)], "tags": notes.tags(data)}
    print_result(
        out,
        args.json,
        lambda d: (
            "\n".join(
                [f"{n['example_id']}: {n['text']} ({n['author'] or 'anonymous'}, {n['created']})" for n in d["notes"]]
                + [f"{ex}: tags {', '.join(t)}" for ex, t in d["tags"].items()]
            )
            or "no notes"
        ),
    )


def cmd_save_slice(args) -> None:
    from kd_analysis.error_analysis.workspace import notes_store, run_data
    from kd_analysis.exceptions import KDLensError

    store = _store(args)
    data = run_data(store, args.run_id)
    saved = notes_store(store).slices(data)
    if args.name in saved and not args.force:
        raise KDLensError(
            f"a slice {args.name!r} is already saved for {data} ({saved[args.name]}): pass --force to replace it"
        )
    notes_store(store).save_slice(data, args.name, args.where, author=args.author)
    print_result(
        {"data": data, "name": args.name, "expr": args.where},
        args.json,
        lambda d: f"saved slice {d['name']!r} for {d['data']} data: {d['expr']}",
    )


def cmd_saved_slices(args) -> None:
    from kd_analysis.error_analysis.workspace import notes_store, run_data

    store = _store(args)
    data = run_data(store, args.run_id)
    notes = notes_store(store)
    if args.delete:
        from kd_analysis.exceptions import KDLensError

        if not notes.delete_slice(data, args.delete):
            raise KDLensError(f"no saved slice {args.delete!r} for {data} data")
    out = {"data": data, "slices": notes.slices(data)}
    print_result(out, args.json, lambda d: "\n".join(f"{k}: {v}" for k, v in d["slices"].items()) or "no saved slices")


def cmd_explain(args) -> None:
    from kd_analysis.error_analysis.explain import explain

    found = explain(
        _store(args),
        args.run_id,
        args.example_ids,
        method=args.method,
        target=args.target,
        rebuild=args.rebuild,
        refresh=args.refresh,
        progress=None if args.json else lambda m: print(m, flush=True),
    )

    def text(rows: list) -> str:
        lines = []
        for e in rows:
            for role, attr in e["attributions"].items():
                top = sorted(attr["words"], key=lambda w: -abs(w["score"]))[:5]
                lines.append(
                    f"{e['example_id']} {role}: answer {attr['predicted_label']!r}, strongest words "
                    + ", ".join(f"{w['text']} ({w['score']:+.3g})" for w in top)
                )
        return "\n".join(lines)

    print_result([e.to_dict() for e in found], args.json, text)


def cmd_report(args) -> None:
    from kd_analysis.error_analysis.report import write_report
    from kd_analysis.error_analysis.slices import Slice
    from kd_analysis.error_analysis.workspace import notes_store, run_data
    from kd_analysis.exceptions import KDLensError
    from kd_analysis.fileio import writable_target

    writable_target(args.out, args.force)
    store = _store(args)
    chosen = None
    if args.slice:
        saved = notes_store(store).slices(run_data(store, args.run_id))
        missing = [n for n in args.slice if n not in saved]
        if missing:
            raise KDLensError(
                f"no saved slice {missing[0]!r}; saved: {', '.join(saved) or 'none'} "
                "(save one with `errors save-slice`)"
            )
        chosen = [Slice(n, saved[n]) for n in args.slice]
    result = write_report(
        store, args.run_id, args.out, against=args.against, pins=args.pin or [], slices=chosen, min_n=args.min_n
    )
    print_result(
        result.to_dict(),
        args.json,
        lambda d: (
            f"wrote {d['path']} ({d['bytes'] / 1e6:.1f} MB, {d['seconds']:.1f} s): {d['examples']} examples, "
            f"{d['findings']} slice-finder rows, {len(d['slices'])} chosen slices, {len(d['pinned'])} pinned "
            f"({len(d['explained'])} with attributions)"
        ),
    )


def cmd_backfill(args) -> None:
    from kd_analysis.error_analysis.backfill import backfill_run

    store = _store(args)
    done = [backfill_run(store, rid, force=args.force, retrain=args.retrain).to_dict() for rid in args.run_ids]
    print_result(done, args.json, lambda rs: "\n".join(json.dumps(r, default=str) for r in rs))


def _command(esub, name: str, fn, summary: str, run_id: bool = True):
    """One `errors` subcommand: its function, `--json`, `--root`, and the RUN_ID most of them take."""
    q = esub.add_parser(name, help=summary)
    if run_id:
        q.add_argument("run_id", metavar="RUN_ID")
    q.add_argument("--json", action="store_true")
    add_root(q)
    q.set_defaults(fn=fn)
    return q


def _add_browse(esub) -> None:
    """matrix, examples, slices: what the Error analysis page shows."""
    q = _command(
        esub,
        "matrix",
        cmd_matrix,
        "teacher/student right-wrong matrix with an exact McNemar test, or the "
        "examples a second run fixed and broke (--against)",
    )
    q.add_argument("--against", metavar="RUN_ID", help="compare this run's student with another run's")
    q = _command(esub, "examples", cmd_examples, "the examples of one cell, filtered and sorted")
    q.add_argument(
        "--slice", default="all", choices=["teacher_only", "student_only", "both_right", "both_wrong", "all"]
    )
    q.add_argument("--where", metavar="EXPR", help='a filter such as "kl > 0.5 and text_tokens < 40"')
    q.add_argument("--sort", metavar="COLUMN")
    q.add_argument("--limit", type=whole_number)
    q = _command(esub, "slices", cmd_slices, "slice finder: slices ranked by the teacher-student gap (BH-adjusted p)")
    q.add_argument("--min-n", type=whole_number, default=10, help="smallest slice to consider")


def _add_notes(esub) -> None:
    """note, notes, save-slice, saved-slices: what is kept per data set."""
    q = _command(esub, "note", cmd_note, "add a note and/or tags to an example (kept per data set, across runs)")
    q.add_argument("example_id", metavar="EXAMPLE_ID")
    q.add_argument("--text")
    q.add_argument("--tag", action="append")
    q.add_argument("--author")
    _command(esub, "notes", cmd_notes, "the notes and tags of the run's data set")
    q = _command(
        esub, "save-slice", cmd_save_slice, "save a filter under a name for the run's data set (reports show it)"
    )
    q.add_argument("name", metavar="NAME")
    q.add_argument("--where", metavar="EXPR", required=True, help='the filter, e.g. "kl > 1.1"')
    q.add_argument("--author")
    q.add_argument("--force", action="store_true", help="replace a saved slice of the same name")
    q = _command(esub, "saved-slices", cmd_saved_slices, "the saved slices of the run's data set")
    q.add_argument("--delete", metavar="NAME", help="delete this saved slice first")


def _add_explain_and_report(esub) -> None:
    """explain, report, backfill."""
    q = _command(
        esub,
        "explain",
        cmd_explain,
        "both models' attributions over examples (and, for generation, the gold "
        "answer's token log-probabilities); cached in the run folder",
    )
    q.add_argument("example_ids", metavar="EXAMPLE_ID", nargs="+")
    q.add_argument("--method", default="input_x_gradient", help="an attribution method of the registry")
    q.add_argument(
        "--target",
        default="predicted",
        choices=["predicted", "gold"],
        help="explain each model's own answer (default) or the gold answer",
    )
    q.add_argument(
        "--rebuild",
        action="store_true",
        help="for a run that kept no weights: retrain it from its config first and keep the weights "
        "only if every logged evaluation and loss is reproduced",
    )
    q.add_argument("--refresh", action="store_true", help="recompute cached explanations")
    q = _command(
        esub,
        "report",
        cmd_report,
        "a self-contained HTML report (opens offline): matrix, slice finder, "
        "saved slices, pinned examples with notes and attributions",
    )
    q.add_argument("--out", required=True, metavar="FILE")
    q.add_argument("--force", action="store_true", help="overwrite --out when it exists")
    q.add_argument("--against", metavar="RUN_ID", help="compare this run's student with another run's")
    q.add_argument("--pin", action="append", metavar="EXAMPLE_ID", help="an example to show in full (repeat)")
    q.add_argument(
        "--slice",
        action="append",
        metavar="NAME",
        help="a saved slice to include (repeat; default: every saved slice of the data set)",
    )
    q.add_argument("--min-n", type=whole_number, default=10, help="smallest slice the slice finder considers")
    q = _command(
        esub,
        "backfill",
        cmd_backfill,
        "write per-example records for finished runs trained before records "
        "existed (checked against each run's own final metric)",
        run_id=False,
    )
    q.add_argument("run_ids", metavar="RUN_ID", nargs="+")
    q.add_argument("--force", action="store_true", help="rewrite existing records")
    q.add_argument(
        "--retrain",
        action="store_true",
        help="for a run without a checkpoint: train it again from its config in a temporary folder and "
        "keep the records only if every logged evaluation and per-step loss is reproduced",
    )


def add_errors(sub) -> None:
    err = sub.add_parser(
        "errors", help="error analysis: where the student fails and the teacher did not, slices, notes and tags"
    )
    esub = err.add_subparsers(dest="action", required=True, parser_class=Parser)
    _add_browse(esub)
    _add_notes(esub)
    _add_explain_and_report(esub)
