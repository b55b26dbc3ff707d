"""`data inspect|demo`: what a data source holds, and the built-in demo sets."""

from __future__ import annotations

import argparse

from kd_analysis.cli.common import Parser, print_result


def _mapping(args: argparse.Namespace):
    from kd_analysis.data.loaders import ColumnMapping

    return ColumnMapping(text=args.text_col, label=args.label_col, choices=args.choices_col, answer=args.answer_col)


def cmd_data_inspect(args: argparse.Namespace) -> None:
    from kd_analysis.data.inspect import inspect_data

    report = inspect_data(args.file, mapping=_mapping(args), encoding=args.encoding).to_dict()
    if not args.preview:
        report.pop("preview")
    print_result(report, args.json, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items() if k != "preview"))


def cmd_data_demo(args: argparse.Namespace) -> None:
    from kd_analysis.data.demo import DEMO_SETS
    from kd_analysis.data.sources import write_demo

    if not args.name:
        rows = [
            {"name": d.name, "title": d.title, "format": d.format, "description": d.description}
            for d in DEMO_SETS.values()
        ]
        print_result(
            rows, args.json, lambda rs: "\n".join(f"demo:{r['name']:<12} {r['format']:<14} {r['title']}" for r in rs)
        )
        return
    from kd_analysis.fileio import writable_target

    suffix = DEMO_SETS[args.name].suffix if args.name in DEMO_SETS else ".jsonl"
    print(write_demo(args.name, writable_target(args.out or f"{args.name}{suffix}", args.force)))


def add_data(sub) -> None:
    data = sub.add_parser("data", help="inspect data files and write the built-in demo sets")
    dsub = data.add_subparsers(dest="action", required=True, parser_class=Parser)
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
    d_demo.add_argument("--force", action="store_true", help="overwrite --out when it exists")
    d_demo.add_argument("--json", action="store_true")
    d_demo.set_defaults(fn=cmd_data_demo)
