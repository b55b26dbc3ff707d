"""A self-contained HTML report of an error-analysis session, to mail or attach to an issue.

One file, no network: plotly's JavaScript is inlined from the installed package, the styles are inline, there are
no fonts, images or links to fetch. It holds the right/wrong matrix with its test, the slice finder's table and
chart, the chosen (saved) slices with each model's accuracy and Wilson interval, and the pinned examples with their
notes, tags, probabilities, and attributions and token log-probabilities where they were computed. Every piece of
text that comes from data, models or users is HTML-escaped.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from kd_analysis.error_analysis.explain import DEFAULT_METHOD, Explanation, cached
from kd_analysis.error_analysis.frames import answer_label, answer_options, frame_class_names, option_index, row_answer
from kd_analysis.error_analysis.slices import Slice, find_slices, finding_rows, slice_metrics
from kd_analysis.error_analysis.workspace import PairView, notes_store, pair_view, run_data
from kd_analysis.exceptions import KDLensError
from kd_analysis.fileio import atomic_write_text
from kd_analysis.html_parts import document_head
from kd_analysis.html_parts import esc as _e
from kd_analysis.html_parts import figure_html as _figure
from kd_analysis.html_parts import table_html as _table
from kd_analysis.inside.example import saved_example_inside
from kd_analysis.runs import RunStore
from kd_analysis.stats.intervals import wilson_interval

MAX_PINS = 200  # a report is read by people; more pins belong in the CSV export
TOP_SLICES = 15


@dataclass
class ReportResult:
    path: str
    bytes: int
    seconds: float
    examples: int  # rows in the matrix
    pinned: list[str] = field(default_factory=list)
    explained: list[str] = field(default_factory=list)  # pinned examples shown with attributions
    slices: list[str] = field(default_factory=list)  # chosen slices shown with metrics
    findings: int = 0  # slice-finder rows shown

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(x: float | None) -> str:
    return "–" if x is None or pd.isna(x) else f"{x:.1%}"


def _matrix_section(view: PairView) -> str:
    from kd_analysis.plots.errors import matrix_figure

    rows = []
    for name, acc in zip(view.names, view.accuracies):
        lo, hi = wilson_interval(acc, view.n)
        rows.append([name, _pct(acc), f"{_pct(lo)}–{_pct(hi)}", view.n])
    test = view.counts.get("test", "exact McNemar test (two-sided binomial on the discordant pairs)")
    return (
        "<h2>Right/wrong matrix</h2>"
        + f"<p>{_e(view.sentence())}</p>"
        + _table(["model", "accuracy", "95% Wilson interval", "n"], rows, {3})
        + f'<p class="muted">{_e(test)}</p>'
        + _figure(matrix_figure(view.cells, view.first, view.second, names=view.names))
    )


def _findings_section(view: PairView, min_n: int) -> tuple[str, int]:
    from kd_analysis.plots.errors import slice_gaps_figure

    findings = [
        f.to_dict()
        for f in find_slices(view.frame, columns=list(view.features), min_n=min_n, roles=(view.first, view.second))
    ]
    out = [
        f'<h2>Slice finder</h2><p class="muted">Feature-defined slices with at least {min_n} examples, ranked by '
        f"the accuracy gap ({_e(view.names[0])} − {_e(view.names[1])}). Gap intervals are paired 95% "
        "intervals (Newcombe's method 10: the two Wilson intervals combined with the correlation of the two "
        "models' answers on the same examples); adjusted p is Benjamini–Hochberg over all candidate slices.</p>"
    ]
    if not findings:
        return out[0] + "<p>No slice with enough examples.</p>", 0
    top = findings[:TOP_SLICES]
    table = finding_rows(top, view.names)
    out.append(_table(list(table[0]), [list(r.values()) for r in table], {1, 2, 3, 5}))
    if len(findings) > len(top):
        out.append(f'<p class="muted">{len(findings) - len(top)} more slices not shown.</p>')
    out.append(_figure(slice_gaps_figure(top, names=view.names)))
    return "".join(out), len(top)


def _slices_section(view: PairView, chosen: Sequence[Slice]) -> str:
    if not chosen:
        return ""
    rows = []
    for m in slice_metrics(view.frame, chosen, roles=(view.first, view.second)):
        cols = [m.name, m.n]
        for role in (view.first, view.second):
            acc = m.roles[role]
            cols.append(f"{_pct(acc.accuracy)} ({acc.correct}/{acc.n}; {_pct(acc.ci_low)}–{_pct(acc.ci_high)})")
        cols += ["–" if m.gap is None else f"{m.gap:+.2f}", m.expr]
        rows.append(cols)
    return "<h2>Chosen slices</h2>" + _table(
        ["slice", "n", f"{view.names[0]} accuracy (right/n; 95% Wilson)", f"{view.names[1]} accuracy", "gap", "filter"],
        rows,
        {1},
    )


def _explanation_html(expl: Explanation, names: Mapping[str, str]) -> str:
    from kd_analysis.plots.attribution import token_heatmap_html

    out = [
        f'<p class="muted">Attributions: {_e(expl.method)}, explaining '
        f"{_e('each model’s own answer' if expl.target == 'predicted' else 'the gold answer')} "
        "(orange supports it, blue speaks against it).</p>"
    ]
    for role, attr in expl.attributions.items():
        words = [(w["text"], float(w["score"])) for w in attr.get("words", [])]
        reads = expl.reads.get(role)
        peak = max((abs(s) for _, s in words), default=0.0)
        out.append(
            f"<p><b>{_e(names.get(role, role))}</b> explains {_e(repr(attr.get('target_label')))}"
            + ' <span class="muted">('
            + (f"read {_e(reads)}; " if reads else "")
            + f"strongest |score| {peak:.2g}; each row is scaled to its own strongest word)</span></p>"
            + token_heatmap_html(words)
        )
    gaps = expl.token_gaps()
    if gaps:
        worst = max(gaps, key=lambda g: g["gap"])
        out.append(
            f"<p>Log-probability of each gold-answer token; the student falls furthest behind at token "
            f"{worst['position']} ({_e(repr(worst['token']))}, gap {worst['gap']:+.2f} nats).</p>"
        )
        out.append(
            _table(
                ["#", "token", "teacher log p", "student log p", "gap"],
                [
                    [g["position"], repr(g["token"]), f"{g['teacher']:.2f}", f"{g['student']:.2f}", f"{g['gap']:+.2f}"]
                    for g in gaps
                ],
                {0, 2, 3, 4},
            )
        )
        cut = expl.tokens_cut()
        if cut:
            out.append(
                '<p class="muted">Scored answer tokens differ ('
                + ", ".join(f"{_e(r)} {k}" for r, k in cut.items())
                + "): a longer prompt left fewer answer tokens; the table shows those both "
                "scored.</p>"
            )
    for note in expl.notes:
        out.append(f'<p class="muted">{_e(note)}</p>')
    return "".join(out)


def _answer(value: Any, choices: Any = None) -> str:
    return answer_label(value, choices, limit=10_000)


def _inside_html(found: Mapping[str, Any]) -> str:
    """One example's saved inside view: where the student departs, the lens by depth, the layers side by side."""
    from kd_analysis.plots.inside import lens_by_depth

    said = (
        f"The student's reading departs from the teacher's at its layer {found['departs_at']}"
        if found.get("departs_at") is not None
        else "The student's reading stays within a hair of the teacher's at every depth"
    )
    if found.get("falls_behind_at") is not None:
        said += f"; the gold answer falls behind the teacher's rank at its layer {found['falls_behind_at']}"
    rows = [
        [
            r["layer"],
            f"{r['depth']:.2f}",
            r.get("teacher_layer", "–"),
            "–" if r.get("gold_prob") is None else f"{r['gold_prob']:.3f}",
            "–" if r.get("kl_from_teacher") is None else f"{r['kl_from_teacher']:.3g}",
        ]
        for r in found.get("student", [])
    ]
    return (
        f"<h4>Inside</h4><p>{_e(said)}.</p>"
        + _figure(lens_by_depth({"teacher": found.get("teacher", []), "student": found.get("student", [])}))
        + _table(["student layer", "depth", "teacher layer", "student p(gold)", "KL(teacher ‖ student)"], rows, {3, 4})
    )


def _example_section(
    view: PairView,
    example_id: str,
    data: str,
    store: RunStore,
    explanation: Explanation | None,
    inside: Mapping[str, Any] | None = None,
) -> str:
    from kd_analysis.plots.errors import choice_probs_figure

    row = view.frame[view.frame["example_id"] == example_id].iloc[0]
    f, s = view.first, view.second
    out = [
        f'<div class="example"><h3>Example {_e(example_id)} <span class="muted">({_e(row["cell"])})</span></h3>',
        f"<pre>{_e(_answer(row['text']))}</pre>",
    ]
    names = frame_class_names(view.frame)
    rows = [
        [
            name,
            row_answer(row, row[f"{r}_prediction"], names)[:300],
            {True: "right", False: "wrong"}.get(row[f"{r}_correct"], "not scored"),
            "–" if pd.isna(row[f"{r}_p_gold"]) else f"{float(row[f'{r}_p_gold']):.3f}",
        ]
        for name, r in zip(view.names, (f, s))
    ]
    out.append(
        f"<p>Gold answer: <b>{_e(row_answer(row, row['gold'], names))}</b></p>"
        + _table(["model", "answer", "", "p(gold)"], rows, {3})
    )
    options = answer_options(row, f, names) or answer_options(row, s, names)
    if options:  # multiple choice or classification
        gold = row["gold"]
        gold_i = option_index(gold)
        tp, sp = row[f"{f}_probs"], row[f"{s}_probs"]
        out.append(
            _figure(
                choice_probs_figure(
                    options,
                    tp if isinstance(tp, list) else None,
                    sp if isinstance(sp, list) else None,
                    gold_i,
                    names=view.names,
                )
            )
        )
    else:
        for name, r in zip(view.names, (f, s)):
            generated = _answer(row.get(f"{r}_generated")) or _answer(row[f"{r}_prediction"])
            out.append(f"<p><b>{_e(name)}</b> generated:</p><pre>{_e(generated or '(none)')}</pre>")
    ns = notes_store(store)
    tags = ns.tags(data, example_id).get(example_id, [])
    if tags:
        out.append("<p>Tags: " + "".join(f'<span class="tag">{_e(t)}</span>' for t in tags) + "</p>")
    for note in ns.notes(data, example_id):
        out.append(
            f'<div class="note"><span class="muted">{_e(note.author or "anonymous")} · {_e(note.created)}'
            f"</span><br>{_e(note.text)}</div>"
        )
    if explanation is not None:
        out.append(
            _explanation_html(
                explanation,
                {"teacher": "teacher", "student": "student"}
                if view.against is None
                else {"teacher": "teacher", "student": "student A"},
            )
        )
    else:
        out.append(
            '<p class="muted">Attributions not computed for this example (compute them on the Error '
            f"analysis page, or with `python -m kd_analysis errors explain {_e(view.run_id)} "
            f"{_e(example_id)}`).</p>"
        )
    if inside is not None:
        out.append(_inside_html(inside))
    return "".join(out) + "</div>"


def _pick_explanation(
    found: Mapping[tuple[str, str, str], Explanation], example_id: str, method: str, target: str
) -> Explanation | None:
    if (example_id, method, target) in found:
        return found[(example_id, method, target)]
    others = [e for (eid, _, _), e in found.items() if eid == example_id]
    return max(others, key=lambda e: e.created) if others else None


def report_html(
    store: RunStore,
    run_id: str,
    *,
    against: str | None = None,
    pins: Sequence[str] = (),
    slices: Sequence[Slice] | None = None,
    min_n: int = 10,
    method: str = DEFAULT_METHOD,
    target: str = "predicted",
    title: str | None = None,
) -> tuple[str, ReportResult]:
    """The report as one HTML string. `slices` default to the data set's saved slices; `pins` are example ids
    (shown in the given order; unknown ids are refused, so a typo never yields a silently shorter report)."""
    started = time.monotonic()
    view = pair_view(store, run_id, against)
    data = run_data(store, run_id)
    pins = list(dict.fromkeys(pins))
    if len(pins) > MAX_PINS:
        raise KDLensError(
            f"{len(pins)} pinned examples; a report holds at most {MAX_PINS} (export the slice as CSV for more)"
        )
    known = set(view.frame["example_id"])
    unknown = [p for p in pins if p not in known]
    if unknown:
        raise KDLensError(f"example {unknown[0]!r} is not among the {len(known)} examples of this matrix")
    chosen = list(slices) if slices is not None else [Slice(n, e) for n, e in notes_store(store).slices(data).items()]
    run = store.get(run_id)
    name = run.config().get("name") or run_id
    title = title or f"Error analysis: {name}"
    found = cached(store, run_id) if pins else {}
    findings_html, shown = _findings_section(view, min_n)
    explained = [p for p in pins if _pick_explanation(found, p, method, target) is not None]
    parts = [
        document_head(title),
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">Run {_e(run_id)}'
        + (f" against {_e(against)}" if against else "")
        + f" · {_e(data)} data · {view.n} held-out examples · made by kd-lens on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"
        + (f" · joined: {_e('; '.join(view.sources))}" if view.sources else "")
        + "</p>",
        _matrix_section(view),
        findings_html,
        _slices_section(view, chosen),
    ]
    if pins:
        parts.append(f"<h2>Pinned examples ({len(pins)})</h2>")
        insides = saved_example_inside(store, run_id) if view.against is None else {}
        parts += [
            _example_section(view, p, data, store, _pick_explanation(found, p, method, target), insides.get(p))
            for p in pins
        ]
    parts.append("</body></html>")
    text = "".join(parts)
    result = ReportResult(
        path="",
        bytes=len(text.encode()),
        seconds=time.monotonic() - started,
        examples=view.n,
        pinned=pins,
        explained=explained,
        slices=[s.name for s in chosen],
        findings=shown,
    )
    return text, result


def write_report(store: RunStore, run_id: str, out: str | Path, **kwargs) -> ReportResult:
    """Write the report atomically (a failed write never leaves half a file where the last report was)."""
    path = Path(out)
    if path.is_dir():
        raise KDLensError(f"{path} is a folder; give the report a file name (e.g. {path / 'report.html'})")
    text, result = report_html(store, run_id, **kwargs)
    atomic_write_text(path, text)
    result.path, result.seconds = str(path), result.seconds
    return result
