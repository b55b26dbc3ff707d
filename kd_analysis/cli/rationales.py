"""`rationales`: teacher attributions, top-k rationales and their overlap with the gold answer."""

from __future__ import annotations

import argparse
import json

from kd_analysis.cli.args import whole_number
from kd_analysis.cli.common import add_data, print_result


def cmd_rationales(args: argparse.Namespace) -> None:
    from kd_analysis.attribution import aggregate, select_rationale
    from kd_analysis.attribution.report import analyse_rationales, data_kind, paper_reference, with_intervals
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.fileio import atomic_write_text
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec
    from kd_analysis.truncation import check_cap

    check_cap(args.max_tokens)
    if args.out:
        from kd_analysis.fileio import writable_target

        writable_target(args.out, args.force)
    examples = load_dataset(args.data).examples[args.start : args.start + args.limit]
    opts = dict(task=args.task, trust_remote_code=args.trust_remote_code, force_memory=args.force)
    models = {"teacher": ModelSpec(args.teacher, **opts)}
    if args.student:
        models["student"] = ModelSpec(args.student, **opts)
    # the paper's 68% measures "any" overlap of the teacher's tokens on multiple-choice data: only there is it shown
    ref = paper_reference("any", data_kind(examples))
    report: dict = {
        "method": args.method,
        "k": args.k,
        "examples": len(examples),
        "paper_overlap": ref.value,
        "paper_comparable": ref.comparable,
        "paper_note": ref.caption,
        "max_tokens": args.max_tokens,
        "truncated": {},
        "truncation_notes": [],
    }
    loaded = {role: load_model(spec) for role, spec in models.items()}
    result = analyse_rationales(  # what the page's rationales job runs
        loaded["teacher"],
        examples,
        student=loaded.get("student"),
        method=args.method,
        k=args.k,
        target=args.target,
        steps=args.steps,
        max_tokens=args.max_tokens,
    )
    lines = []
    for role in models:
        attrs = result.teacher if role == "teacher" else result.student
        report["truncated"][role] = sum(a.truncated for a in attrs)  # inputs cut from the left of the question
        report["truncation_notes"] += [
            {"role": role, "example": a.example_id, "note": "; ".join(a.notes)} for a in attrs if a.truncated
        ]
        for a in attrs:
            r = select_rationale(a, args.k)
            lines.append(json.dumps({"role": role, **a.to_dict(), "rationale": r.text, "rationale_indices": r.indices}))
        rows = with_intervals(aggregate(attrs, ks=sorted({1, 3, args.k, 10})), attrs)
        report[role] = next(r for r in rows if r["group"] == "all" and r["k"] == args.k)
        report[f"{role}_by_k"] = rows

    if args.out:
        atomic_write_text(args.out, "\n".join(lines) + "\n")
    print_result(report, args.json, lambda d: _rationales_text(d, list(models), ref.comparable, ref.caption))


def _rationales_text(d: dict, roles: list[str], comparable: bool, caption: str) -> str:
    """The `rationales` report for a terminal: per model, each overlap definition with its interval and chance."""
    from kd_analysis.attribution import DEFINITIONS

    def interval(row, df) -> str:
        low, high = row[f"{df} 95% low"], row[f"{df} 95% high"]
        return "" if low is None else f" [{low:.3f}, {high:.3f}]"

    notes = d["truncation_notes"]
    return "\n".join(
        [
            f"{d['examples']} examples, method {d['method']}, k = {d['k']}; 95% intervals in brackets (Wilson for any, "
            "t for the others), over the defined examples"
        ]
        + [
            f"{role}: defined (n) {d[role]['defined']}, undefined {d[role]['undefined']}; "
            + ", ".join(
                f"{df} {d[role][df]:.3f}{interval(d[role], df)} (chance {d[role]['chance ' + df]:.3f})"
                if d[role][df] is not None
                else f"{df} n/a"
                for df in DEFINITIONS
            )
            for role in roles
        ]
        + [("paper reference (teacher, any): " if comparable else "no paper figure: ") + caption]
        + [
            f"{role}: {n} of {d['examples']} inputs cut to fit the token limit (--max-tokens {d['max_tokens']})"
            for role, n in d["truncated"].items()
            if n
        ]
        + [f"  {t['role']}, example {t['example']}: {t['note']}" for t in notes[:10]]
        + ([f"  ... and {len(notes) - 10} more cut inputs (see --json or --out)"] if len(notes) > 10 else [])
    )


def add_rationales(sub) -> None:
    rat = sub.add_parser("rationales", help="teacher attributions, top-k rationales and gold-answer overlap")
    rat.add_argument("--teacher", required=True)
    rat.add_argument("--student", help="also attribute this model on the same examples")
    add_data(rat, required=True)
    rat.add_argument("--method", default="ig", help="ig, saliency, input_x_gradient, occlusion, attention, rollout")
    rat.add_argument("--k", type=whole_number, default=5)
    rat.add_argument(
        "--target",
        default="predicted",
        choices=["predicted", "gold"],
        help="explain the model's own answer (what the paper attributes; default) or the gold answer",
    )
    rat.add_argument("--steps", type=whole_number, default=32, help="integrated-gradients steps")
    rat.add_argument(
        "--max-tokens",
        type=whole_number,
        default=512,
        help="cap on input tokens (the model's own maximum applies when smaller); a longer input "
        "loses the start of its question, never its choices or answer cue, and is reported",
    )
    rat.add_argument("--limit", type=whole_number, default=50)
    rat.add_argument("--start", type=whole_number, default=0)
    rat.add_argument("--out", help="write one JSON line per example and model here")
    rat.add_argument("--task", choices=["classification", "multiple_choice", "causal_lm", "seq2seq"])
    rat.add_argument("--trust-remote-code", action="store_true")
    rat.add_argument(
        "--force", action="store_true", help="overwrite --out; load even when the memory estimate exceeds free memory"
    )
    rat.add_argument("--json", action="store_true")
    rat.set_defaults(fn=cmd_rationales)
