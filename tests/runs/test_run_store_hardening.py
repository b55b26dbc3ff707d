"""A damaged, stale or forged run store never hurts the user: no foreign process is signalled, one bad run
never hides the others, and the CLI sees a dead worker without a page being opened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kd_analysis import cli, process_identity
from kd_analysis.exceptions import RunStoreError
from kd_analysis.runs import RunStore, cancel_run, reconcile

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def foreign():
    """An unrelated process group (as another user's job would be): `setsid sleep`."""
    proc = subprocess.Popen(["setsid", "sleep", "120"])  # not a group leader yet: setsid execs in place
    time.sleep(0.2)
    yield proc
    proc.kill()
    proc.wait()


def _alive(proc: subprocess.Popen) -> bool:
    return proc.poll() is None


def _running_run(store: RunStore, run_id: str, **status):
    run = store.create("train", {"name": run_id}, run_id=run_id)
    run.set_status("running", **status)
    return run


@pytest.mark.parametrize(
    "forged",
    [
        "pid only",
        "start time without token",
        "start time and a wrong token",
        "token that is one of its arguments",
        "copied from an earlier boot",
    ],
)
def test_cancel_never_signals_a_process_the_status_merely_names(tmp_path, foreign, forged):
    store = RunStore(tmp_path / "runs")
    ident = {"pid": foreign.pid, "pgid": foreign.pid}
    if forged != "pid only":
        ident["proc_start"] = process_identity.start_time(foreign.pid)
    if forged == "start time and a wrong token":
        ident["token"] = process_identity.new_token()
    if forged == "token that is one of its arguments":
        ident["token"] = "120"  # `sleep 120`: on its command line, but not as this run's token
    if forged == "copied from an earlier boot":
        ident.update(token="sleep", boot_id="00000000-0000-0000-0000-000000000000")  # token even in its argv
    run = _running_run(store, "forged", **ident)
    t0 = time.monotonic()
    assert cancel_run(store, run.run_id, wait_s=2) == "cancelled"
    assert _alive(foreign), "a process that is not this run's worker was signalled"
    assert time.monotonic() - t0 < 10
    st = run.status()
    assert st["state"] == "cancelled"
    assert "without signalling" in st["reason"] or "not running" in st["reason"]


def test_identity_check_accepts_the_real_worker_only(tmp_path):
    store = RunStore(tmp_path / "runs")
    token = process_identity.new_token()
    proc = _fake_worker(store, "r1", token)
    try:
        time.sleep(0.3)
        real = process_identity.child_process(proc.pid, token)
        assert process_identity.check(real, "r1", str(store.root)).verified
        assert not process_identity.check(real, "r2", str(store.root)).verified  # another run's folder
        assert not process_identity.check(real, "r1", str(tmp_path / "elsewhere")).verified
        assert not process_identity.check({**real, "token": process_identity.new_token()}, "r1").verified
        assert not process_identity.check({**real, "proc_start": "1"}).alive  # pid reused by a later process
    finally:
        proc.kill()
        proc.wait()
    assert not process_identity.check(real).alive


def _fake_worker(store: RunStore, run_id: str, token: str) -> subprocess.Popen:
    """A process with a worker's command line (`job --run-id ID --root ROOT --token T`) that only sleeps."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(120)",
            "job",
            "--run-id",
            run_id,
            "--root",
            str(store.root),
            "--token",
            token,
        ],
        start_new_session=True,
    )


@pytest.fixture
def live_run(tmp_path):
    """A run whose status names a live process started as `start_run` starts workers: (store, run, process)."""
    store = RunStore(tmp_path / "runs")
    token = process_identity.new_token()
    run = store.create("train", {"name": "live"}, run_id="live")
    worker = _fake_worker(store, "live", token)
    time.sleep(0.3)
    run.set_status("running", **process_identity.child_process(worker.pid, token))
    yield store, run, worker
    worker.kill()
    worker.wait()


def test_a_copied_live_run_folder_never_cancels_the_original(live_run):
    import shutil

    store, run, worker = live_run
    shutil.copytree(run.path, store.root / "copy")
    assert cancel_run(store, "copy", wait_s=2) == "cancelled"
    assert _alive(worker), "cancelling a copy killed the original run's worker"
    assert cancel_run(store, "live", wait_s=2) == "cancelled"  # the real one is verified and signalled
    assert worker.wait(timeout=10) == -15
    assert "SIGTERM" in run.status()["reason"]


def test_a_verified_worker_with_a_late_heartbeat_is_not_marked_failed(live_run):
    """Cold imports can delay a worker's first beat past the stale limit; a proven live worker stays running."""
    store, run, worker = live_run
    status = json.loads((run.path / "status.json").read_text())
    (run.path / "status.json").write_text(json.dumps({**status, "heartbeat": time.time() - 3600}))
    assert reconcile(store) == [] and run.status()["state"] == "running"
    worker.kill()
    worker.wait()
    assert reconcile(store) == ["live"]


def test_a_machine_without_proc_records_nulls_and_nothing_is_damaged(tmp_path, monkeypatch):
    monkeypatch.setattr(process_identity, "boot_id", lambda: None)
    monkeypatch.setattr(process_identity, "start_time", lambda pid: None)
    store = RunStore(tmp_path / "runs")
    run = _running_run(store, "mac", **process_identity.this_process())
    assert run.status()["boot_id"] is None and store.list()[0].state == "running"


def test_reconcile_sees_through_pid_reuse(tmp_path, foreign):
    """A stale folder (e.g. after a reboot) whose pid now belongs to another live process is a dead run."""
    store = RunStore(tmp_path / "runs")
    run = _running_run(store, "stale", pid=foreign.pid, pgid=foreign.pid, proc_start="12345")
    assert reconcile(store) == ["stale"]
    assert run.status()["state"] == "failed" and _alive(foreign)


_COOPERATIVE_WORKER = textwrap.dedent("""
    import sys, time
    from kd_analysis.runs import RunStore
    from kd_analysis.training.worker import supervise
    store = RunStore(sys.argv[1]); run = store.get("fg")
    def body(stop):
        while not stop.is_set():
            time.sleep(0.1)
        return "cancelled", "stopped on request", {}
    sys.exit(supervise(run, store.root, "cpu", body))
""")


def test_a_foreground_worker_without_token_stops_on_the_request_file(tmp_path):
    """No token (a run started in a terminal): cancel sends no signal, the worker stops by itself."""
    store = RunStore(tmp_path / "runs")
    run = store.create("attention", {"name": "fg"}, run_id="fg")
    proc = subprocess.Popen([sys.executable, "-c", _COOPERATIVE_WORKER, str(store.root)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while run.status().get("state") != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run.status().get("proc_start") and not run.status().get("token")
        assert cancel_run(store, "fg") == "cancelled"
        assert run.status()["reason"] == "stopped on request"  # the worker's own words: it stopped itself
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


# damage -------------------------------------------------------------------------------------------------------
def _store_with_damage(root: Path, damage: str) -> RunStore:
    store = RunStore(root)
    good = store.create("train", {"name": "good run", "steps": 4}, run_id="good")
    good.append_metrics({"step": 1, "loss": 1.0})
    good.set_status("finished")
    bad = store.create("train", {"name": "bad run", "steps": 4}, run_id="bad")
    bad.append_metrics({"step": 1, "loss": 2.0})
    bad.set_status("running", pid=os.getpid(), pgid=os.getpgrp(), proc_start=process_identity.start_time(os.getpid()))
    metrics, status = bad.path / "metrics.jsonl", bad.path / "status.json"
    if damage == "bad byte":
        with open(metrics, "ab") as fh:
            fh.write(b'{"step": 2, "loss": "\xff\xfe"}\n')
        bad.append_metrics({"step": 3, "loss": 1.5})
    elif damage == "step not a number":
        with open(metrics, "a") as fh:
            fh.write('{"step": "abc", "loss": 1.0}\n[1, 2]\n')
    elif damage == "heartbeat not a number":
        st = json.loads(status.read_text())
        status.write_text(json.dumps({**st, "heartbeat": "soon", "pid": "abc"}))
    elif damage == "status not an object":
        status.write_text("[1, 2, 3]")
    elif damage == "status bad bytes":
        status.write_bytes(b'{"state": "running\xff"}')
    elif damage == "missing keys":
        status.write_text("{}")
        (bad.path / "config.json").write_text("{}")
    elif damage == "unknown state":
        status.write_text(json.dumps({"state": "exploded", "kind": "train"}))
    elif damage == "absurd json":  # a 5,000-digit number and nesting 100,000 deep: ValueError, RecursionError
        with open(metrics, "a") as fh:
            fh.write('{"step": ' + "9" * 5000 + "}\n" + "[" * 100000 + "\n")
        (bad.path / "config.json").write_text('{"steps": ' + "9" * 5000 + "}")
    elif damage == "no step and odd config":
        with open(metrics, "a") as fh:
            fh.write('{"loss": 1.0}\n{"step": 0, "held_out": "abc", "eval_accuracy": 0.5}\n')
        (bad.path / "config.json").write_text(
            json.dumps({"name": ["a", "list"], "losses": "kl", "preset": ["x"], "steps": "ten"})
        )
    elif damage == "pid too large":  # os.kill overflows on it; no process has it
        st = json.loads(status.read_text())
        status.write_text(json.dumps({**st, "pid": 2**31, "pgid": 2**31}))
    elif damage == "odd created and kind":  # a far-future `created` would pin the run on top of every list
        st = json.loads(status.read_text())
        status.write_text(json.dumps({**st, "created": "9999", "kind": "../../x", "updated": "yesterday"}))
    elif damage == "odd loss terms":
        (bad.path / "config.json").write_text(json.dumps({"name": 42, "losses": [{"name": "kl", "weight": "x"}, 3]}))
    return store


DAMAGES = [
    "bad byte",
    "step not a number",
    "heartbeat not a number",
    "status not an object",
    "status bad bytes",
    "missing keys",
    "unknown state",
    "absurd json",
    "no step and odd config",
    "odd loss terms",
    "pid too large",
    "odd created and kind",
]


@pytest.mark.parametrize("damage", DAMAGES)
def test_one_damaged_run_never_takes_down_the_store(tmp_path, damage, capsys):
    store = _store_with_damage(tmp_path / "runs", damage)
    reconcile(store)
    runs = {r.run_id: r for r in store.list()}
    assert set(runs) == {"good", "bad"}
    assert runs["good"].state == "finished" and runs["good"].skipped_lines == 0
    bad = runs["bad"]
    if damage in ("bad byte", "step not a number"):
        assert bad.skipped_lines == (1 if damage == "bad byte" else 2) and bad.state == "running"
        assert store.get("bad").metrics()[0]["loss"] == 2.0  # good lines are kept
        assert "line 2" in store.get("bad").problems()[0]
    elif damage == "odd created and kind":
        assert bad.state == "damaged" and "created='9999'" in bad.reason and bad.created == ""
        assert [r.run_id for r in store.list()] == ["good", "bad"]  # no longer first
    elif damage in ("status not an object", "status bad bytes", "heartbeat not a number", "unknown state"):
        assert bad.state == "damaged" and bad.reason.startswith("status.json")
    elif damage == "absurd json":
        assert bad.state == "damaged" and bad.reason.startswith("config.json") and bad.skipped_lines == 2
    elif damage == "no step and odd config":
        assert bad.skipped_lines == 1 and "no step" in store.get("bad").problems()[0]
    # the CLI lists and shows every run, reconciling first, and exits 0
    assert cli.main(["runs", "list", "--json", "--root", str(store.root)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {r["run_id"] for r in listed} == {"good", "bad"}
    assert cli.main(["runs", "show", "bad", "--json", "--root", str(store.root)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert isinstance(shown["problems"], list)
    # what the Compare and Distillation runs pages compute from it
    from kd_analysis.training.progress import config_diff, curves, final_table, metric_names, run_progress

    ids = ["good", "bad"]
    for rid in ids:
        run_progress(store.get(rid))
    for name in metric_names(store, ids):
        curves(store, ids, name)
    table = final_table(store, ids)
    assert table[0]["state"] == "finished" and table[0]["losses"] == ""
    config_diff(store, ids)
    from kd_analysis.plots.runs import metric_curves, run_losses

    metric_curves(curves(store, ids, "loss"), "loss")
    run_losses([m for m in store.get("bad").metrics() if "loss" in m])


def test_a_forged_pid_past_any_process_is_never_signalled(tmp_path):
    """status.json's schema bounds a pid by Linux's limit: 2³¹ is a damaged field (reported), never handed to
    os.kill (which raised OverflowError on it), and cancel refuses the damaged status without signalling."""
    store = _store_with_damage(tmp_path / "runs", "pid too large")
    assert "pid=2147483648" in " ".join(store.get("bad").problems())
    with pytest.raises(RunStoreError, match="damaged"):
        cancel_run(store, "bad")
    from kd_analysis import process_identity as pi

    assert pi.check({"pid": 2**31, "proc_start": "1"}, "bad", str(store.root)).verified is False


def test_cancel_refuses_a_damaged_status_without_signalling(tmp_path):
    store = _store_with_damage(tmp_path / "runs", "status not an object")
    with pytest.raises(RunStoreError, match="damaged"):
        cancel_run(store, "bad")
    assert (store.root / "bad" / "status.json").read_text() == "[1, 2, 3]"  # nothing overwritten


@pytest.mark.parametrize(
    "damage", ["bad byte", "step not a number", "status bad bytes", "no step and odd config", "pid too large"]
)
@pytest.mark.parametrize(
    "page", ["pages/compare_runs.py", "pages/distillation_runs.py", "pages/saliency_rationales.py"]
)
def test_pages_survive_a_damaged_run(tmp_path, monkeypatch, damage, page):
    from streamlit.testing.v1 import AppTest

    store = _store_with_damage(tmp_path / "runs", damage)
    monkeypatch.setenv("KD_LENS_RUNS", str(store.root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]


# the CLI notices a dead worker --------------------------------------------------------------------------------
def test_cli_list_and_show_notice_a_killed_worker(tmp_path, capsys):
    store = RunStore(tmp_path / "runs")
    dead = subprocess.Popen(["true"])
    dead.wait()
    _running_run(store, "killed", pid=dead.pid, pgid=dead.pid)
    assert cli.main(["runs", "list", "--json", "--root", str(store.root)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "failed"
    _running_run(store, "killed-2", pid=dead.pid, pgid=dead.pid)
    assert cli.main(["runs", "show", "killed-2", "--json", "--root", str(store.root)]) == 0
    assert json.loads(capsys.readouterr().out)["status"]["state"] == "failed"


def test_train_failure_prints_its_reason_even_when_the_disk_is_full(tmp_path, monkeypatch, capsys):
    import errno

    from kd_analysis.runs import Run
    from kd_analysis.training import loop
    from kd_analysis.training.worker import run_worker

    store = RunStore(tmp_path / "runs")
    store.create("train", {"name": "x"}, run_id="full")
    cfg = tmp_path / "c.json"
    from kd_analysis.models.specs import ModelSpec
    from kd_analysis.training.config import TrainConfig

    cfg.write_text(TrainConfig(teacher=ModelSpec("minilm-l6"), data="demo:mcq").to_json())

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(loop, "train", no_space)
    real_set_status = Run.set_status

    def set_status(self, state, reason=None, **extra):  # the disk fills up: the failed status cannot be written
        if state == "failed":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_set_status(self, state, reason, **extra)

    monkeypatch.setattr(Run, "set_status", set_status)
    assert run_worker(cfg, run_id="full", root=str(store.root)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the disk is full") and err.count("\n") == 1


def test_a_finished_job_leaves_no_heartbeat_that_could_recreate_a_moved_folder(tmp_path, monkeypatch):
    """A reference build renames `<id>.new` as soon as the job returns: no beat may land after that."""
    import threading

    import kd_analysis.training.worker as worker

    monkeypatch.setattr(worker, "HEARTBEAT_S", 0.001)  # beats all the time, so one is always under way
    monkeypatch.setattr(worker, "_QUEUE_HELD_BY_PARENT", True)
    store = RunStore(tmp_path / "runs")
    run = store.create("attention", {"name": "hb"}, run_id="hb.new")

    def body(stop):
        time.sleep(0.05)
        return "finished", None, {}

    assert worker.supervise(run, store.root, "cpu", body) == 0
    from kd_analysis.runs import Heartbeat

    assert not [t for t in threading.enumerate() if isinstance(t, Heartbeat) and t.target.path == run.path]
    os.replace(run.path, store.root / "hb")
    time.sleep(0.05)
    assert not run.path.exists() and store.get("hb").status()["state"] == "finished"


@pytest.mark.parametrize("planted", ["fifo status", "metrics to /dev/zero", "log is a fifo"])
def test_files_that_would_block_or_never_end_are_reported_not_read(tmp_path, planted, capsys):
    """A FIFO status.json, a metrics.jsonl linked to /dev/zero, a FIFO log: `runs list` and `runs show` answer
    at once (before, the first two hung), the run is listed with its reason."""
    import threading

    store = RunStore(tmp_path / "runs")
    run = store.create("train", {"name": "planted", "steps": 1}, run_id="planted")
    run.set_status("finished")
    if planted == "fifo status":
        (run.path / "status.json").unlink()
        os.mkfifo(run.path / "status.json")
    elif planted == "metrics to /dev/zero":
        os.symlink("/dev/zero", run.path / "metrics.jsonl")
    else:
        os.mkfifo(run.path / "log.txt")
    done: list[int] = []
    worker = threading.Thread(
        target=lambda: done.extend(
            [
                cli.main(["runs", "list", "--json", "--root", str(store.root)]),
                cli.main(["runs", "show", "planted", "--json", "--root", str(store.root)]),
            ]
        ),
        daemon=True,
    )
    worker.start()
    worker.join(60)
    assert done == [0, 0], "runs list / show did not return"
    assert "not a regular file" in capsys.readouterr().out or planted == "log is a fifo"


def test_a_line_after_a_torn_one_is_kept(tmp_path):
    """A full disk tore the last metrics line (no newline); the next append starts a line of its own."""
    store = RunStore(tmp_path / "runs")
    run = store.create("train", {"name": "torn"}, run_id="torn")
    run.append_metrics({"step": 1, "loss": 1.0})
    with open(run.path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 2, "lo')
    run.append_metrics({"step": 3, "loss": 0.5})
    rows, problems = run.metrics_checked()
    assert [r["step"] for r in rows] == [1, 3]
    assert len(problems) == 1 and problems[0].startswith("line 2: not JSON")


@pytest.mark.parametrize("state", ["finished", "failed", "cancelled", "running"])
def test_a_run_executes_once(tmp_path, state, capsys):
    """`job --run-id` on a run that already ran would train it again over its metrics and result: refused in one
    sentence, and the run's files and status stay as they were."""
    store = RunStore(tmp_path / "runs")
    run = store.create("train", {"name": "done", "teacher": {"source": "minilm"}, "steps": 1}, run_id="done")
    run.append_metrics({"step": 1, "loss": 1.0})
    run.set_status(state)
    before = (run.path / "metrics.jsonl").read_text(), run.status()["state"]
    assert cli.main(["job", "--run-id", "done", "--root", str(store.root)]) == 2
    assert "a run executes once" in capsys.readouterr().err
    assert ((run.path / "metrics.jsonl").read_text(), run.status()["state"]) == before


def test_a_run_folder_without_its_config_is_damaged(tmp_path):
    store = RunStore(tmp_path / "runs")
    run = store.create("train", {"name": "x"}, run_id="noconfig")
    run.set_status("finished")
    (run.path / "config.json").unlink()
    assert store.get("noconfig").problems() == ["config.json: is missing"]
    assert next(r for r in store.list() if r.run_id == "noconfig").state == "damaged"


def test_json_output_is_strict_and_absurd_record_values_are_damage(tmp_path, capsys):
    """A metrics line with Infinity and a step of 1e25, a heartbeat in the year 33658: `--json` stays strict JSON
    (null for non-finite), the absurd step is a skipped line, the future heartbeat a damaged status field."""
    store = RunStore(tmp_path / "runs")
    run = store.create("train", {"name": "odd"}, run_id="odd")
    run.set_status("finished")
    with open(run.path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 1, "eval_accuracy": Infinity}\n{"step": 10000000000000000000000000}\n')
    assert cli.main(["runs", "show", "odd", "--json", "--root", str(store.root)]) == 0
    shown = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert shown["metrics"][0]["eval_accuracy"] is None and len(shown["metrics"]) == 1
    st = json.loads((run.path / "status.json").read_text())
    (run.path / "status.json").write_text(json.dumps({**st, "heartbeat": 1e18}))
    assert any("heartbeat=1e+18" in p for p in store.get("odd").problems())


def test_a_run_folder_linked_from_outside_the_store_is_never_opened(tmp_path, capsys):
    """A link would send cancel requests, notes and artefacts wherever it points."""
    elsewhere = RunStore(tmp_path / "elsewhere").create("train", {"name": "not ours"}, run_id="theirs")
    store = RunStore(tmp_path / "runs")
    store.create("train", {"name": "ours"}, run_id="ours")
    (store.root / "linked").symlink_to(elsewhere.path)
    (store.root / "alias").symlink_to(store.root / "ours")  # a link inside the store is only another name
    listed = {r.run_id: r for r in store.list()}
    assert listed["linked"].state == "damaged" and "outside the store" in listed["linked"].reason
    assert listed["alias"].state == "queued"
    with pytest.raises(RunStoreError, match="is a link to a folder outside"):
        store.get("linked")
    assert cli.main(["runs", "cancel", "linked", "--root", str(store.root)]) == 2
    assert "outside" in capsys.readouterr().err and not (elsewhere.path / "cancel.request").exists()


def test_a_root_that_does_not_exist_is_refused_except_by_commands_that_start_runs(tmp_path, capsys):
    missing = str(tmp_path / "typo")
    for args in (["runs", "list"], ["runs", "groups"], ["errors", "notes", "x"], ["story"]):
        assert cli.main([*args, "--root", missing]) == 2, args
        assert "does not exist: there is no run store there to read" in capsys.readouterr().err
    from kd_analysis.cli.priming import cmd_prime_start
    from kd_analysis.cli.runs import cmd_runs_make_reference, cmd_runs_start, cmd_train

    for fn in (cmd_prime_start, cmd_runs_start, cmd_train, cmd_runs_make_reference):
        assert getattr(fn, "creates_runs", False), fn.__name__


def test_a_finished_worker_is_reaped_not_left_a_zombie(tmp_path):
    """The server starts workers as its children; one that ended must not linger as a zombie under it."""
    from kd_analysis.runs import start_run

    store = RunStore(tmp_path / "runs")
    run = start_run({"teacher": {"source": "minilm"}, "steps": "not a number"}, store)  # fails at once
    pid = run.status()["pid"]
    deadline = time.monotonic() + 120
    while run.status().get("state") in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run.status()["state"] == "failed"
    stat, deadline = Path(f"/proc/{pid}/stat"), time.monotonic() + 30
    while stat.exists() and time.monotonic() < deadline:  # gone once reaped; a zombie stays ("Z" in its stat)
        time.sleep(0.2)
    assert not stat.exists(), f"the finished worker is still there: {stat.read_text()[:80]}"
