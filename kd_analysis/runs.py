"""Run store: one folder per run holding config.json, status.json, metrics.jsonl and artefacts.

The folder is the truth: workers write it, pages and the CLI read it, and a browser or app restart loses
nothing. Every JSON file is written atomically (temp file + rename); metrics are appended one line per write.
"""
from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kd_analysis.errors import RunStoreError
from kd_analysis.fileio import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl

STATES = ("queued", "running", "finished", "failed", "cancelled")
FINAL_STATES = ("finished", "failed", "cancelled")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CONFIG, STATUS, METRICS, LOG = "config.json", "status.json", "metrics.jsonl", "log.txt"
STALE_AFTER_S = 20.0  # a live worker beats every 2 s; this long without a beat means it is gone
_status_lock = threading.Lock()  # the worker's heartbeat thread and main thread both write status.json


def default_root() -> Path:
    """`$KD_LENS_RUNS`, else `cached_runs/` next to the app (the repository root)."""
    env = os.environ.get("KD_LENS_RUNS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "cached_runs"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunStoreError(f"{path} is unreadable ({exc})") from None


@dataclass
class RunSummary:
    run_id: str
    kind: str
    state: str
    created: str
    updated: str
    reason: str | None = None
    name: str | None = None
    steps: int = 0
    last_metrics: dict[str, Any] = field(default_factory=dict)
    reference: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Run:
    """Handle on one run folder; safe to create from several processes (writer and readers)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.run_id = self.path.name

    # writing
    def set_status(self, state: str, reason: str | None = None, **extra: Any) -> dict[str, Any]:
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}; one of {STATES}")
        with _status_lock:
            status = self.status()
            status.update(extra)
            status.update({"state": state, "reason": reason, "updated": _now(), "heartbeat": time.time()})
            atomic_write_json(self.path / STATUS, status)
        return status

    def beat(self) -> None:
        """Record that the worker is alive, without touching anything else in the status."""
        with _status_lock:
            status = self.status()
            status["heartbeat"] = time.time()
            atomic_write_json(self.path / STATUS, status)

    def append_metrics(self, record: dict[str, Any]) -> None:
        append_jsonl(self.path / METRICS, {"time": time.time(), **record})

    def write_json(self, name: str, obj: Any) -> Path:
        target = self._artefact(name)
        atomic_write_json(target, obj)
        return target

    def write_text(self, name: str, text: str) -> Path:
        target = self._artefact(name)
        atomic_write_text(target, text)
        return target

    def log(self, line: str) -> None:
        with open(self.path / LOG, "a", encoding="utf-8") as fh:
            fh.write(f"[{_now()}] {line.rstrip()}\n")

    # reading
    def config(self) -> dict[str, Any]:
        return _read_json(self.path / CONFIG) or {}

    def status(self) -> dict[str, Any]:
        return _read_json(self.path / STATUS) or {}

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / METRICS)

    def read_json(self, name: str) -> Any:
        return _read_json(self._artefact(name))

    def log_tail(self, lines: int = 50) -> str:
        try:
            return "\n".join((self.path / LOG).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def artefacts(self) -> list[str]:
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def summary(self) -> RunSummary:
        st, cfg = self.status(), self.config()
        metrics = self.metrics()
        steps = max((int(m.get("step", 0)) for m in metrics), default=0)
        return RunSummary(run_id=self.run_id, kind=st.get("kind", cfg.get("kind", "unknown")),
                          state=st.get("state", "unknown"), created=st.get("created", ""),
                          updated=st.get("updated", ""), reason=st.get("reason"), name=cfg.get("name"),
                          steps=steps, last_metrics=metrics[-1] if metrics else {},
                          reference=bool(st.get("reference", False)))

    def _artefact(self, name: str) -> Path:
        target = (self.path / name).resolve()
        if self.path.resolve() not in target.parents:
            raise RunStoreError(f"artefact name {name!r} leaves the run folder")
        return target


class RunStore:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root else default_root()

    def create(self, kind: str, config: dict[str, Any], *, run_id: str | None = None,
               state: str = "queued", **status_extra: Any) -> Run:
        """A new run folder with its config and a first status; never reuses or overwrites an existing run."""
        run_id = run_id or f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(3)}"
        _check_id(run_id)
        path = self.root / run_id
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise RunStoreError(f"run {run_id!r} already exists in {self.root}") from None
        atomic_write_json(path / CONFIG, {"kind": kind, **config})
        run = Run(path)
        run.set_status(state, kind=kind, created=_now(), **status_extra)
        return run

    def get(self, run_id: str) -> Run:
        _check_id(run_id)
        path = self.root / run_id
        if not (path / STATUS).exists() and not (path / CONFIG).exists():
            raise RunStoreError(f"no run {run_id!r} in {self.root}")
        return Run(path)

    def list(self, kind: str | None = None) -> list[RunSummary]:
        """Every readable run, newest first; a damaged folder is listed as 'unknown' rather than hiding the rest."""
        if not self.root.exists():
            return []
        out = []
        for path in sorted(self.root.iterdir()):
            if not path.is_dir() or path.name.startswith(".") or not RUN_ID.match(path.name):
                continue
            if path.name.endswith(".new"):  # a reference run being rebuilt (`runs make-reference`)
                continue
            if not (path / STATUS).exists() and not (path / CONFIG).exists():
                continue
            try:
                summary = Run(path).summary()
            except RunStoreError as exc:
                summary = RunSummary(run_id=path.name, kind="unknown", state="unknown", created="", updated="",
                                     reason=str(exc))
            if kind is None or summary.kind == kind:
                out.append(summary)
        return sorted(out, key=lambda s: (s.created, s.run_id), reverse=True)

    def show(self, run_id: str) -> dict[str, Any]:
        run = self.get(run_id)
        return {"run_id": run_id, "path": str(run.path), "config": run.config(), "status": run.status(),
                "metrics": run.metrics(), "artefacts": run.artefacts()}


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process counts as gone
        with open(f"/proc/{int(pid)}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


def reconcile(store: RunStore, stale_after: float = STALE_AFTER_S) -> list[str]:
    """Mark runs whose worker died (kill -9, crash, reboot) as failed, keeping their metrics. Returns their ids."""
    marked = []
    for summary in store.list():
        if summary.state not in ("queued", "running"):
            continue
        run = store.get(summary.run_id)
        st = run.status()
        pid = st.get("pid")
        beat_age = time.time() - float(st.get("heartbeat") or 0)
        if pid is None and beat_age < stale_after * 3:
            continue  # just created; its worker has not reported yet
        if not _alive(pid) or beat_age > stale_after:
            steps = summary.steps
            run.set_status("failed", reason=f"the worker stopped without finishing (killed or crashed) after step "
                                            f"{steps}; the metrics written so far are kept")
            run.log("marked failed: no heartbeat from the worker")
            marked.append(summary.run_id)
    return marked


def start_run(config: dict[str, Any], store: RunStore | None = None, *, name: str | None = None,
              kind: str = "train") -> Run:
    """Create a run folder and start its worker (`python -m kd_analysis job`) in a new process group."""
    store = store or RunStore()
    config = {k: v for k, v in config.items() if k != "kind"}
    run = store.create(kind, config, state="queued", name=name or config.get("name"))
    out = open(run.path / "worker.out", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "kd_analysis", "job", "--run-id", run.run_id,
                             "--root", str(store.root)],
                            cwd=Path(__file__).resolve().parent.parent, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()
    run.set_status("queued", pid=proc.pid, pgid=proc.pid)
    return run


def cancel_run(store: RunStore, run_id: str, wait_s: float = 15.0) -> str:
    """Ask the worker to stop (SIGTERM to its group); kill it if it does not within `wait_s`. Returns the state."""
    run = store.get(run_id)
    st = run.status()
    if st.get("state") in FINAL_STATES:
        return st["state"]
    pgid = st.get("pgid") or st.get("pid")
    if not pgid or not _alive(st.get("pid")):
        run.set_status("cancelled", reason="cancelled (the worker was not running)")
        return "cancelled"
    try:
        os.killpg(int(pgid), signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if run.status().get("state") in FINAL_STATES:
            return run.status()["state"]
        time.sleep(0.2)
    try:
        os.killpg(int(pgid), signal.SIGKILL)
    except ProcessLookupError:
        pass
    run.set_status("cancelled", reason="cancelled (the worker did not stop in time and was killed)")
    return "cancelled"


def _check_id(run_id: str) -> None:
    if not RUN_ID.match(run_id or ""):
        raise RunStoreError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-'")
