"""Run groups (one config over several seeds) and the paired questions asked of them.

A group is the set of training runs whose config names the same `group`; its runs differ only in `seed` and are
scored on the same held-out examples (`split_seed` is fixed when the group starts). Accuracy and correctness come
from each run's per-example records (`predictions.jsonl`), the student's final evaluation.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kd_analysis.exceptions import KDLensError
from kd_analysis.runs import RunStore
from kd_analysis.runs.kinds import TRAIN
from kd_analysis.stats.paired import GapClosed, PairedComparison, compare_paired, describe, gap_closed, t_interval

PER_RUN = ("seed", "name", "group")  # what differs between the runs of one group


@dataclass
class RunGroup:
    group: str
    name: str
    config: dict[str, Any]  # the settings every run shares (no seed, name or group)
    seeds: list[int]
    runs: list[str]
    eval_examples: int
    accuracies: list[float]
    mean: float | None
    interval: tuple[float, float] | None  # Student t over the seeds' accuracies
    data: str = ""
    unfinished: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["interval"] = list(self.interval) if self.interval else None
        return d


def group_id(name: str, config: dict[str, Any]) -> str:
    """A readable, stable id: the name's words and a short hash of the shared settings."""
    shared = {k: v for k, v in config.items() if k not in PER_RUN}
    digest = hashlib.sha1(json.dumps(shared, sort_keys=True, default=str).encode()).hexdigest()[:6]
    slug = re.sub(r"[^a-z0-9]+", "-", (name or "group").lower()).strip("-")[:40] or "group"
    return f"{slug}-{digest}"


def group_configs(config: dict[str, Any], seeds: Sequence[int], group: str | None = None) -> list[dict[str, Any]]:
    """One config per seed, sharing the held-out split (split_seed: the config's own, else its seed)."""
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise KDLensError("give at least one seed (e.g. --seeds 0,1,2)")
    if any(s < 0 for s in seeds):
        raise KDLensError("seeds are whole numbers ≥ 0")
    base = dict(config)
    base["split_seed"] = base.get("split_seed") if base.get("split_seed") is not None else int(base.get("seed") or 0)
    gid = group or base.get("group") or group_id(base.get("name", ""), base)
    name = base.get("name") or gid
    return [{**base, "seed": s, "group": gid, "name": f"{name} · seed {s}"} for s in seeds]


def parse_seeds(text: str) -> list[int]:
    """Seeds as the form and `--seeds` take them: ASCII whole numbers in [0, 2³² − 1], comma-separated, at least
    one, none twice (a repeated seed would be one run under two names)."""
    import re

    parts = [s for s in text.replace(" ", "").split(",") if s != ""]
    if not parts or not all(re.fullmatch(r"[0-9]{1,10}", s) for s in parts):
        raise KDLensError(f"seeds must be whole numbers separated by commas, e.g. 0,1,2 (got {text!r})")
    seeds = [int(s) for s in parts]
    if max(seeds) > 2**32 - 1:
        raise KDLensError(f"a seed must be at most 2³² − 1 (got {max(seeds)})")
    if len(set(seeds)) != len(seeds):
        raise KDLensError(f"each seed once (got {text!r})")
    return seeds


def start_group(config: dict[str, Any], seeds: Sequence[int], store: RunStore | None = None) -> list[str]:
    """Start one background run per seed (they queue: one run uses the device at a time)."""
    from kd_analysis.runs import start_run
    from kd_analysis.training.config import TrainConfig

    store = store or RunStore()
    ids = []
    for cfg in group_configs(config, seeds):
        TrainConfig.from_dict(cfg).validate()
        ids.append(start_run(cfg, store, name=cfg["name"]).run_id)
    return ids


# --- correctness from the records -----------------------------------------------------------------------------

_CORRECT: dict[tuple, pd.Series] = {}  # (records file, its mtime and size, role) -> correctness; files change rarely


def final_correct(store: RunStore, run_id: str, role: str = "student") -> pd.Series:
    """Correctness (0/1) per example id at the role's last recorded evaluation (cached by the file's stamp)."""
    from kd_analysis.error_analysis.frames import PREDICTIONS
    from kd_analysis.error_analysis.workspace import run_records
    from kd_analysis.fileio import read_jsonl

    path = store.folder(run_id) / PREDICTIONS
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, role)
    except OSError:
        key = None
    if key is not None and key in _CORRECT:
        return _CORRECT[key]
    if not path.exists():
        run_records(store, run_id)  # refuses a run without records, with what to do
    found: dict[int, dict[str, float]] = {}
    for row in read_jsonl(path):  # three fields of each row: faster than the whole records frame
        if row.get("role") == role and isinstance(row.get("step"), int) and row.get("example_id") is not None:
            ok = row.get("correct")
            found.setdefault(row["step"], {})[str(row["example_id"])] = float(ok) if ok is not None else np.nan
    if not found:
        raise KDLensError(f"run {run_id} has no {role} records")
    out = pd.Series(found[max(found)], dtype=float)
    if key is not None:
        if len(_CORRECT) > 512:
            _CORRECT.clear()
        _CORRECT[key] = out
    return out


def list_groups(store: RunStore) -> list[RunGroup]:
    """Every group in the store, newest first, with per-seed accuracy from the records of its finished runs."""
    members: dict[str, list[tuple[int, str, dict]]] = {}
    for summary in store.list(kind=TRAIN):
        try:
            cfg = store.get(summary.run_id).config()
        except Exception:
            continue
        if cfg.get("group"):
            members.setdefault(cfg["group"], []).append((int(cfg.get("seed") or 0), summary.run_id, cfg))
    groups = []
    for gid, runs in members.items():
        runs.sort()
        finished = [(s, rid, c) for s, rid, c in runs if store.get(rid).status().get("state") == "finished"]
        accs, n = [], 0
        for _, rid, _ in finished:
            try:
                correct = final_correct(store, rid)
            except KDLensError:
                continue
            accs.append(float(correct.mean()))
            n = max(n, len(correct))
        shared = {k: v for k, v in runs[0][2].items() if k not in PER_RUN}
        name = re.sub(r" · seed \d+$", "", runs[0][2].get("name") or gid)
        groups.append(
            RunGroup(
                gid,
                name,
                shared,
                [s for s, _, _ in finished],
                [rid for _, rid, _ in finished],
                n,
                accs,
                float(np.mean(accs)) if accs else None,
                t_interval(accs),
                shared.get("data", ""),
                [rid for s, rid, _ in runs if (s, rid) not in {(f[0], f[1]) for f in finished}],
            )
        )
    return groups


def members(store: RunStore, ident: str, groups: Sequence[RunGroup] | None = None) -> list[str]:
    """A group id → its finished runs; a run id → itself. `groups`: a listing already made (saves re-reading)."""
    for g in groups if groups is not None else list_groups(store):
        if g.group == ident:
            if not g.runs:
                raise KDLensError(f"group {ident} has no finished run yet")
            return g.runs
    try:
        store.get(ident).config()
    except Exception:
        raise KDLensError(f"{ident} is neither a run nor a run group (see `runs list` and `runs groups`)") from None
    return [ident]


def _matrix(store: RunStore, run_ids: Sequence[str], ids: list[str]) -> np.ndarray:
    return np.stack([final_correct(store, r).reindex(ids).to_numpy() for r in run_ids])


def _shared_ids(store: RunStore, run_ids: Sequence[str]) -> list[str]:
    common: set[str] | None = None
    for r in run_ids:
        ids = set(final_correct(store, r).dropna().index)  # an example a run could not score is left out
        common = ids if common is None else common & ids
    return sorted(common or [])


def compare(
    store: RunStore, a: str, b: str, groups: Sequence[RunGroup] | None = None
) -> tuple[PairedComparison, dict[str, Any]]:
    """A (run or group) against B on the eval examples they share; the dict is what `runs compare --json` prints."""
    groups = list(groups) if groups is not None else list_groups(store)
    runs_a, runs_b = members(store, a, groups), members(store, b, groups)
    data = {store.get(r).config().get("data") for r in runs_a + runs_b}
    if len(data) > 1:
        raise KDLensError(f"{a} and {b} were evaluated on different data sets ({', '.join(sorted(map(str, data)))})")
    ids = _shared_ids(store, runs_a + runs_b)
    if not ids:
        raise KDLensError(f"{a} and {b} share no eval example: give both the same split_seed and eval_size")
    result = compare_paired(_matrix(store, runs_a, ids), _matrix(store, runs_b, ids))
    out = {
        "a": a,
        "b": b,
        "difference": result.difference,
        "interval": list(result.interval),
        "p": result.p,
        "test": result.test,
        "n": result.n,
        "interval_method": result.interval_method,
        "seeds": list(result.seeds),
        "per_seed_p": result.per_seed_p,
        "a_mean": result.a_mean,
        "b_mean": result.b_mean,
        "sentence": describe(result, display_name(store, a, groups), display_name(store, b, groups)),
    }
    return result, out


def display_name(store: RunStore, ident: str, groups: Sequence[RunGroup] | None = None) -> str:
    for g in groups if groups is not None else list_groups(store):
        if g.group == ident:
            return g.name
    try:
        return store.get(ident).config().get("name") or ident
    except Exception:
        return ident


def gap(store: RunStore, kd: str, ce: str, groups: Sequence[RunGroup] | None = None) -> GapClosed:
    """Share of the teacher–student gap `kd` closes over its CE-only twin `ce`, teacher scored on the same examples."""
    groups = list(groups) if groups is not None else list_groups(store)
    runs_kd, runs_ce = members(store, kd, groups), members(store, ce, groups)
    ids = _shared_ids(store, runs_kd + runs_ce)
    teacher = final_correct(store, runs_kd[0], role="teacher").reindex(ids)
    if teacher.isna().any():
        raise KDLensError(f"{kd}'s teacher records do not cover the examples its students were scored on")
    return gap_closed(teacher.to_numpy()[None, :], _matrix(store, runs_kd, ids), _matrix(store, runs_ce, ids))


TWIN_KEYS = (
    "data",
    "teacher",
    "student",
    "labels",
    "split_seed",
    "eval_size",
    "train_size",
    "steps",
    "epochs",
    "batch_size",
    "lr",
    "task",
)


def is_ce_only(config: dict[str, Any]) -> bool:
    """Every weighted loss term is CE. A config whose losses are not a list of terms (a damaged run) is not."""
    losses = config.get("losses")
    if not isinstance(losses, list) or not all(isinstance(t, dict) for t in losses):
        return False
    return all(t.get("name") == "ce" for t in losses if isinstance(t.get("weight"), (int, float)) and t["weight"] > 0)


def ce_twin(store: RunStore, group: RunGroup, groups: Sequence[RunGroup]) -> RunGroup | None:
    """The CE-only group trained like `group` in every other respect (same data, pair, labels, split, budget)."""
    key = {k: group.config.get(k) for k in TWIN_KEYS}
    for other in groups:
        if (
            other.group != group.group
            and is_ce_only(other.config)
            and other.runs
            and {k: other.config.get(k) for k in TWIN_KEYS} == key
        ):
            return other
    return None


__all__ = [
    "RunGroup",
    "ce_twin",
    "compare",
    "final_correct",
    "gap",
    "group_configs",
    "is_ce_only",
    "list_groups",
    "members",
    "parse_seeds",
    "start_group",
]
