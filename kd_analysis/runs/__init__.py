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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kd_analysis import process_identity
from kd_analysis.exceptions import RunStoreError
from kd_analysis.fileio import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl_checked
from kd_analysis.locations import app_root, shipped_runs, user_data_root
from kd_analysis.runs.kinds import TRAIN
from kd_analysis.runs.layout import CONFIG, LOG, METRICS, STATUS
from kd_analysis.schema import MetricRow, StatusRecord, check_fields

STATES = ("queued", "running", "finished", "failed", "cancelled")
FINAL_STATES = ("finished", "failed", "cancelled")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ANNOTATIONS = "annotations"  # what the user adds to read-only reference runs, by run id
CANCEL_REQUEST = "cancel.request"  # a worker that sees this file stops, whether or not it can be signalled
DAMAGED = "damaged"  # shown, never stored: a run whose files cannot be read as written
HEARTBEAT_PERIOD_S = 2.0  # how often a live worker (or a training kd-lens watches) beats
STALE_AFTER_S = 20.0  # a live worker beats every 2 s; this long without a beat means it is gone
_status_lock = threading.Lock()  # the worker's heartbeat thread and main thread both write status.json

_REPOSITORY = app_root() or Path.cwd()  # workers start here, so configs' relative paths read the same


def default_root() -> Path:
    """Where the user's runs go: `$KD_LENS_RUNS`, else the per-user data folder (never the source tree)."""
    env = os.environ.get("KD_LENS_RUNS")
    return Path(env) if env else user_data_root() / "runs"


def reference_root() -> Path | None:
    """The shipped reference runs listed beside the user's: none when `$KD_LENS_RUNS` names the whole store
    (unless `$KD_LENS_REFERENCE_RUNS` names them too)."""
    if os.environ.get("KD_LENS_RUNS") and "KD_LENS_REFERENCE_RUNS" not in os.environ:
        return None
    return shipped_runs()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _read_json(path: Path) -> Any:
    import json

    from kd_analysis.fileio import open_regular

    try:
        with open_regular(path) as fh:
            return json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise RunStoreError(
            f"{path.name} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at {exc.start})"
        ) from None
    except json.JSONDecodeError as exc:
        why = "it is empty" if not exc.doc.strip() else f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
        raise RunStoreError(f"{path.name} is not valid JSON ({why})") from None
    except (ValueError, RecursionError):  # a 5,000-digit number, nesting 100,000 deep
        raise RunStoreError(f"{path.name} is not usable JSON (a number too long or nesting too deep)") from None
    except OSError as exc:
        raise RunStoreError(f"{path.name} cannot be read ({exc.strerror or exc})") from None


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
    skipped_lines: int = 0  # metrics lines that could not be read (bad bytes, bad JSON, wrong types)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Run:
    """Handle on one run folder; safe to create from several processes (writer and readers)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.run_id = self.path.name
        self.failure: str | None = None  # a worker's one-line reason, kept even when status.json cannot be written

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
            if not self.path.is_dir():  # moved or deleted after the job ended: a beat must not recreate it
                return
            status = self.status()
            status["heartbeat"] = time.time()
            atomic_write_json(self.path / STATUS, status)

    def set_phase(self, text: str | None) -> None:
        """What a running job does right now, in words ("evaluating the teacher at step 0: 3/24 examples"),
        beside its status; the pages show it while no step has been logged (`phase_at` says when it was said)."""
        with _status_lock:
            if not self.path.is_dir():
                return
            status = self.status()
            status.update({"phase": None if text is None else text[:300], "phase_at": time.time()})
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

    def request_cancel(self) -> None:
        atomic_write_text(self.path / CANCEL_REQUEST, _now() + "\n")

    def cancel_requested(self) -> bool:
        return (self.path / CANCEL_REQUEST).exists()

    # reading: a damaged file is this run's problem, never its reader's. The lenient readers below return
    # what can be trusted ({} or the good lines); `problems()` says what was wrong.
    def config(self) -> dict[str, Any]:
        return self.checked_object(CONFIG)[0]

    def status(self) -> dict[str, Any]:
        return self.checked_object(STATUS)[0]

    def metrics(self) -> list[dict[str, Any]]:
        return self.metrics_checked()[0]

    def problems(self) -> list[str]:
        """Why this run is damaged (empty when every file reads as written)."""
        out = []
        for name in (CONFIG, STATUS):
            out += [f"{name}: {p}" for p in self.checked_object(name)[1]]
        skipped = self.metrics_checked()[1]
        if skipped:
            out.append(f"{METRICS}: {skipped[0]}" + (f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""))
        return out

    def checked_object(self, name: str) -> tuple[dict[str, Any], list[str]]:
        """config.json or status.json as far as it can be trusted, and what was wrong with it (empty: nothing)."""
        try:
            obj = _read_json(self.path / name)
        except RunStoreError as exc:
            return {}, [str(exc).removeprefix(f"{name} ")]
        if obj is None:  # every run folder is created with its config: one without it was damaged since
            return {}, (["is missing"] if name == CONFIG else [])
        if not isinstance(obj, dict):
            return {}, [f"holds a {type(obj).__name__}, not an object"]
        if name != STATUS:
            return obj, []
        clean, dropped = check_fields(obj, StatusRecord)
        if "state" in clean and clean["state"] not in STATES:
            dropped.append(f"state={clean.pop('state')!r:.40}")
        return clean, [f"wrong type or value: {', '.join(dropped)}"] if dropped else []

    def metrics_checked(self) -> tuple[list[dict[str, Any]], list[str]]:
        """The readable metrics rows, and why each skipped line was skipped."""
        read = read_jsonl_checked(self.path / METRICS)
        rows, skipped = [], list(read.bad)
        for n, row in zip(read.line_numbers, read.rows):
            clean, dropped = check_fields(row, MetricRow)
            if dropped:
                skipped.append((n, f"wrong type {', '.join(dropped)}"))
            elif "step" not in clean:  # every worker writes one; plots and tables index by it
                skipped.append((n, "no step"))
            else:
                rows.append(clean)
        return rows, [f"line {n}: {why}" for n, why in sorted(skipped)]

    def read_json(self, name: str) -> Any:
        return _read_json(self._artefact(name))

    def log_tail(self, lines: int = 50) -> str:
        from kd_analysis.fileio import open_regular

        try:
            with open_regular(self.path / LOG) as fh:
                text = fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        except OSError as exc:
            return f"(the log cannot be read: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def artefacts(self) -> list[str]:
        return sorted(
            str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file() and not p.name.startswith(".")
        )

    def summary(self, metrics: tuple[list[dict[str, Any]], list[str]] | None = None) -> RunSummary:
        """Always answers: a run whose status or config cannot be trusted is `damaged`, with the reason.
        `metrics`: what `metrics_checked()` returned, when the caller has already read it."""
        (st, st_bad), (cfg, cfg_bad) = self.checked_object(STATUS), self.checked_object(CONFIG)
        metrics, skipped = metrics if metrics is not None else self.metrics_checked()
        steps = max((m.get("step", 0) for m in metrics), default=0)
        bad = [f"{STATUS}: {p}" for p in st_bad] + [f"{CONFIG}: {p}" for p in cfg_bad]
        name = cfg.get("name")
        return RunSummary(
            run_id=self.run_id,
            kind=str(st.get("kind", cfg.get("kind", "unknown"))),
            state=DAMAGED if bad else st.get("state", "unknown"),
            created=st.get("created", ""),
            updated=st.get("updated", ""),
            reason="; ".join(bad) if bad else st.get("reason"),
            name=name if isinstance(name, str) else None,
            steps=steps,
            last_metrics=metrics[-1] if metrics else {},
            reference=st.get("reference", False),
            skipped_lines=len(skipped),
        )

    def _artefact(self, name: str) -> Path:
        target = (self.path / name).resolve()
        if self.path.resolve() not in target.parents:
            raise RunStoreError(f"artefact name {name!r} leaves the run folder")
        return target


class Heartbeat(threading.Thread):
    """Beats every `period` seconds while a job (or training kd-lens only watches) is alive, and turns a cancel
    request file into the stop flag (the signal-free channel). A daemon: it dies with its process, so a killed
    job's beat stops and `reconcile` marks it failed."""

    def __init__(self, run: Run, stop: threading.Event, period: float = HEARTBEAT_PERIOD_S):
        super().__init__(daemon=True, name=f"kd-lens-heartbeat-{run.run_id}")
        self.target, self.stopped, self.stop, self.period = run, threading.Event(), stop, period

    def run(self) -> None:
        while not self.stopped.wait(self.period):
            if self.target.cancel_requested():
                self.stop.set()
            try:
                self.target.beat()
            except OSError:
                pass  # a full disk must not kill training; the next beat retries


class PhaseReporter:
    """`say(text)` for a worker's inner loops: writes the run's phase at most once per `every_s` (a token hook
    calls it hundreds of times a second), and always the first time."""

    def __init__(self, run: Run, every_s: float = 1.0):
        self.run, self.every_s, self._last = run, every_s, float("-inf")

    def say(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.run.set_phase(text)


class RunStore:
    """The user's runs in `root`, and the shipped reference runs in `reference`, read-only, listed beside them.

    New runs are created in `root` only. The reference store is consulted only for the default store (no root
    given, or the default one): a store opened on a folder of its own is exactly that folder."""

    def __init__(self, root: str | os.PathLike | None = None, reference: str | os.PathLike | None = None):
        self.root = Path(root) if root else default_root()
        if self.root.exists() and not self.root.is_dir():
            raise RunStoreError(f"{self.root} is a file, not a run store folder (--root / $KD_LENS_RUNS)")
        if reference is None and (root is None or self.root == default_root()):
            reference = reference_root()
        self.reference = Path(reference) if reference else None
        if self.reference is not None and (
            not self.reference.is_dir() or self.reference.resolve() == self.root.resolve()
        ):
            self.reference = None  # absent, or the store itself (`runs make-reference` writes there)

    def _roots(self) -> list[Path]:
        return [self.root] + ([self.reference] if self.reference is not None else [])

    def folder(self, run_id: str) -> Path:
        """A run's folder: the user's run of that id, else the reference run, else where a new one would go."""
        _check_id(run_id)
        for root in self._roots():
            path = root / run_id
            if (path / STATUS).exists() or (path / CONFIG).exists():
                return path
        return self.root / run_id

    def is_reference(self, run_id: str) -> bool:
        """A shipped reference run (read-only: what the app adds about it goes to the user's folder)."""
        return self.reference is not None and self.folder(run_id).parent == self.reference

    def annotations(self, run_id: str) -> Path:
        """Where files added to a finished run go (explanations): its own folder, or for a read-only reference run
        a folder of the same name under the user's `annotations/`."""
        if self.is_reference(run_id):
            return self.root / ANNOTATIONS / run_id
        return self.folder(run_id)

    def create(
        self,
        kind: str,
        config: dict[str, Any],
        *,
        run_id: str | None = None,
        state: str = "queued",
        **status_extra: Any,
    ) -> Run:
        """A new run folder with its config and a first status; never reuses or overwrites an existing run."""
        run_id = run_id or f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(3)}"
        _check_id(run_id)
        if self.is_reference(run_id):
            raise RunStoreError(f"run {run_id!r} already exists among the reference runs in {self.reference}")
        path = self.root / run_id
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise RunStoreError(f"run {run_id!r} already exists in {self.root}") from None
        atomic_write_json(path / CONFIG, {"kind": kind, **config})
        run = Run(path)
        run.set_status(state, kind=kind, created=_now(), **status_extra)
        return run

    def outside(self, path: Path) -> bool:
        """A run folder that is a symbolic link out of the store: its cancel requests, notes and artefacts would be
        written wherever the link points, so it is listed as damaged and never opened."""
        return path.is_symlink() and path.parent.resolve() not in path.resolve().parents

    def get(self, run_id: str) -> Run:
        path = self.folder(run_id)
        if self.outside(path):
            raise RunStoreError(f"run {run_id!r} is a link to a folder outside {path.parent}; it is not opened")
        if not (path / STATUS).exists() and not (path / CONFIG).exists():
            raise RunStoreError(f"no run {run_id!r} in {self.root}")
        return Run(path)

    def list(self, kind: str | None = None) -> list[RunSummary]:
        """Every run, newest first (a user's run shadows a reference run of the same id); a damaged folder is
        listed as 'damaged' (with why) rather than hiding the rest."""
        out: dict[str, RunSummary] = {}
        for root in reversed(self._roots()):  # the reference first, so the user's runs replace theirs
            for summary in self._list_root(root):
                if kind is None or summary.kind == kind:
                    out[summary.run_id] = summary
                else:
                    out.pop(summary.run_id, None)
        return sorted(out.values(), key=lambda s: (s.created, s.run_id), reverse=True)

    def _list_root(self, root: Path) -> list[RunSummary]:
        if not root.exists():
            return []
        out = []
        for path in sorted(root.iterdir()):
            if not path.is_dir() or path.name.startswith(".") or not RUN_ID.match(path.name):
                continue
            if path.name.endswith(".new"):  # a reference run being rebuilt (`runs make-reference`)
                continue
            if not (path / STATUS).exists() and not (path / CONFIG).exists():
                continue
            try:
                if self.outside(path):
                    raise RunStoreError("the folder is a link to outside the store; it is not opened")
                summary = Run(path).summary()
            except Exception as exc:
                summary = RunSummary(
                    run_id=path.name,
                    kind="unknown",
                    state=DAMAGED,
                    created="",
                    updated="",
                    reason=str(exc) if isinstance(exc, RunStoreError) else f"{type(exc).__name__}: {exc}",
                )
            out.append(summary)
        return out

    def show(self, run_id: str) -> dict[str, Any]:
        run = self.get(run_id)
        return {
            "run_id": run_id,
            "path": str(run.path),
            "config": run.config(),
            "status": run.status(),
            "metrics": run.metrics(),
            "artefacts": run.artefacts(),
            "problems": run.problems(),
        }


def reconcile(store: RunStore, stale_after: float = STALE_AFTER_S) -> list[str]:
    """Mark runs whose worker died (kill -9, crash, reboot) as failed, keeping their metrics. Returns their ids.

    A run is judged by its own files only: a damaged run is left as it is (listed as damaged), never fatal."""
    marked = []
    for summary in store.list():
        if summary.state not in ("queued", "running"):
            continue
        try:
            if _mark_if_dead(store.get(summary.run_id), summary.steps, stale_after):
                marked.append(summary.run_id)
        except (OSError, RunStoreError):
            continue  # unreadable or read-only folder: the listing still shows it
    return marked


def _mark_if_dead(run: Run, steps: int, stale_after: float) -> bool:
    st = run.status()
    beat = st.get("heartbeat")
    beat_age = time.time() - beat if beat is not None else None
    if st.get("pid") is None and (beat_age is None or beat_age < stale_after * 3):
        return False  # just created; its worker has not reported yet
    verdict = process_identity.check(st, run.run_id, str(run.path.parent))
    if verdict.verified or (verdict.alive and (beat_age is None or beat_age <= stale_after)):
        return False  # a proven worker is alive however late its beat (cold imports can take a while)
    run.set_status(
        "failed",
        reason=f"the worker stopped without finishing (killed or crashed) after step "
        f"{steps}; the metrics written so far are kept",
    )
    run.log(f"marked failed: no heartbeat from the worker ({verdict.reason})")
    return True


def start_run(
    config: dict[str, Any], store: RunStore | None = None, *, name: str | None = None, kind: str = TRAIN
) -> Run:
    """Create a run folder and start its worker (`python -m kd_analysis job`) in a new process group.

    The worker's command line carries a fresh token, recorded with its pid and start time, so that a cancel
    can prove it signals this run's worker and nothing else."""
    store = store or RunStore()
    config = {k: v for k, v in config.items() if k != "kind"}
    run = store.create(kind, config, state="queued", name=name or config.get("name"))
    token = process_identity.new_token()
    out = open(run.path / "worker.out", "ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kd_analysis",
            "job",
            "--run-id",
            run.run_id,
            "--root",
            str(store.root),
            "--token",
            token,
        ],
        cwd=_REPOSITORY,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    out.close()
    # the worker is this process's child: wait for it in the background, or every finished run would stay a
    # zombie under the server until the server exits (a plain daemon thread: exiting never waits for a worker)
    threading.Thread(target=proc.wait, name=f"kd-lens-reap-{run.run_id}", daemon=True).start()
    run.set_status("queued", **process_identity.child_process(proc.pid, token))
    return run


def cancel_run(store: RunStore, run_id: str, wait_s: float = 15.0) -> str:
    """Stop a queued or running run. Returns its final state.

    Two channels: a `cancel.request` file that every worker polls with its heartbeat, and SIGTERM (then
    SIGKILL after `wait_s`) to its process group, sent only when the process behind the recorded pid proves it
    is this run's worker (start time, boot and token match). A stale, copied or forged status never gets a
    process signalled: the run is marked cancelled and the process named in it is left alone."""
    run = store.get(run_id)
    problems = [p for p in run.problems() if p.startswith(STATUS)]
    if problems:
        raise RunStoreError(f"run {run_id} is damaged ({problems[0]}); fix or remove its folder, nothing was signalled")
    st = run.status()
    if st.get("state") in FINAL_STATES:
        return st["state"]
    run.request_cancel()
    verdict = process_identity.check(st, run.run_id, str(store.root))
    if not verdict.alive:
        run.set_status("cancelled", reason="cancelled (the worker was not running)")
        return "cancelled"
    if verdict.verified:
        _signal(st, signal.SIGTERM)
    else:  # maybe a foreground run (no token): it stops itself on the request file within a heartbeat or two
        run.log(f"cancel: not signalling pid {st.get('pid')}: {verdict.reason}")
        beating = time.time() - st.get("heartbeat", 0) < STALE_AFTER_S
        wait_s = min(wait_s, 3 * HEARTBEAT_PERIOD_S) if beating else 0.0
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if run.status().get("state") in FINAL_STATES:
            return run.status()["state"]
        time.sleep(0.2)
    if verdict.verified and process_identity.check(st, run.run_id, str(store.root)).verified:
        _signal(st, signal.SIGKILL)
        run.set_status("cancelled", reason="cancelled (the worker did not stop in time and was killed)")
    elif verdict.verified:
        run.set_status("cancelled", reason="cancelled (the worker stopped on SIGTERM before it could report)")
    else:
        run.set_status("cancelled", reason=f"cancelled without signalling any process ({verdict.reason})")
    return "cancelled"


def _signal(status: dict[str, Any], sig: int) -> None:
    """The worker's group when it leads one (as start_run arranges), else the worker alone."""
    pid, pgid = int(status["pid"]), status.get("pgid")
    try:
        if pgid == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _check_id(run_id: str) -> None:
    if not RUN_ID.match(run_id or ""):
        raise RunStoreError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-'")


def uploads_used_by_runs(store: RunStore) -> dict[str, str]:
    """Uploaded files that some run's config names (its data set, a model folder), each with one run using it:
    removing uploads keeps these, so a run can still be evaluated, explained or re-run from what it trained on."""
    from kd_analysis.data.uploads import is_upload

    found: dict[str, str] = {}

    def walk(value: Any, run_id: str) -> None:
        if isinstance(value, str):
            if value not in found and is_upload(value):
                found[value] = run_id
        elif isinstance(value, dict):
            for v in value.values():
                walk(v, run_id)
        elif isinstance(value, list):
            for v in value:
                walk(v, run_id)

    for summary in store.list():
        try:
            walk(store.get(summary.run_id).config(), summary.run_id)
        except Exception:  # a damaged config names nothing; the store's listing already says why
            continue
    return found
