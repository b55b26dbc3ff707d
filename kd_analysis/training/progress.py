"""What the pages show about runs: progress with ETA, and comparisons across runs (pure data, no UI)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kd_analysis.stats import wilson_interval
from kd_analysis.runs import Run, RunStore

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _latest(records: list[dict], prefix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in records:
        for k, v in r.items():
            if k.startswith(prefix) and isinstance(v, (int, float)):
                out[k[len(prefix):]] = v
    return out


def run_progress(run: Run) -> RunProgress:
    read = run.metrics_checked()  # read once: the summary below reuses it
    cfg, metrics = run.config(), read[0]
    steps = [m for m in metrics if "loss" in m or "total_steps" in m]  # training steps, or job progress records
    last = steps[-1] if steps else {}
    planned = cfg.get("steps") if cfg.get("kind", "train") == "train" and not cfg.get("epochs") else None
    total = last.get("total_steps") or planned
    if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
        total = None
    step = int(last.get("step", 0))
    summary = run.summary(read)  # says "damaged", and why, when status.json or config.json cannot be trusted
    state, reason = summary.state, summary.reason
    fraction = 1.0 if state == "finished" else (min(step / total, 1.0) if total else 0.0)
    name = cfg.get("name") if isinstance(cfg.get("name"), str) else None
    eta, elapsed = last.get("eta_s"), last.get("elapsed_s")
    return RunProgress(run_id=run.run_id, name=name or run.run_id, state=state, reason=reason,
                       step=step, total=total, fraction=fraction,
                       eta_s=eta if state == "running" and isinstance(eta, (int, float)) else None,
                       elapsed_s=elapsed if isinstance(elapsed, (int, float)) else None, last=last,
                       evals=_latest(metrics, EVAL_PREFIX), teacher=_latest(metrics, TEACHER_PREFIX),
                       skipped_lines=summary.skipped_lines)


def metric_names(store: RunStore, run_ids: list[str]) -> list[str]:
    """Loss terms and eval metrics present in any of the runs, losses first."""
    names: set[str] = set()
    for rid in run_ids:
        for m in store.get(rid).metrics():
            names.update(k for k, v in m.items() if isinstance(v, (int, float)) and
                         (k.startswith(LOSS_PREFIX) or k.startswith(EVAL_PREFIX)))
    return sorted(names, key=lambda n: (not n.startswith(LOSS_PREFIX), n != "loss", n))


def _name(cfg: dict[str, Any], rid: str) -> str:
    name = cfg.get("name")
    return name if isinstance(name, str) and name else rid


def _losses_label(cfg: dict[str, Any]) -> str:
    """'0.5·ce + 0.5·kl'; terms a hand-edited config got wrong are shown as '?', never fatal."""
    terms = cfg.get("losses")
    if not isinstance(terms, list):
        return "?" if terms is not None else ""
    out = []
    for t in terms:
        weight = t.get("weight") if isinstance(t, dict) else None
        name = t.get("name") if isinstance(t, dict) else None
        out.append(f"{weight:g}·{name}" if isinstance(weight, (int, float)) and isinstance(name, str) else "?")
    return " + ".join(out)


def curves(store: RunStore, run_ids: list[str], metric: str) -> dict[str, tuple[list[int], list[float]]]:
    out = {}
    for rid in run_ids:
        run = store.get(rid)
        label = _name(run.config(), rid)
        pts = [(m["step"], m[metric]) for m in run.metrics() if isinstance(m.get(metric), (int, float))]
        if pts:
            out[label] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


def final_table(store: RunStore, run_ids: list[str]) -> list[dict[str, Any]]:
    rows = []
    for rid in run_ids:
        try:
            rows.append(_final_row(store, rid))
        except Exception as exc:  # noqa: BLE001 - a run damaged in a way nobody foresaw is one row, not the page
            rows.append({"run": rid, "name": rid, "state": "damaged", "set-up": f"{type(exc).__name__}: {exc}"})
    return rows


def _final_row(store: RunStore, rid: str) -> dict[str, Any]:
    """One run's row of the Compare page's final-metrics table."""
    p = run_progress(store.get(rid))
    cfg = store.get(rid).config()
    row = {"run": rid, "name": p.name, "state": p.state, "steps": p.step, "losses": _losses_label(cfg),
           "final loss": p.last.get("loss")}
    row["set-up"] = _setup_label(cfg)
    row.update({f"final {k}": v for k, v in p.evals.items()})
    n = next((m["held_out"] for m in store.get(rid).metrics() if m.get("step") == 0 and "held_out" in m), None)
    n = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None
    row["eval n"] = n
    for key in RATE_METRICS:
        if isinstance(p.evals.get(key), (int, float)) and n:
            low, high = wilson_interval(p.evals[key], n)
            row[f"final {key} 95% interval"] = f"{low:.1%}–{high:.1%}"
    evals = [m for m in store.get(rid).metrics() if any(k.startswith(EVAL_PREFIX) for k in m)]
    for key in {k for m in evals for k in m if k.startswith(EVAL_PREFIX)}:
        best = min if key.endswith(LOWER_IS_BETTER) else max
        values = [m[key] for m in evals if isinstance(m.get(key), (int, float))]
        row[f"best {key[len(EVAL_PREFIX):]}"] = best(values) if values else None
    row.update({f"teacher {k}": v for k, v in p.teacher.items()})
    row["minutes"] = round((p.elapsed_s or 0) / 60, 2)
    return row


RATE_METRICS = ("accuracy", "exact_match")  # proportions of the held-out examples: shown with a Wilson interval


# Settings that say where a run runs or what it is called, not what method it runs
NOT_METHOD = ("teacher", "student", "data", "name", "preset", "device", "precision", "save_checkpoint", "report_to",
              "eval_every", "eval_size", "max_new_tokens", "train_size", "records_every_eval")


def _setup_label(cfg: dict[str, Any]) -> str:
    """Which paper preset a run started from, how faithful that is, and which method settings it changed."""
    from kd_analysis.training.presets import AS_IN_PAPER, OUR_READING, PRESETS

    preset = PRESETS.get(cfg.get("preset")) if isinstance(cfg.get("preset"), str) else None
    if not preset:
        return "custom"
    base = preset.config().to_dict()
    edits = sorted(k for k in base if k not in NOT_METHOD and k in cfg and cfg[k] != base[k])
    scope = {AS_IN_PAPER: "loss and optimiser as in the paper", OUR_READING: "our reading of the paper"}.get(
        preset.label, preset.label)
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
            rows.append({"setting": key, **{rid: repr(v) if not isinstance(v, str) else v
                                            for rid, v in zip(run_ids, values)}})
    return rows


REFERENCE_GROUPS = {
    "SinKD: the sinkd-sst2 preset and its twins (sentiment)": ("reference-minilm-3l-sentiment-", ()),
    "losses: KL family vs Sinkhorn in place of KD (MC)": ("reference-minilm-2l-", ("rationale",)),
    "rationales: MiniLM teacher": ("reference-minilm-2l-", ("kl", "rkl", "js", "sinkhorn")),
    "rationales: SmolLM2 teacher": ("reference-smollm2-", ("priming",)),
    "priming: one student per strategy": ("reference-smollm2-priming-", ()),
}


def reference_groups(run_ids: list[str]) -> dict[str, list[str]]:
    """The shipped reference runs grouped by the question they answer (empty groups left out)."""
    out = {}
    for title, (prefix, without) in REFERENCE_GROUPS.items():
        members = [r for r in sorted(run_ids) if r.startswith(prefix)
                   and not any(r.removeprefix(prefix).startswith(w) for w in without)]
        if members:
            out[title] = members
    return out
