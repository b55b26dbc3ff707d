"""CLI for response priming and attention heads: `prime outputs|start|table` and `attention stats|view`."""

from __future__ import annotations

import sys
from functools import partial

from kd_analysis.cli.args import number, whole_number
from kd_analysis.cli.common import Parser, add_data, add_root, creates_runs, print_result
from kd_analysis.exceptions import KDLensError


def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:.1%}" if pct else f"{v:.3f}"


def _templates(args) -> dict[str, str]:
    from kd_analysis.prompting.strategies import STRATEGIES

    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown:
        raise KDLensError(f"unknown strategy {unknown[0]!r}; one of {', '.join(STRATEGIES)}")
    templates = {s: STRATEGIES[s].template for s in names}
    for item in args.template or []:
        name, _, text = item.partition("=")
        if name not in templates:
            raise KDLensError(f"--template {name}=...: {name!r} is not among --strategies")
        templates[name] = text.replace("\\n", "\n")
    return templates


@creates_runs
def cmd_prime_outputs(args) -> None:
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.fileio import writable_target
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec
    from kd_analysis.priming.teacher import summarise, teacher_outputs, to_jsonl
    from kd_analysis.prompting.prompts import check_template

    if args.out:
        writable_target(args.out, args.force)

    templates = _templates(args)
    for t in templates.values():
        check_template(t)
    spec = ModelSpec(args.teacher, task="causal_lm", trust_remote_code=args.trust_remote_code, force_memory=args.force)
    if args.save:  # a saved job, as the page's "Compute in the background": it reopens on the page
        from kd_analysis.priming.job import KIND, load_outputs_run, outputs_config
        from kd_analysis.runs import RunStore
        from kd_analysis.training.worker import run_one

        store = RunStore(args.root)
        run = store.create(
            KIND,
            outputs_config(
                spec.to_dict(),
                args.data,
                templates,
                limit=args.limit,
                generate=args.generate,
                max_new_tokens=args.max_new_tokens,
                batch_size=args.batch_size,
            ),
        )
        print(
            f"job {run.run_id} in {store.root} (it waits for any other run on the same device; Ctrl-C cancels)",
            file=sys.stderr,
        )
        run_one(run, store)
        if run.status().get("state") != "finished":
            raise KDLensError(f"job {run.run_id} {run.status().get('state')}: {run.status().get('reason')}")
        outs = load_outputs_run(run)
    else:
        examples = load_dataset(args.data).examples[: args.limit]
        outs = teacher_outputs(
            load_model(spec),
            examples,
            templates,
            generate=args.generate,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
        )
    if args.out:
        from kd_analysis.fileio import atomic_write_text

        atomic_write_text(args.out, to_jsonl(outs))
    rows = summarise(outs)
    print_result(
        rows,
        args.json,
        lambda rs: "\n".join(
            f"{r['strategy']:<12} gold log-prob/token {_fmt(r['gold log-prob / token'])}"
            + (
                f" · accuracy {_fmt(r['accuracy'], True)} ({r['unparseable']} unparseable)"
                if r["accuracy"] is not None
                else ""
            )
            for r in rs
        ),
    )


@creates_runs
def cmd_prime_start(args) -> None:
    from kd_analysis.models.specs import StudentSpec
    from kd_analysis.priming.experiment import priming_base_config, strategy_configs
    from kd_analysis.runs import RunStore, start_run
    from kd_analysis.training.config import TrainConfig

    if args.config:
        base = TrainConfig.load(args.config)
    else:
        base = priming_base_config(
            args.teacher,
            args.data,
            StudentSpec(num_layers=args.student_layers),
            steps=args.steps,
            lr=args.lr,
            name=args.name or "",
        )
    store = RunStore(args.root)
    ids = [
        start_run(cfg.to_dict(), store, name=cfg.name).run_id
        for cfg in strategy_configs(base, list(_templates(args)), _templates(args), alignment=args.alignment)
    ]
    print_result(
        ids,
        args.json,
        lambda d: (
            f"started {len(d)} runs, one student per strategy (--strategies picks fewer); each runs in the "
            "background and they take the device one at a time (`runs list` shows them):\n" + "\n".join(d)
        ),
    )


def cmd_prime_table(args) -> None:
    from kd_analysis.priming.experiment import PAPER_SETUP, accuracy_table, paper_reference, priming_runs
    from kd_analysis.runs import RunStore

    if args.paper:  # the paper's numbers: their own table, never mixed into ours
        print_result(
            paper_reference(),
            args.json,
            lambda rs: "\n".join(
                [f"Paper reference, not comparable with our runs: {PAPER_SETUP}"]
                + [
                    f"{r['paper name']:<36} {_fmt(r['GSM8K accuracy'], True)} [{_fmt(r['95% low'], True)}, "
                    f"{_fmt(r['95% high'], True)}] · ours: {r['strategy'] or '-'} · {r['note']}"
                    for r in rs
                ]
            ),
        )
        return
    store = RunStore(args.root)
    rows = accuracy_table(store, args.runs or priming_runs(store))
    print_result(
        rows,
        args.json,
        lambda rs: (
            "\n".join(
                [
                    f"{r['strategy']:<12} student {_fmt(r['student exact match'], True)} "
                    f"[{_fmt(r['95% low'], True)}, {_fmt(r['95% high'], True)}] n = {r['eval questions'] or 'n/a'}"
                    f" (before {_fmt(r['student before'], True)})"
                    f" · answer NLL {_fmt(r['student answer NLL'])} (before {_fmt(r['NLL before'])})"
                    f" · teacher {_fmt(r['teacher exact match'], True)} · gain vs none {r['gain vs none note']} · {r['run']}"
                    for r in rs
                ]
                + [
                    "(95% Wilson intervals; gain vs none only where the two intervals do not overlap. The paper's GSM8K "
                    "numbers: prime table --paper)"
                ]
            )
            if rs
            else "no priming runs"
        ),
    )


def _attention_models(args) -> list[dict]:
    from kd_analysis.models.specs import ModelSpec

    models = [{"label": r, "run": r} for r in args.run or []]
    for item in args.model or []:
        label, _, source = item.rpartition("=")
        models.append({"label": label or source, "spec": ModelSpec(source, task="causal_lm").to_dict()})
    if not models:
        raise KDLensError("give at least one --run RUN_ID or --model [LABEL=]SOURCE")
    return models


def cmd_attention_stats(args) -> None:
    from kd_analysis.attention.compare import layer_profile, rank_heads
    from kd_analysis.attention.job import load_labelled
    from kd_analysis.attention.stats import STATS, head_stats
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.prompting.prompts import student_prompt
    from kd_analysis.runs import RunStore
    from kd_analysis.truncation import check_cap

    if args.stat not in STATS:
        raise KDLensError(f"--stat must be one of {', '.join(STATS)}")
    check_cap(args.max_tokens)
    store = RunStore(args.root)
    examples = load_dataset(args.data).examples[: args.limit]
    results = []
    for entry in _attention_models(args):
        loaded = load_labelled(entry, store)
        results.append(
            head_stats(
                loaded,
                examples,
                partial(student_prompt, loaded.tokenizer),
                label=entry["label"],
                max_tokens=args.max_tokens,
            )
        )
    report = {
        "stat": args.stat,
        "examples": len(examples),
        "profiles": {
            s.label: [None if v != v else round(float(v), 4) for v in layer_profile(s, args.stat)] for s in results
        },
        "top_heads": rank_heads(results, args.stat, args.top) if len(results) > 1 else [],
        "max_tokens": args.max_tokens,
        "truncated": {s.label: s.truncated for s in results},  # examples cut from the left of the question
        "notes": {s.label: s.notes for s in results},
        "stats": [s.to_dict() for s in results] if args.full else None,
    }
    print_result(
        report,
        args.json,
        lambda d: "\n".join(
            [f"{STATS[d['stat']]} per layer (mean over heads), {d['examples']} examples:"]
            + [f"  {label}: " + " ".join(_fmt(v) for v in prof) for label, prof in d["profiles"].items()]
            + (
                ["heads that vary most across models:"]
                + [f"  L{h['layer']} H{h['head']}: var {h['variance']:.2e}" for h in d["top_heads"]]
                if d["top_heads"]
                else []
            )
            + [
                f"{label}: {n} of {d['examples']} examples cut to fit the token limit (--max-tokens {d['max_tokens']})"
                for label, n in d["truncated"].items()
                if n
            ]
            + [f"note ({label}): {note}" for label, notes in d["notes"].items() for note in notes]
        ),
    )


def cmd_attention_view(args) -> None:
    from kd_analysis.attention.job import load_labelled
    from kd_analysis.attention.views import attention_view, example_attentions
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.fileio import atomic_write_text, writable_target
    from kd_analysis.prompting.prompts import student_prompt
    from kd_analysis.runs import RunStore

    writable_target(args.out, args.force)
    [entry] = _attention_models(args)[:1]
    loaded = load_labelled(entry, RunStore(args.root))
    examples = load_dataset(args.data).examples
    if not 0 <= args.example < len(examples):
        raise KDLensError(f"--example must be in 0..{len(examples) - 1}")
    att, tokens = example_attentions(loaded, student_prompt(loaded.tokenizer, examples[args.example]), args.max_tokens)
    html, notes = attention_view(att, tokens, kind=args.kind, max_tokens=args.max_tokens)
    atomic_write_text(args.out, f"<!doctype html><meta charset='utf-8'><body>{html}</body>")
    print_result(
        {"out": args.out, "tokens": len(tokens), "layers": len(att), "notes": notes},
        args.json,
        lambda d: (
            f"wrote {d['out']} ({d['layers']} layers, {d['tokens']} tokens)"
            + "".join(f"\nnote: {n}" for n in d["notes"])
        ),
    )


def _strategy_options(q) -> None:
    q.add_argument(
        "--strategies",
        default="none,teacher,ai_to_ai,confidence,gold,cot",
        help="comma-separated strategy names (default: all six; `prime start` starts one run per strategy)",
    )
    q.add_argument(
        "--template",
        action="append",
        metavar="NAME=TEXT",
        help="replace a strategy's template (needs {question}; \\n for new lines)",
    )
    q.add_argument("--json", action="store_true")


def _add_prime_outputs(psub) -> None:
    out = psub.add_parser("outputs", help="the teacher's gold-answer scores (and answers) per strategy, cached")
    out.add_argument("--teacher", required=True)
    add_data(out, required=True)
    out.add_argument("--limit", type=whole_number, default=50)
    out.add_argument("--generate", action="store_true", help="also generate answers and score them")
    out.add_argument("--max-new-tokens", type=whole_number, default=96)
    out.add_argument("--batch-size", type=whole_number, default=8)
    out.add_argument("--out", help="write one JSON line per example and strategy")
    out.add_argument("--trust-remote-code", action="store_true")
    out.add_argument(
        "--force", action="store_true", help="overwrite --out; load even when the memory estimate exceeds free memory"
    )
    out.add_argument("--save", action="store_true", help="save as a job in the run store (reopens on the page)")
    out.add_argument("--root", help="run store folder (with --save)")
    _strategy_options(out)
    out.set_defaults(fn=cmd_prime_outputs)


def _add_prime_start(psub) -> None:
    start = psub.add_parser("start", help="start one LoRA student run per strategy in the background")
    start.add_argument("--config", help="a base TrainConfig (.json/.yaml); else the options below")
    start.add_argument("--teacher", default="smollm2-135m-instruct")
    add_data(start, default="demo:arithmetic")
    start.add_argument("--student-layers", type=whole_number, default=10)
    start.add_argument("--steps", type=whole_number, default=100)
    start.add_argument("--lr", type=number, default=2e-4)
    start.add_argument("--name")
    start.add_argument(
        "--alignment",
        choices=["answer", "paper"],
        default="answer",
        help="answer (ours): teacher forced on the gold answer after its prompt, compared on the same "
        "answer tokens; paper (Goyal et al.'s code): prompt + question vs question, position by "
        "position, cut to one length",
    )
    add_root(start)
    _strategy_options(start)
    start.set_defaults(fn=cmd_prime_start)


def _add_prime_table(psub) -> None:
    table = psub.add_parser(
        "table", help="student accuracy per strategy and gain over unprompted KD (where the intervals support one)"
    )
    table.add_argument("--runs", nargs="*", help="run ids (default: every priming run)")
    table.add_argument("--root")
    table.add_argument(
        "--paper",
        action="store_true",
        help="print the paper's GSM8K reference table instead (another scale: never beside ours)",
    )
    table.add_argument("--json", action="store_true")
    table.set_defaults(fn=cmd_prime_table)


def _model_options(q) -> None:
    q.add_argument("--run", action="append", help="a finished run whose student to read (repeat per strategy)")
    q.add_argument("--model", action="append", metavar="[LABEL=]SOURCE", help="a model to read")
    add_data(q, required=True)
    add_root(q)
    q.add_argument("--json", action="store_true")


def add_attention(sub) -> None:
    """`attention stats` and `attention view`."""
    att = sub.add_parser("attention", help="attention-head statistics per model / strategy, offline bertviz views")
    asub = att.add_subparsers(dest="action", required=True, parser_class=Parser)

    stats = asub.add_parser(
        "stats", help="per layer x head statistics with 95%% intervals; heads ranked by variance across models"
    )
    _model_options(stats)
    stats.add_argument("--limit", type=whole_number, default=200)
    stats.add_argument("--stat", default="entropy")
    stats.add_argument("--top", type=whole_number, default=10)
    stats.add_argument(
        "--max-tokens",
        type=whole_number,
        default=512,
        help="cap on input tokens (the model's own maximum applies when smaller); a longer prompt "
        "loses the start of its question, never its answer cue, and is reported",
    )
    stats.add_argument("--full", action="store_true", help="include every head's mean and interval")
    stats.set_defaults(fn=cmd_attention_stats)

    view = asub.add_parser("view", help="write an offline bertviz head or model view as one HTML file")
    _model_options(view)
    view.add_argument("--example", type=whole_number, default=0)
    view.add_argument("--kind", choices=["head", "model"], default="head")
    view.add_argument("--max-tokens", type=whole_number, default=64)
    view.add_argument("--out", required=True)
    view.add_argument("--force", action="store_true", help="overwrite --out when it exists")
    view.set_defaults(fn=cmd_attention_view)


def add_priming(sub) -> None:
    """`prime outputs|start|table`, and `attention`."""
    prime = sub.add_parser(
        "prime", help="response priming: teacher outputs per strategy, per-strategy student runs, accuracy table"
    )
    psub = prime.add_subparsers(dest="action", required=True, parser_class=Parser)
    _add_prime_outputs(psub)
    _add_prime_start(psub)
    _add_prime_table(psub)
    add_attention(sub)
