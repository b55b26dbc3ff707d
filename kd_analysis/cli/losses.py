"""`losses toy|pair`: the toy fit of every loss, and every loss on a real batch of a teacher/student pair."""

from __future__ import annotations

import argparse

from kd_analysis.cli.args import number, whole_number
from kd_analysis.cli.common import Parser, add_data, print_result
from kd_analysis.cli.models import pair_opts, pair_specs
from kd_analysis.exceptions import KDLensError


def cmd_losses_toy(args: argparse.Namespace) -> None:
    from kd_analysis.loss_explorer.toy import ToyConfig, fit_toy
    from kd_analysis.losses import LOSSES

    params = {}
    for item in args.param or []:
        name, _, value = item.partition("=")
        try:
            params[name.strip()] = float(value)
        except ValueError:
            raise KDLensError(f"--param takes NAME=NUMBER (got {item!r})") from None
    known = {p.name for spec in LOSSES.values() for p in spec.params}
    unknown = sorted(set(params) - known)
    if unknown:
        raise KDLensError(f"unknown loss parameter {unknown[0]!r}; one of {', '.join(sorted(known))}")
    from kd_analysis.training.config import check_loss_params

    for name, spec in LOSSES.items():  # the ranges a config and the form keep to (iters 1e8 hung the toy)
        mine = {p.name: params[p.name] for p in spec.params if p.name in params}
        check_loss_params(
            name, {k: int(v) if isinstance(spec.defaults()[k], int) and v == int(v) else v for k, v in mine.items()}
        )
    losses = tuple(args.only) if args.only else tuple(LOSSES)
    bad = [n for n in losses if n not in LOSSES]
    if bad:
        raise KDLensError(f"unknown loss {bad[0]!r}; one of {', '.join(LOSSES)}")
    cfg = ToyConfig(tau=args.tau, eps=args.eps, alpha=args.alpha, steps=args.steps, params=params, losses=losses)
    res = fit_toy(cfg).to_dict()
    if not args.snapshots:
        for fit in res["fits"].values():
            fit.pop("snapshots")
    print_result(
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
    from kd_analysis.loss_explorer.real_pair import ExplorerSettings, explore_pair
    from kd_analysis.models.pairs_loading import load_pair

    teacher_spec, student_spec = pair_specs(args)
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
    print_result(
        out,
        args.json,
        lambda d: "\n".join(
            [f"{len(d['example_ids'])} examples ({d['kind']})"]
            + [f"{k:<10} value {v:10.4g}   grad norm {d['grad_norms'][k]:10.4g}" for k, v in d["values"].items()]
        ),
    )


def add_losses(sub) -> None:
    losses = sub.add_parser("losses", help="compare KL, RKL, JS, TVD, skew KL and Sinkhorn (SinKD)")
    lsub = losses.add_subparsers(dest="action", required=True, parser_class=Parser)
    l_toy = lsub.add_parser("toy", help="fit a one-bump student to a multimodal teacher under each loss")
    l_toy.add_argument("--tau", type=number, default=1.0)
    l_toy.add_argument("--eps", type=number, default=0.05)
    l_toy.add_argument("--alpha", type=number, default=0.1)
    l_toy.add_argument(
        "--steps",
        type=whole_number,
        default=200,
        help="the most Newton iterations per fit (it stops earlier once converged)",
    )
    l_toy.add_argument("--snapshots", action="store_true", help="include the student's distribution along the path")
    l_toy.add_argument(
        "--param", action="append", metavar="NAME=VALUE", help="a loss parameter, e.g. ab_alpha=0.3 (repeatable)"
    )
    l_toy.add_argument("--only", nargs="+", metavar="LOSS", help="fit only these losses (default: every one)")
    l_toy.add_argument("--json", action="store_true")
    l_toy.set_defaults(fn=cmd_losses_toy)
    l_pair = lsub.add_parser("pair", help="every loss, gradient norms and the transport plan on a real batch")
    pair_opts(l_pair)
    add_data(l_pair, required=True)
    l_pair.add_argument("--batch", type=whole_number, default=16)
    l_pair.add_argument("--start", type=whole_number, default=0, help="index of the first example")
    l_pair.add_argument("--tau", type=number, default=2.0)
    l_pair.add_argument("--eps", type=number, default=0.1)
    l_pair.add_argument("--iters", type=whole_number, default=20)
    l_pair.set_defaults(fn=cmd_losses_pair)
