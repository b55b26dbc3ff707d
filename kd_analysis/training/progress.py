"""What the pages show about runs: progress with ETA, and comparisons across runs (pure data, no UI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kd_analysis.runs import Run, RunStore, layout
from kd_analysis.runs.kinds import TRAIN
from kd_analysis.runs.origin import objective_words, origin_kind, origin_words
from kd_analysis.stats.intervals import wilson_interval

EVAL_PREFIX, TEACHER_PREFIX, LOSS_PREFIX = "eval_", "teacher_", "loss"
LOWER_IS_BETTER = ("_nll", "_loss")  # eval metrics whose best value is the smallest


@dataclass
class RunProgress:
    run_id: str
    name: str
    state: str
    reason: str | None
    step: int
    total: int | None
    fraction: float
    eta_s: float | None
    elapsed_s: float | None
    last: dict[str, Any] = field(default_factory=dict)
    evals: dict[str, float] = field(default_factory=dict)
    teacher: dict[str, float] = field(default_factory=dict)
    skipped_lines: int = 0  # unreadable metrics lines (the run's own damage, never the page's)
    phase: str | None = None  # what a running job does right now (an evaluation, generation), in words

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _latest(records: list[dict], prefix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in records:
        for k, v in r.items():
            if k.startswith(prefix) and isinstance(v, (int, float)):
                out[k[len(prefix) :]] = v
    return out


def run_progress(run: Run) -> RunProgress:
    read = run.metrics_checked()  # read once: the summary below reuses it
    cfg, metrics = run.config(), read[0]
    # training steps, else job progress records (a Trainer's run also logs summaries and evaluations with its total)
    steps = [m for m in metrics if "loss" in m] or [m for m in metrics if "total_steps" in m]
    last = steps[-1] if steps else {}
    planned = cfg.get("steps") if cfg.get("kind", TRAIN) == TRAIN and not cfg.get("epochs") else None
    total = last.get("total_steps") or planned
    if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
        total = None
    step = int(last.get("step", 0))
    summary = run.summary(read)  # says "damaged", and why, when status.json or config.json cannot be trusted
    state, reason = summary.state, summary.reason
    fraction = 1.0 if state == "finished" else (min(step / total, 1.0) if total else 0.0)
    name = cfg.get("name") if isinstance(cfg.get("name"), str) else None
    eta, elapsed = last.get("eta_s"), last.get("elapsed_s")
    return RunProgress(
        run_id=run.run_id,
        name=name or run.run_id,
        state=state,
        reason=reason,
        step=step,
        total=total,
        fraction=fraction,
        eta_s=eta if state == "running" and isinstance(eta, (int, float)) else None,
        elapsed_s=elapsed if isinstance(elapsed, (int, float)) else None,
        last=last,
        evals=_latest(metrics, EVAL_PREFIX),
        teacher=teacher_metrics(metrics),
        skipped_lines=summary.skipped_lines,
        phase=_phase(run, metrics) if state in ("queued", "running") else None,
    )


def _phase(run: Run, metrics: list[dict]) -> str | None:
    """The phase the worker said last, if it said one after its last logged step (else the step says more)."""
    status = run.status()
    phase, at = status.get("phase"), status.get("phase_at")
    if not isinstance(phase, str) or not isinstance(at, (int, float)):
        return None
    steps = [m.get("time") for m in metrics if "loss" in m and isinstance(m.get("time"), (int, float))]
    return phase if not steps or at >= steps[-1] else None


def metric_names(store: RunStore, run_ids: list[str]) -> list[str]:
    """Loss terms and eval metrics present in any of the runs, losses first."""
    names: set[str] = set()
    for rid in run_ids:
        for m in store.get(rid).metrics():
            names.update(
                k for k, v in m.items() if isinstance(v, (int, float)) and (k.startswith((LOSS_PREFIX, EVAL_PREFIX)))
            )
    return sorted(names, key=lambda n: (not n.startswith(LOSS_PREFIX), n != "loss", n))


LOSS_NAMES = {
    "ce": "CE",
    "kl": "KL",
    "rkl": "RKL",
    "js": "JS",
    "tvd": "TVD",
    "skew_kl": "skew KL",
    "soft_ce": "soft CE",
    "sinkhorn": "Sinkhorn",
}  # short names for labels; others shown as written


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _tau_text(tau: Any, tau_end: Any) -> str | None:
    if not _number(tau):
        return None
    return f"{tau:g}" + (f"→{tau_end:g}" if _number(tau_end) and tau_end != tau else "")


def losses_label(cfg: dict[str, Any]) -> str:
    """The training loss in words: '0.5·CE + 0.5·KL (τ = 2)'.

    Weights and short names of the terms with a non-zero weight; the temperature of the distillation terms (a
    term's own τ, else its objective's reference τ (AKL's 1), else the run's; 'τ = 2→1' when annealed), once at
    the end when they share it, else after each term; the rationale task of a multitask rationale run as its own
    term. Terms a hand-edited config got wrong are shown as '?', never fatal; a config without losses gives ''.
    """
    terms = cfg.get("losses")
    rationales = cfg.get("rationales") if isinstance(cfg.get("rationales"), dict) else {}
    if terms is None and not rationales:
        return ""
    if terms is not None and not isinstance(terms, list):
        return "?"
    parts: list[list[str]] = []  # [term text, its τ text or ""]
    for t in terms or []:
        weight = t.get("weight", 1.0) if isinstance(t, dict) else None
        name = t.get("name") if isinstance(t, dict) else None
        if not _number(weight) or not isinstance(name, str):
            parts.append(["?", ""])
            continue
        if weight == 0:
            continue
        tau = None
        if name != "ce":
            tau = _tau_text(
                t.get("tau") if _number(t.get("tau")) else _default_tau(name, cfg.get("tau")), t.get("tau_end")
            )
        parts.append([f"{weight:g}·{LOSS_NAMES.get(name, name)}", tau or ""])
    if rationales.get("mode") == "multitask":
        weight = rationales.get("weight", 1.0)
        parts.append([f"{weight:g}·rationale" if _number(weight) else "?·rationale", ""])
    taus = {tau for _, tau in parts if tau}
    if len(taus) == 1:
        text = " + ".join(text for text, _ in parts) + f" (τ = {taus.pop()})"
    else:
        text = " + ".join(text + (f" (τ = {tau})" if tau else "") for text, tau in parts)
    on_policy = cfg.get("on_policy") if isinstance(cfg.get("on_policy"), dict) else {}
    if _number(on_policy.get("fraction")) and on_policy["fraction"] > 0:
        text += f", on-policy λ = {on_policy['fraction']:g}"
    return text


def _default_tau(name: str, run_tau: Any) -> Any:
    """A term without its own τ: its objective's reference τ where the registry declares one, else the run's."""
    from kd_analysis.losses import LOSSES

    spec = LOSSES.get(name)
    return spec.reference_tau[0] if spec is not None and spec.reference_tau is not None else run_tau


def _count(x: float) -> str:
    return f"{round(x)}" if abs(x - round(x)) < 0.005 else f"{x:.2f}".rstrip("0")


def _epochs_text(x: float) -> str:
    n = _count(x)
    return f"{n} epoch" + ("" if n == "1" else "s")


def steps_label(cfg: dict[str, Any], metrics: list[dict[str, Any]]) -> str:
    """How long a run trains, in steps and epochs, the same wherever it is shown: '108 steps = 4 epochs'.

    With `epochs` set a run trains whole epochs, and the config's `steps` is not used: the total is the
    worker's `total_steps` (its training records), the epochs the config's. Without `epochs`, the config's steps,
    and how many epochs of the training data they covered (the records' `epoch`). Unfinished: '54 of 108 steps
    = 2 of 4 epochs'; not started: '4 epochs' or '0 of 100 steps'.
    """
    train = [m for m in metrics if _number(m.get("loss")) or "total_steps" in m]
    last = train[-1] if train else {}
    step = last.get("step") if _number(last.get("step")) else 0
    epochs = cfg.get("epochs") if _number(cfg.get("epochs")) and cfg.get("epochs") > 0 else None
    total = last.get("total_steps")
    if not _number(total) or total <= 0:
        total = cfg.get("steps") if not epochs and _number(cfg.get("steps")) and cfg.get("steps") > 0 else None
    epoch_now = last.get("epoch") if _number(last.get("epoch")) else None
    if total is None:
        return _epochs_text(epochs) if epochs else f"{step} steps"
    if step >= total:
        done = epochs or epoch_now
        return f"{total} steps" + (f" = {_epochs_text(done)}" if done else "")
    text = f"{step} of {total} steps"
    if epochs and epoch_now is not None:
        return f"{text} = {_count(epoch_now)} of {_epochs_text(epochs)}"
    return text + (f" = {_epochs_text(epoch_now)}" if epoch_now else "")


def unique_labels(names: dict[str, str | None]) -> dict[str, str]:
    """Run id -> the name to show: the config's name (else the id), with a short id appended where names collide.

    The short id is the shortest tail of '-'-separated parts of the id that tells the colliding runs apart
    ('a1b2c3' of '20261130-112233-train-a1b2c3'); the labels returned are always distinct.
    """
    base = {rid: n.strip() if isinstance(n, str) and n.strip() else rid for rid, n in names.items()}
    groups: dict[str, list[str]] = {}
    for rid, label in base.items():
        groups.setdefault(label, []).append(rid)
    out = dict(base)
    for label, rids in groups.items():
        if len(rids) < 2:
            continue
        parts = {rid: rid.split("-") for rid in rids}
        k = 1
        while len({"-".join(p[-k:]) for p in parts.values()}) < len(rids):
            k += 1
        for rid in rids:
            out[rid] = f"{label} · {'-'.join(parts[rid][-k:])}"
    seen: set[str] = set()
    for rid in sorted(out, key=lambda r: (out[r] != base[r], r)):  # a run's own name keeps priority
        label = out[rid]
        if label in seen:  # a short id made it another run's name: the whole id, then a count
            label, n = f"{base[rid]} · {rid}", 2
            while label in seen:
                label, n = f"{base[rid]} · {rid} ({n})", n + 1
        seen.add(label)
        out[rid] = label
    return out


def run_labels(store: RunStore, run_ids: list[str]) -> dict[str, str]:
    """`unique_labels` of these runs' config names."""
    names = {}
    for rid in run_ids:
        name = store.get(rid).config().get("name")
        names[rid] = name if isinstance(name, str) else None
    return unique_labels(names)


PREFIX_ENDS = (": ", " - ", " – ", " — ")  # where a family of names ends: 'Reference student (2 layers): ...'


def common_prefix(labels: list[str], min_chars: int = 10) -> str:
    """The start every label shares, up to its last ': ' (or ' - '), when at least `min_chars` long and every
    label has more after it; else ''. Headers and legends show the rest, which is where runs differ
    ('Reference student (2 layers): ce + kl' and '...: ce + sinkhorn' share 'Reference student (2 layers): ')."""
    if len(labels) < 2:
        return ""
    first, n = labels[0], 0
    while all(len(lb) > n and lb[n] == first[n] for lb in labels):
        n += 1
    cut = max((first.rfind(end, 0, n) + len(end) for end in PREFIX_ENDS if end in first[:n]), default=0)
    prefix = first[:cut]
    if len(prefix) < min_chars or any(not lb[len(prefix) :].strip() for lb in labels):
        return ""
    return prefix


def curves(
    store: RunStore, run_ids: list[str], metric: str, labels: dict[str, str] | None = None
) -> dict[str, tuple[list[int], list[float]]]:
    """Label -> (steps, values) of one metric; labels are `run_labels` (distinct even when names collide)."""
    labels = labels or run_labels(store, run_ids)
    out = {}
    for rid in run_ids:
        pts = [(m["step"], m[metric]) for m in store.get(rid).metrics() if _number(m.get(metric))]
        if pts:
            out[labels.get(rid, rid)] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


def teacher_metrics(metrics: list[dict[str, Any]]) -> dict[str, float]:
    """The teacher's evaluation (its step-0 rows: teacher_accuracy, teacher_exact_match, ...) by metric name;
    training rows' teacher_cache_hits and the like are not evaluations."""
    return _latest([m for m in metrics if "loss" not in m], TEACHER_PREFIX)


def _teacher_name(cfg: dict[str, Any]) -> str:
    """A teacher in a few words: the run it was trained in (cached_runs/<id>/checkpoint), else its source;
    with the priming strategy whose outputs it gave."""
    teacher = cfg.get("teacher")
    source = teacher.get("source") if isinstance(teacher, dict) else teacher
    if not isinstance(source, str) or not source:
        return "teacher"
    parts = [p for p in source.replace("\\", "/").split("/") if p]
    name = parts[-2] if len(parts) > 1 and parts[-1] == "checkpoint" else parts[-1] if parts else source
    priming = cfg.get("priming")
    if isinstance(priming, dict) and isinstance(priming.get("strategy"), str):
        name += f" (primed: {priming['strategy']}" + (", edited" if priming.get("template") else "") + ")"
    return name


def teacher_lines(
    store: RunStore, run_ids: list[str], metric: str, labels: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The teachers' values of an eval metric ('eval_accuracy' -> each run's teacher_accuracy), one line per
    distinct teacher: [{"label": "teacher reference-minilm-mc-teacher", "value": 0.79, "runs": [labels]}].

    A teacher evaluated to different values (other data, another held-out set) gets one line per value, its
    label naming the runs."""
    if not metric.startswith(EVAL_PREFIX):
        return []
    labels = labels or run_labels(store, run_ids)
    key = metric[len(EVAL_PREFIX) :]
    groups: dict[tuple[str, float], list[str]] = {}
    for rid in run_ids:
        run = store.get(rid)
        value = teacher_metrics(run.metrics()).get(key)
        if _number(value):
            groups.setdefault((_teacher_name(run.config()), float(value)), []).append(labels.get(rid, rid))
    values_of: dict[str, int] = {}
    for name, _ in groups:
        values_of[name] = values_of.get(name, 0) + 1
    return [
        {
            "label": f"teacher {name}" + (f" · for {', '.join(runs)}" if values_of[name] > 1 else ""),
            "value": value,
            "runs": runs,
        }
        for (name, value), runs in groups.items()
    ]


def final_table(store: RunStore, run_ids: list[str], labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per run: "run" its id, "name" its label (`run_labels`), "steps" as `steps_label`, the loss in
    words, final, best and teacher metrics (with a 95% interval for rates), the set-up and the minutes."""
    try:
        labels = labels or run_labels(store, run_ids)
    except Exception:
        labels = {rid: rid for rid in run_ids}
    rows = []
    for rid in run_ids:
        try:
            rows.append(_final_row(store, rid, labels.get(rid, rid)))
        except Exception as exc:
            rows.append(
                {"run": rid, "name": labels.get(rid, rid), "state": "damaged", "set-up": f"{type(exc).__name__}: {exc}"}
            )
    return rows


def _records_n(run) -> int | None:
    """Held-out examples of a run that did not log `held_out` (runs from before it did): its live model's
    per-example records at the final step, when it has them."""
    from kd_analysis.fileio import read_jsonl

    path = run.path / layout.PREDICTIONS
    if not path.exists():
        return None
    rows = [r for r in read_jsonl(path) if r.get("role") in ("student", "teacher") and isinstance(r.get("step"), int)]
    live = [r for r in rows if r["step"] > 0] or rows
    last = max((r["step"] for r in live), default=None)
    n = len({r.get("example_id") for r in live if r["step"] == last}) if last is not None else 0
    return n or None


def _evaluated_at(metrics: list[dict]) -> str | None:
    """The step of a run's latest evaluation in words: a run cancelled before its first evaluation after step 0
    shows its teacher-only start, which must not read as what training reached."""
    steps = [m["step"] for m in metrics if any(k.startswith(EVAL_PREFIX) for k in m) and isinstance(m.get("step"), int)]
    if not steps:
        return None
    return f"step {max(steps)}" + (" (before training)" if max(steps) == 0 else "")


def held_out_n(run, metrics: list[dict]) -> int | None:
    """How many held-out examples a run's evaluations scored (logged at step 0; older runs: from their records)."""
    n = next((m["held_out"] for m in metrics if m.get("step") == 0 and "held_out" in m), None)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else _records_n(run)


def latest_eval_words(run, p: RunProgress) -> str:
    """A run's latest evaluation for the runs list: its first metric (a rate as a percentage with n and its 95%
    interval) and, when it is not the run's final evaluation, the step it was measured at."""
    metric = next(iter(p.evals.items()), None)
    if metric is None:
        return ""
    name, value = metric
    metrics = run.metrics()
    n = held_out_n(run, metrics)
    if name in RATE_METRICS and n:
        low, high = wilson_interval(value, n)
        words = f"{name} {value:.1%} (n = {n}, 95% {low:.0%}–{high:.0%})"
    else:
        words = f"{name} {value:.3f}"
    at = _evaluated_at(metrics)
    final = p.state == "finished" and at is not None and at != "step 0 (before training)"
    return words if final else f"{words} at {at}"


def _final_row(store: RunStore, rid: str, label: str) -> dict[str, Any]:
    """One run's row of the Compare page's final-metrics table."""
    p = run_progress(store.get(rid))
    cfg = store.get(rid).config()
    metrics = store.get(rid).metrics()
    row = {
        "run": rid,
        "name": label,
        "state": p.state,
        "steps": steps_label(cfg, metrics),
        "losses": losses_label(cfg) if origin_kind(cfg) is None else objective_words(cfg),
        "final loss": p.last.get("loss"),
    }
    row["set-up"] = _setup_label(cfg)
    row.update({f"final {k}": v for k, v in p.evals.items()})
    # the step those numbers were measured at: a run cancelled before its first evaluation shows step 0, its
    # teacher-only start, which must not read as what training reached
    row["evaluated at"] = _evaluated_at(metrics)
    n = held_out_n(store.get(rid), metrics)
    row["eval n"] = n
    for key in RATE_METRICS:
        if isinstance(p.evals.get(key), (int, float)) and n:
            low, high = wilson_interval(p.evals[key], n)
            row[f"final {key} 95% interval"] = f"{low:.1%}–{high:.1%}"
    evals = [m for m in metrics if any(k.startswith(EVAL_PREFIX) for k in m)]
    for key in {k for m in evals for k in m if k.startswith(EVAL_PREFIX)}:
        best = min if key.endswith(LOWER_IS_BETTER) else max
        values = [m[key] for m in evals if isinstance(m.get(key), (int, float))]
        row[f"best {key[len(EVAL_PREFIX) :]}"] = best(values) if values else None
    row.update({f"teacher {k}": v for k, v in teacher_metrics(metrics).items()})
    row["minutes"] = round((p.elapsed_s or 0) / 60, 2)
    return row


RATE_METRICS = ("accuracy", "exact_match")  # proportions of the held-out examples: shown with a Wilson interval


# Settings that say where a run runs or what it is called, not what method it runs
NOT_METHOD = (
    "teacher",
    "student",
    "data",
    "name",
    "preset",
    "device",
    "precision",
    "save_checkpoint",
    "report_to",
    "eval_every",
    "eval_size",
    "max_new_tokens",
    "train_size",
    "records_every_eval",
)


def _setup_label(cfg: dict[str, Any]) -> str:
    """Which paper preset a run started from, how faithful that is, and which method settings it changed; for a
    run trained elsewhere, where it came from."""
    from kd_analysis.training.presets import AS_IN_PAPER, OUR_READING, PRESETS

    if origin_kind(cfg) is not None:
        return origin_words(cfg)

    preset = PRESETS.get(cfg.get("preset")) if isinstance(cfg.get("preset"), str) else None
    if not preset:
        return "custom"
    base = preset.config().to_dict()
    edits = sorted(k for k in base if k not in NOT_METHOD and k in cfg and cfg[k] != base[k])
    scope = {AS_IN_PAPER: "loss and optimiser as in the paper", OUR_READING: "our reading of the paper"}.get(
        preset.label, preset.label
    )
    return f"{preset.name} preset: {scope}" + (f"; edited: {', '.join(edits)}" if edits else "")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_diff(store: RunStore, run_ids: list[str]) -> list[dict[str, Any]]:
    """Settings whose values differ between the runs (one row per setting, one column per run)."""
    flat = {rid: _flatten(store.get(rid).config()) for rid in run_ids}
    keys = sorted(set().union(*[set(f) for f in flat.values()])) if flat else []
    rows = []
    for key in keys:
        values = [flat[rid].get(key) for rid in run_ids]
        if len({repr(v) for v in values}) > 1:
            rows.append(
                {"setting": key, **{rid: repr(v) if not isinstance(v, str) else v for rid, v in zip(run_ids, values)}}
            )
    return rows


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 3, 7] -> '0–3, 7' (in the given order; a run of consecutive numbers becomes a range)."""
    out: list[list[int]] = []
    for n in numbers:
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ", ".join(f"{a}" if a == b else f"{a}, {b}" if b == a + 1 else f"{a}–{b}" for a, b in out)


def plain(value: Any) -> str:
    """A setting's value as a person reads it: numbers as written short (0.0001, 4e-05), 'yes'/'no', lists
    joined (runs of integers as ranges), '—' for none or empty."""
    if value is None or value == [] or value == {}:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        if len(value) > 3 and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return _ranges(list(value))  # layer lists: '0–19, 22–29'
        return ", ".join(plain(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {plain(v)}" for k, v in value.items())
    return str(value)


def _loss_settings(cfg: dict[str, Any]) -> str:
    """Each loss term's own parameters and τ² switch ('soft CE: no τ²; Sinkhorn: eps 0.1, iters 20')."""
    terms = cfg.get("losses")
    out = []
    for t in terms if isinstance(terms, list) else []:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            continue
        bits = [f"{k} {plain(v)}" for k, v in t["params"].items()] if isinstance(t.get("params"), dict) else []
        if isinstance(t.get("tau_squared"), bool) and t["name"] != "ce":
            bits.append("τ²" if t["tau_squared"] else "no τ²")
        if bits:
            out.append(f"{LOSS_NAMES.get(t['name'], t['name'])}: {', '.join(bits)}")
    return "; ".join(out)


# rows the readable diff shows first; "losses" (a list of terms) and "epochs" are shown through these
FIRST_SETTINGS = ("name", "losses", "loss settings", "steps")


def readable_config_diff(
    store: RunStore, run_ids: list[str], labels: dict[str, str] | None = None
) -> list[dict[str, str]]:
    """The settings whose values differ, as a person reads them: one row per setting ("setting"), one column per
    run named by its label (`run_labels`).

    The loss terms are one row in words ('0.5·CE + 0.5·KL (τ = 2)', `losses_label`), their own parameters
    another ("loss settings"); the training length is one "steps" row as `steps_label` ('108 steps = 4 epochs':
    with `epochs` set the config's `steps` is not used, so two runs that differ only there are not shown as
    different); every other setting is its plain value (`plain`), nested ones as 'teacher.source'.
    """
    labels = labels or run_labels(store, run_ids)
    table: dict[str, dict[str, str]] = {}
    for rid in run_ids:
        run = store.get(rid)
        cfg = run.config()
        flat = _flatten({k: v for k, v in cfg.items() if k not in ("losses", "steps", "epochs")})
        values = {k: plain(v) for k, v in flat.items()}
        values.update(
            {
                "losses": losses_label(cfg) or "—",
                "loss settings": _loss_settings(cfg) or "—",
                "steps": steps_label(cfg, run.metrics()),
            }
        )
        table[labels.get(rid, rid)] = values
    keys = set().union(*[set(v) for v in table.values()]) if table else set()
    order = sorted(keys, key=lambda k: (FIRST_SETTINGS.index(k) if k in FIRST_SETTINGS else len(FIRST_SETTINGS), k))
    rows = []
    for key in order:
        values = {label: v.get(key, "—") for label, v in table.items()}
        if len(set(values.values())) > 1:
            rows.append({"setting": key, **values})
    return rows


REFERENCE_GROUPS = {
    "SinKD: the sinkd-sst2 preset and its twins (sentiment)": ("reference-minilm-3l-sentiment-", ()),
    "losses: KL family vs Sinkhorn in place of KD (MC)": ("reference-minilm-2l-", ("rationale",)),
    "rationales: MiniLM teacher": ("reference-minilm-2l-", ("kl", "rkl", "js", "sinkhorn")),
    "rationales: SmolLM2 teacher": ("reference-smollm2-", ("priming", "gkd")),
    "priming: one student per strategy": ("reference-smollm2-priming-", ()),
    "on-policy (GKD): off- vs on-policy, SmolLM2": ("reference-smollm2-gkd-", ()),
    "cross-tokenizer: Gemma-3 → SmolLM2, ULD vs CE": ("reference-gemma3-smollm2-", ()),
}


def reference_groups(run_ids: list[str]) -> dict[str, list[str]]:
    """The shipped reference runs grouped by the question they answer (empty groups left out)."""
    out = {}
    for title, (prefix, without) in REFERENCE_GROUPS.items():
        members = [
            r
            for r in sorted(run_ids)
            if r.startswith(prefix) and not any(r.removeprefix(prefix).startswith(w) for w in without)
        ]
        if members:
            out[title] = members
    return out


def runs_worth_comparing(runs: list, n: int = 4) -> list[str]:
    """The user's runs a comparison opens with: the newest finished ones first, then the newest running ones;
    cancelled, failed or damaged runs (often at step 0) only when nothing else is there. `runs` newest first, as
    `RunStore.list` gives them."""
    order = {"finished": 0, "running": 1, "queued": 2}
    ranked = sorted(runs, key=lambda r: (order.get(r.state, 3), runs.index(r)))
    useful = [r.run_id for r in ranked if r.state in ("finished", "running") and r.steps > 0]
    return (useful or [r.run_id for r in ranked])[:n]
