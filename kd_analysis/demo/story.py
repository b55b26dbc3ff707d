"""The demo's story in five sections, built only from shipped runs and jobs: what a non-expert can follow in five
minutes. The Summary page draws it; `story_html` writes the same sections as one self-contained HTML file.

Every number comes with its n and a 95% interval, the words say "not distinguishable" where the intervals do,
and nothing here is compared with a paper's figure: these are CPU-scale runs on generated data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from kd_analysis.exceptions import KDLensError
from kd_analysis.runs import RunStore

HEADS_RUN = "reference-smollm2-priming-heads"
OUTPUTS_RUN = "reference-smollm2-teacher-outputs"
RATIONALES_RUN = "reference-minilm-rationales-before"
STAT = "entropy"


@dataclass
class Section:
    key: str
    title: str
    page: str  # the page that goes deeper (pages/….py)
    page_label: str
    sentences: list[str] = field(default_factory=list)  # plain text (escaped wherever it is shown)
    figures: list[go.Figure] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[Any]]]] = field(default_factory=list)
    html: list[str] = field(default_factory=list)  # already-escaped fragments (token heatmaps)
    missing: str | None = None  # why the section is empty and what regenerates it


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def _saved(store: RunStore, run_id: str, load: Callable[[Any], Any]) -> Any:
    """A shipped job's result, or None when it is missing or unreadable (the section then says what to run)."""
    try:
        return load(store.get(run_id))
    except Exception:
        return None


def _loss(row: dict[str, Any]) -> str:
    """A group's loss mix from its name ("Reference group (100 labels): 0.5·CE + 0.5·KL" -> "0.5·CE + 0.5·KL")."""
    return row["name"].split(": ", 1)[-1]


def size_section(store: RunStore) -> Section:
    from kd_analysis.demo.reference import SIZE_SPEED_RUN
    from kd_analysis.evidence.size_speed import load_size_speed

    sec = Section("size", "1. Size and speed", "pages/models_and_data.py", "Models & data")
    result = _saved(store, SIZE_SPEED_RUN, load_size_speed)
    if result is None:
        sec.missing = f"no size-and-speed job yet: `python -m kd_analysis runs make-reference --only {SIZE_SPEED_RUN}`"
        return sec
    t, s = result.teacher, result.student
    sec.tables.append(
        (
            ["model", "parameters", "weights on disk", f"latency per batch of {result.batch}", "fastest–slowest"],
            [
                [
                    c.role,
                    f"{c.parameters / 1e6:.1f}M",
                    f"{c.disk_bytes / 1e6:.1f} MB",
                    f"{c.latency_ms:.1f} ms",
                    f"{c.latency_spread_ms[0]:.1f}–{c.latency_spread_ms[1]:.1f} ms",
                ]
                for c in (t, s)
            ],
        )
    )
    sec.sentences.append(
        f"The student keeps {s.parameters / t.parameters:.0%} of the teacher's parameters ({s.disk_bytes / 1e6:.0f} MB "
        f"of weights instead of {t.disk_bytes / 1e6:.0f} MB) and answers a batch of {result.batch} questions "
        f"{result.speedup:.1f}× faster: median of {result.repeats} timed passes, measured {result.measured} on "
        f"{result.machine} with {result.threads} threads."
    )
    return sec


def distillation_section(store: RunStore) -> Section:
    from kd_analysis.demo.reference import FEW_LABELS, GROUP_DATA, GROUP_PREFIX
    from kd_analysis.evidence.groups import compare, list_groups
    from kd_analysis.evidence.summary import group_rows
    from kd_analysis.plots.groups import group_bars
    from kd_analysis.stats.paired import describe

    sec = Section("kd", "2. Does distillation work?", "pages/compare_runs.py", "Compare runs › Groups")
    groups = [g for g in list_groups(store) if g.group.startswith(GROUP_PREFIX) and g.runs]
    rows = {r["group"]: r for r in group_rows(store, groups)}
    few = {k: r for k, r in rows.items() if r["labels"] == FEW_LABELS}
    ce = next((r for r in few.values() if r["gap note"].startswith("CE only")), None)
    kd = [r for r in few.values() if r["ce twin"]]
    if ce is None or not kd:
        sec.missing = (
            "the reference groups are not in the store: `python -m kd_analysis runs make-reference --only "
            f"'{GROUP_PREFIX}*' reference-minilm-mcl-teacher`"
        )
        return sec
    best = max(kd, key=lambda r: r["mean"] or 0)
    teacher = best["teacher"]
    short = [{**r, "name": _loss(r)} for r in (ce, best)]  # the regime is in the title
    sec.figures.append(
        group_bars(
            short,
            teacher,
            f"{FEW_LABELS} labels + an unlabelled transfer set "
            f"({GROUP_DATA}, {best['eval examples']} held-out questions)",
        )
    )
    sec.sentences.append(
        f"The teacher (MiniLM fine-tuned on every training label) answers {_pct(teacher)} of "
        f"{best['eval examples']} held-out questions. A 2-layer student trained on only {FEW_LABELS} labelled "
        f"questions reaches {_pct(ce['mean'])} (mean of {ce['seeds']} seeds, 95% {_pct(ce['low'])}–"
        f"{_pct(ce['high'])}); distilled from the teacher on the unlabelled rest, the best loss ({_loss(best)}) "
        f"reaches {_pct(best['mean'])} (95% {_pct(best['low'])}–{_pct(best['high'])})."
    )
    result, _ = compare(store, best["group"], ce["group"], groups)
    sec.sentences.append(describe(result, f"KD ({_loss(best)})", "CE only"))
    if best["gap closed"] is not None:
        sec.sentences.append(
            f"It closes {best['gap closed']:.0%} of the gap between the CE-only student and the "
            f"teacher (95% {best['gap low']:.0%} to {best['gap high']:.0%})."
        )
    table = []
    for r in sorted(rows.values(), key=lambda r: (r["labels"] is None, -(r["mean"] or 0))):
        table.append(
            [
                f"{r['labels']} labels" if r["labels"] else "all labels",
                _loss(r),
                f"{r['seeds']} × {r['eval examples']}",
                _pct(r["mean"]),
                f"{_pct(r['low'])}–{_pct(r['high'])}" if r["low"] is not None else "one seed",
                f"{r['gap closed']:.0%} ({r['gap low']:.0%} to {r['gap high']:.0%})"
                if r["gap closed"] is not None
                else r["gap note"],
            ]
        )
    sec.tables.append((["regime", "loss", "seeds × questions", "accuracy", "95% across seeds", "gap closed"], table))
    full = {k: r for k, r in rows.items() if r["labels"] is None}
    full_ce = next((r for r in full.values() if r["gap note"].startswith("CE only")), None)
    full_kd = [r for r in full.values() if r["ce twin"]]
    if full_ce and full_kd:
        full_best = max(full_kd, key=lambda r: r["mean"] or 0)
        cmp, _ = compare(store, full_best["group"], full_ce["group"], groups)
        sec.sentences.append(
            "With every label, the same comparison: " + describe(cmp, f"KD ({_loss(full_best)})", "CE only")
        )
    return sec


TOY_FILE = "story_toy.json"  # the toy fits at the default settings, beside the runs (precomputed, shipped)


def toy_result(store: RunStore) -> dict[str, Any]:
    """The toy fits at the default settings: read from the store when they were fitted with these settings and
    these losses, else fitted now (≈1 s) and saved for the next reader."""
    import json
    from dataclasses import asdict

    from kd_analysis.fileio import atomic_write_text
    from kd_analysis.loss_explorer.toy import ToyConfig, fit_toy

    config = json.loads(json.dumps(asdict(ToyConfig())))
    path = store.root / TOY_FILE
    shipped = [store.reference / TOY_FILE] if store.reference is not None else []
    for saved_at in [path, *shipped]:  # the user's fit, else the one shipped with the reference runs
        try:
            saved = json.loads(saved_at.read_text(encoding="utf-8"))
            if saved.get("config") == config:
                return saved["result"]
        except (OSError, ValueError, AttributeError):
            pass
    result = json.loads(json.dumps(fit_toy().to_dict()))  # as a reader of the file gets it (lists, not tuples)
    try:
        atomic_write_text(path, json.dumps({"config": config, "result": result}))
    except OSError:
        pass  # a read-only store: fitted again next time
    return result


def losses_section(store: RunStore) -> Section:
    from kd_analysis.loss_explorer.toy import describe_fits, fit_behaviour
    from kd_analysis.plots.losses import toy_fits

    sec = Section("losses", "3. What the losses do", "pages/loss_explorer.py", "Loss explorer")
    res = toy_result(store)
    fits = res["fits"]
    t_mass = [m["mass"] for m in res["modes"]]
    notes = {k: fit_behaviour(v["mode_mass"], t_mass, res["main"])[0] for k, v in fits.items()}
    sec.figures.append(toy_fits(res["teacher"], {k: v["probs"] for k, v in fits.items()}, notes=notes))
    sec.sentences.append(
        "A teacher with two modes and a rare event, and a student that can only draw one bump, "
        "fitted under each loss to convergence:"
    )
    sec.sentences += describe_fits(res)
    return sec


def saliency_section(store: RunStore) -> Section:
    from kd_analysis.attribution.job import load_rationale_run
    from kd_analysis.attribution.report import headline
    from kd_analysis.html_parts import esc
    from kd_analysis.plots.attribution import token_heatmap_html

    sec = Section("saliency", "4. What the teacher looks at", "pages/saliency_rationales.py", "Saliency rationales")
    report = _saved(store, RATIONALES_RUN, load_rationale_run)
    if report is None or not report.teacher:
        sec.missing = f"no rationales job yet: `python -m kd_analysis runs make-reference --only {RATIONALES_RUN}`"
        return sec
    k = report.k
    head = headline(report.teacher, k, "any")
    sec.sentences.append(
        f"Saliency (gradient norm) marks the {k} input words behind the answer of the MC teacher (MiniLM fine-tuned "
        f"on the small MC demo). In {_pct(head['value'])} "
        f"of {head['n']} questions those words include the gold answer (95% {_pct(head['low'])}–{_pct(head['high'])}); "
        f"{k} random words would in {_pct(head['chance'])}."
    )
    for wanted, verdict in ((True, "answered right"), (False, "answered wrong")):
        a = next((x for x in report.teacher if x.correct is wanted), None)
        if a is None:
            continue
        heat = report.heat(a.example_id, "teacher")
        caption = (
            f"Example {a.example_id}, {verdict}: it chose “{a.predicted_label}”, the gold answer is “{a.gold_label}”."
        )
        sec.html.append(f"<p>{esc(caption)}</p>" + token_heatmap_html(heat["words"], heat["rationale"], heat["answer"]))
    sec.sentences.append(
        "Orange supports the answer, blue works against it; boxed words are the rationale, "
        "underlined words the gold answer."
    )
    return sec


def priming_section(store: RunStore) -> Section:
    from kd_analysis.attention.compare import diff_map
    from kd_analysis.attention.job import load_attention_run
    from kd_analysis.plots.attention import diff_heatmap
    from kd_analysis.priming.job import load_outputs_run
    from kd_analysis.priming.teacher import summarise
    from kd_analysis.stats.intervals import wilson_interval

    sec = Section("priming", "5. Priming the teacher", "pages/priming_attention.py", "Priming & attention")
    outputs = _saved(store, OUTPUTS_RUN, load_outputs_run) or {}
    if not outputs:
        sec.missing = f"no teacher-outputs job yet: `python -m kd_analysis runs make-reference --only {OUTPUTS_RUN}`"
        return sec
    rows = [r for r in summarise(outputs) if r["accuracy"] is not None]
    n = rows[0]["examples"] if rows else 0
    bounds = [wilson_interval(r["accuracy"], n) for r in rows]
    fig = go.Figure(
        go.Bar(
            x=[r["strategy"] for r in rows],
            y=[r["accuracy"] for r in rows],
            error_y=dict(
                type="data",
                symmetric=False,
                array=[hi - r["accuracy"] for r, (_, hi) in zip(rows, bounds)],
                arrayminus=[r["accuracy"] - lo for r, (lo, _) in zip(rows, bounds)],
            ),
            marker_color="#4C78A8",
        )
    )
    fig.update_layout(
        title=f"SmolLM2-135M's accuracy under each prompt ({n} arithmetic questions, 95% Wilson)",
        yaxis=dict(tickformat=".0%", title="exact answer"),
        height=380,
        margin=dict(t=50),
    )
    sec.figures.append(fig)
    lows, highs = [lo for lo, _ in bounds], [hi for _, hi in bounds]
    overlap = max(lows) <= min(highs)
    sec.sentences.append(
        f"Accuracy ranges from {_pct(min(r['accuracy'] for r in rows))} to {_pct(max(r['accuracy'] for r in rows))} "
        f"across strategies on {n} questions; "
        + (
            "every 95% interval overlaps every other, so no strategy can be said to beat another at this scale."
            if overlap
            else "some intervals do not overlap; read the page for which."
        )
    )
    stats = {s.label: s for s in _saved(store, HEADS_RUN, load_attention_run) or []}
    if "cot" in stats and "none" in stats:
        sec.figures.append(diff_heatmap(diff_map(stats["cot"], stats["none"], STAT)))
        sec.sentences.append(
            "The map shows how the distilled students' attention entropy per head differs between the chain-of-"
            "thought and the unprompted student: a description of where they attend, not evidence that one learns "
            "better (one seed, a 135M-parameter teacher, 30 training steps)."
        )
    return sec


def build_story(store: RunStore | None = None) -> list[Section]:
    store = store or RunStore()
    return [
        size_section(store),
        distillation_section(store),
        losses_section(store),
        saliency_section(store),
        priming_section(store),
    ]


def story_html(sections: list[Section], title: str = "kd-lens: what knowledge distillation does, on the demo") -> str:
    from kd_analysis.html_parts import document_head, esc, figure_html, table_html

    parts = [
        document_head(title),
        f"<h1>{esc(title)}</h1>",
        f'<p class="muted">Built by kd-lens from its shipped reference runs on '
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. CPU-scale runs on generated data: not comparable "
        "with the papers' numbers.</p>",
    ]
    for sec in sections:
        parts.append(f"<h2>{esc(sec.title)}</h2>")
        if sec.missing:
            parts.append(f'<p class="muted">Not available: {esc(sec.missing)}</p>')
            continue
        parts += [f"<p>{esc(s)}</p>" for s in sec.sentences]
        parts += [figure_html(f) for f in sec.figures]
        parts += [table_html(h, r) for h, r in sec.tables]
        parts += sec.html
        parts.append(f'<p class="muted">In the app: the {esc(sec.page_label)} page.</p>')
    parts.append("</body></html>")
    return "".join(parts)


def write_story(out: str | Path, store: RunStore | None = None) -> dict[str, Any]:
    from kd_analysis.fileio import atomic_write_text

    path = Path(out)
    if path.is_dir():
        raise KDLensError(f"{path} is a folder; give the story a file name (e.g. {path / 'story.html'})")
    started = time.monotonic()
    sections = build_story(store)
    text = story_html(sections)
    atomic_write_text(path, text)
    return {
        "path": str(path),
        "bytes": len(text.encode()),
        "seconds": round(time.monotonic() - started, 2),
        "sections": [s.title for s in sections],
        "missing": [s.title for s in sections if s.missing],
    }
