"""`runs ...`, `train` and `job`: start, list, compare and regenerate runs; train in the foreground; execute a
queued job (what the pages start)."""

from __future__ import annotations

import argparse
import json

from kd_analysis.cli.args import whole_number
from kd_analysis.cli.common import Parser, add_root, creates_runs, print_result, reconciled_store
from kd_analysis.exceptions import KDLensError
from kd_analysis.models.specs import TASKS


def cmd_runs_list(args: argparse.Namespace) -> None:
    runs = [r.to_dict() for r in reconciled_store(args).list(kind=args.kind)]

    def line(r: dict) -> str:
        extra = f"  ({r['reason']})" if r["state"] == "damaged" else ""
        extra += f"  [{r['skipped_lines']} unreadable metrics lines skipped]" if r["skipped_lines"] else ""
        return f"{r['run_id']:<44} {r['kind']:<12} {r['state']:<10} step {r['steps']}{extra}"

    print_result(runs, args.json, lambda rs: "\n".join(line(r) for r in rs) or "no runs")


def cmd_runs_show(args: argparse.Namespace) -> None:
    record = reconciled_store(args).show(args.run_id)
    print_result(
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


def cmd_runs_balance(args: argparse.Namespace) -> None:
    from kd_analysis.training.balance import balance_report

    run = reconciled_store(args).get(args.run_id)
    report = balance_report(run.metrics(), run.config())

    def text(d: dict) -> str:
        if not d["monitored_steps"]:
            return f"{args.run_id}: no loss-balance data (made before the monitor, or with balance_every 0)"
        last = d["last"]
        lines = [f"{args.run_id}: {d['monitored_steps']} monitored steps; at step {last['step']}:"]
        for term, norm in sorted(last["grad_norms"].items()):
            w = d["weights"].get(term, 1.0)
            lines.append(f"  {term:<12} weight {w:<6g} ‖∂term/∂output‖ {norm:.3g}   weighted {w * norm:.3g}")
        lines.append(d["imbalance"]["message"] if d["imbalance"] else "balanced: no weighted term over 100x another")
        return "\n".join(lines)

    print_result(report, args.json, text)


def cmd_runs_cancel(args: argparse.Namespace) -> None:
    from kd_analysis.runs import RunStore, cancel_run

    state = cancel_run(RunStore(args.root), args.run_id)
    print_result({"run_id": args.run_id, "state": state}, args.json, lambda d: f"{d['run_id']}: {d['state']}")


def _train_config(args: argparse.Namespace):
    """--config FILE, --preset NAME, or a preset with FILE's settings on top."""
    from kd_analysis.training.config import TrainConfig
    from kd_analysis.training.presets import preset_config

    if args.preset:
        return preset_config(args.preset, args.config)
    if not args.config:
        raise KDLensError("give --config FILE or --preset NAME (see `presets list`)")
    return TrainConfig.load(args.config)


@creates_runs
def cmd_runs_start(args: argparse.Namespace) -> None:
    from kd_analysis.runs import start_run

    cfg = _train_config(args)
    if args.seeds is not None:
        from kd_analysis.evidence.groups import parse_seeds, start_group

        ids = start_group(cfg.to_dict(), parse_seeds(args.seeds), reconciled_store(args))
        group = reconciled_store(args).get(ids[0]).config()["group"]
        print_result({"group": group, "runs": ids}, args.json, lambda d: f"group {d['group']}: " + " ".join(d["runs"]))
        return
    run = start_run(cfg.to_dict(), reconciled_store(args), name=cfg.name)
    print_result({"run_id": run.run_id, "path": str(run.path)}, args.json, lambda d: d["run_id"])


@creates_runs
def cmd_runs_import(args: argparse.Namespace) -> None:
    from kd_analysis.integrations.evaluation import EvalSettings
    from kd_analysis.integrations.importer import import_trainer_folder

    store = reconciled_store(args)
    run_id = import_trainer_folder(
        args.folder,
        name=args.name or "",
        root=store.root,
        evaluate=args.evaluate,
        limit=args.limit,
        checkpoint=args.checkpoint,
        teacher=args.teacher,
        task=args.task,
        settings=EvalSettings(args.batch_size, args.max_length, args.max_new_tokens),
    )
    run = store.get(run_id)
    print_result(
        {"run_id": run_id, "path": str(run.path), "steps": run.summary().steps},
        args.json,
        lambda d: f"{d['run_id']} (step {d['steps']}): {d['path']}",
    )


def _add_import(runs_cmd) -> None:
    q = runs_cmd(
        "import",
        cmd_runs_import,
        "a transformers Trainer / TRL output folder as a run: its logged metrics, and with --evaluate kd-lens's "
        "per-example records of a checkpoint",
    )
    q.add_argument("folder", metavar="DIR", help="the Trainer's output_dir (holds trainer_state.json)")
    q.add_argument("--name", help="the run's name (default: the folder's)")
    q.add_argument("--evaluate", metavar="EXAMPLES", help="a data set (file, demo:NAME, hf:NAME) to write records on")
    q.add_argument("--limit", type=whole_number, help="the first N examples of --evaluate")
    q.add_argument(
        "--checkpoint", help="the weights to evaluate (default: the final model, else the newest checkpoint)"
    )
    q.add_argument("--teacher", help="a teacher (folder, built-in or hub id) to evaluate too: its records and KL")
    q.add_argument("--task", choices=list(TASKS), help="when the checkpoint's architecture does not say")
    q.add_argument("--batch-size", type=whole_number, default=8)
    q.add_argument("--max-length", type=whole_number, default=256)
    q.add_argument("--max-new-tokens", type=whole_number, default=48)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def cmd_runs_groups(args: argparse.Namespace) -> None:
    from kd_analysis.evidence.groups import list_groups

    rows = []
    for g in list_groups(reconciled_store(args)):
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

    print_result(
        rows,
        args.json,
        lambda rs: (
            "\n".join(line(r) for r in rs) or "no run groups (start one with `runs start --config FILE --seeds 0,1,2`)"
        ),
    )


def cmd_runs_compare(args: argparse.Namespace) -> None:
    from kd_analysis.evidence.groups import compare

    if args.a == args.b:
        raise KDLensError(f"compare two different runs or groups (got {args.a} twice)")
    _, out = compare(reconciled_store(args), args.a, args.b)
    print_result(out, args.json, lambda d: d["sentence"] + f"\n{d['test']}; interval: {d['interval_method']}")


def cmd_runs_gap(args: argparse.Namespace) -> None:
    from kd_analysis.evidence.groups import gap

    g = gap(reconciled_store(args), args.kd, args.ce)

    def text(d: dict) -> str:
        if d["value"] is None:
            return f"gap closed: {d['note']}"
        lo, hi = d["interval"]
        return (
            f"{args.kd} closes {d['value']:.0%} of the teacher–student gap over {args.ce} (95% interval "
            f"{lo:.0%} to {hi:.0%}; teacher {_pct(d['teacher'])}, CE-only {_pct(d['ce'])}, KD {_pct(d['kd'])}, "
            f"{d['n']} examples)" + (f"; {d['note']}" if d["note"] else "")
        )

    print_result(g.to_dict(), args.json, text)


def cmd_runs_agreement(args: argparse.Namespace) -> None:
    from kd_analysis.attribution.job import agreement_table
    from kd_analysis.runs import RunStore

    rows = agreement_table(RunStore(args.root))

    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}"

    print_result(
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


@creates_runs
def cmd_runs_make_reference(args: argparse.Namespace) -> None:
    from kd_analysis.demo.reference import make_reference
    from kd_analysis.exceptions import KDLensError
    from kd_analysis.locations import shipped_runs
    from kd_analysis.logs import to_stderr
    from kd_analysis.runs import RunStore
    from kd_analysis.training.plan_runner import default_jobs

    root = args.root or shipped_runs()  # the shipped folder itself, not the user's runs
    if root is None:
        raise KDLensError("no cached_runs/ folder beside this code: pass --root FOLDER for the reference runs")
    with to_stderr():  # one line per step as it starts and ends
        done = make_reference(RunStore(root), only=args.only, jobs=args.jobs or default_jobs())
    print_result(done, args.json, lambda d: "\n".join(d))


@creates_runs
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


def add_runs(sub) -> None:
    runs = sub.add_parser("runs", help="list and show run records (training, attribution, priming)")
    rsub = runs.add_subparsers(dest="action", required=True, parser_class=Parser)

    def runs_cmd(name: str, fn, help_text: str) -> argparse.ArgumentParser:
        q = rsub.add_parser(name, help=help_text)
        q.add_argument("--json", action="store_true")
        add_root(q)
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
        "balance",
        cmd_runs_balance,
        "the loss-balance monitor of a run: each term's gradient norm at the student's output, and a suggested weight",
    ).add_argument("run_id", metavar="RUN_ID")
    runs_cmd(
        "agreement",
        cmd_runs_agreement,
        "teacher-student attribution agreement of every finished rationales job (before / after distillation)",
    )
    _add_import(runs_cmd)
    make_ref = runs_cmd(
        "make-reference", cmd_runs_make_reference, "regenerate the demo's reference runs (about an hour on 2 CPU cores)"
    )
    make_ref.add_argument(
        "--only", nargs="*", help="run ids to regenerate, shell patterns allowed ('reference-mcl-*'; default: all)"
    )
    make_ref.add_argument(
        "--jobs",
        type=whole_number,
        default=None,
        help="steps run at a time, one process each (default: 2 on 2 or more cores)",
    )


def add_train(sub) -> None:
    tr = sub.add_parser(
        "train",
        help="run one distillation in the foreground, writing a run folder "
        "(works under `accelerate launch -m kd_analysis train`)",
    )
    tr.add_argument("--config", help="a TrainConfig as .json or .yaml (with --preset: settings to override)")
    tr.add_argument("--preset", help="start from a paper preset (see `presets list`)")
    tr.add_argument("--run-id", help="an existing queued run to execute (the page passes this)")
    add_root(tr)
    tr.set_defaults(fn=cmd_train)


def add_job(sub) -> None:
    job = sub.add_parser("job", help="execute a queued run of any kind (what the pages start in the background)")
    job.add_argument("--run-id", required=True)
    add_root(job)
    job.add_argument("--token", help="the run's identity token (start_run passes it; cancel checks it)")
    job.set_defaults(fn=cmd_job)
