"""`story` and `presets list|show`: the demo's story as one HTML file; the papers' presets as configs."""

from __future__ import annotations

import argparse
import json

from kd_analysis.cli.common import Parser, add_root, print_result, reconciled_store


def cmd_story(args: argparse.Namespace) -> None:
    from kd_analysis.demo.story import write_story
    from kd_analysis.fileio import writable_target

    out = write_story(writable_target(args.out, args.force), reconciled_store(args))
    print_result(
        out,
        args.json,
        lambda d: (
            f"{d['path']}: {d['bytes'] / 1e6:.1f} MB, {len(d['sections'])} sections in "
            f"{d['seconds']} s" + (f" (not available: {', '.join(d['missing'])})" if d["missing"] else "")
        ),
    )


def cmd_presets_list(args: argparse.Namespace) -> None:
    from kd_analysis.training.presets import PRESETS

    rows = [p.to_dict() for p in PRESETS.values()]
    print_result(rows, args.json, lambda rs: "\n".join(f"{r['name']:<20} [{r['label']}] {r['title']}" for r in rs))


def cmd_presets_show(args: argparse.Namespace) -> None:
    from kd_analysis.training.presets import get_preset

    preset = get_preset(args.name)
    cfg = preset.config().to_dict()
    if args.json:
        print(json.dumps(cfg, indent=2, default=str))
        return
    from kd_analysis.schema import dump_yaml

    print(f"# {preset.title} [{preset.label}]\n# source: {preset.source}")
    for d in preset.differences:
        print(f"# differs: {d}")
    print(dump_yaml(cfg), end="")  # `presets show X > my.yaml` is read back as written


def add_story(sub) -> None:
    story = sub.add_parser("story", help="the demo's story (the Summary page) as one self-contained HTML file")
    story.add_argument("--out", default="story.html", help="the HTML file to write (default: story.html)")
    story.add_argument("--force", action="store_true", help="overwrite --out when it exists")
    add_root(story)
    story.add_argument("--json", action="store_true")
    story.set_defaults(fn=cmd_story)


def add_presets(sub) -> None:
    presets = sub.add_parser("presets", help="paper presets: the papers' losses, optimisers and schedules as configs")
    psub = presets.add_subparsers(dest="action", required=True, parser_class=Parser)
    p_list = psub.add_parser("list", help="every preset with its label (as in the paper / our reading / default)")
    p_list.add_argument("--json", action="store_true")
    p_list.set_defaults(fn=cmd_presets_list)
    p_show = psub.add_parser("show", help="one preset's full TrainConfig, its source and what differs from the paper")
    p_show.add_argument("name", metavar="NAME")
    p_show.add_argument("--json", action="store_true", help="the TrainConfig as JSON (a valid --config file)")
    p_show.set_defaults(fn=cmd_presets_show)
