"""Trainer and worker: end-to-end CLI runs on tiny models, cancel, kill -9, re-attach, config round-trip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from kd_analysis.exceptions import KDLensError
from kd_analysis.models.specs import ModelSpec, StudentSpec
from kd_analysis.runs import RunStore, cancel_run, reconcile, start_run
from kd_analysis.training.config import LoraSettings, LossTerm, TrainConfig
from kd_analysis.training.loop import train
from kd_analysis.training.objective import kd_loss_terms
from tests.helpers.cli import cli
from tests.helpers.runs import train_config

ROOT = Path(__file__).resolve().parents[2]


def test_config_round_trip_json_and_yaml(tmp_path, tiny_dir):
    cfg = train_config(
        tiny_dir,
        tmp_path,
        lora=LoraSettings(r=4, alpha=8),
        report_to=["tensorboard"],
        losses=[LossTerm("ce", 0.6), LossTerm("sinkhorn", 0.4, {"eps": 0.05})],
        name="0o17",  # a string only YAML 1.2 reads as a number: written quoted, read back as text
        lr=1e-5,
    )
    for suffix, text in ((".json", cfg.to_json()), (".yaml", cfg.to_yaml())):
        f = tmp_path / f"c{suffix}"
        f.write_text(text)
        assert TrainConfig.load(f) == cfg


@pytest.mark.parametrize(
    "change,match",
    [
        ({"steps": "ten"}, "config.steps must be a whole number \\(got 'ten'\\)"),
        ({"lr": -1}, "lr must be a positive number"),
        ({"losses": [{"name": "bogus"}]}, "unknown loss"),
        ({"batch_size": 0}, "batch_size"),
        ({"optimizer": "lion"}, "optimizer"),
        ({"colour": "red"}, "config.colour is not a known setting"),
    ],
)
def test_bad_config_values(tmp_path, tiny_dir, change, match):
    d = {**train_config(tiny_dir, tmp_path).to_dict(), **change}
    with pytest.raises(KDLensError, match=match):
        TrainConfig.from_dict(d)


def test_training_lowers_the_loss_and_caches_the_teacher(tiny_dir, tmp_path):
    cfg = train_config(tiny_dir, tmp_path, steps=30, eval_every=30, epochs=None)
    seen = []
    res = train(cfg, out_dir=tmp_path / "out", on_metrics=seen.append)
    steps = [m for m in seen if "loss" in m]
    assert res.state == "finished" and res.steps == 30 and len(steps) == 30
    first, last = sum(m["loss"] for m in steps[:5]) / 5, sum(m["loss"] for m in steps[-5:]) / 5
    assert last < first
    # 32 training examples, batch 4: after one epoch (8 steps) the teacher is never run again, so the last 22
    # steps read all their 88 examples from the cache
    assert steps[-1]["teacher_cache_hits"] == (30 - 8) * 4
    assert (tmp_path / "out" / "checkpoint" / "model.safetensors").exists()
    assert "eval_accuracy" in steps[-1] and res.teacher_eval is not None


def test_lm_training_with_lora_and_sinkhorn(tiny_dir, tmp_path):
    data = tmp_path / "g.jsonl"
    data.write_text(
        "".join(
            json.dumps({"question": f"Tom has {i} apples and buys 1.", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"})
            + "\n"
            for i in range(20)
        )
    )
    cfg = TrainConfig(
        teacher=ModelSpec(str(tiny_dir / "llama")),
        student=StudentSpec(num_layers=1),
        data=str(data),
        steps=4,
        eval_every=4,
        eval_size=3,
        batch_size=4,
        max_new_tokens=6,
        teacher_topk=16,
        losses=[LossTerm("ce"), LossTerm("rkl"), LossTerm("sinkhorn", 0.5)],
        lora=LoraSettings(r=2, alpha=4),
    )
    res = train(cfg, out_dir=tmp_path / "lm")
    assert res.state == "finished" and "eval_exact_match" in res.metrics
    assert (tmp_path / "lm" / "checkpoint" / "adapter_model.safetensors").exists()
    from kd_analysis.fileio import read_jsonl

    rows = read_jsonl(tmp_path / "lm" / "predictions.jsonl")  # generation records: text, parsed answer, NLL
    student = [r for r in rows if r["role"] == "student"]
    assert len(student) == 3 and all(isinstance(r["generated"], str) and r["ce"] > 0 for r in student)
    assert sum(r["correct"] for r in student) / 3 == pytest.approx(res.metrics["eval_exact_match"])


def _cached_teacher(teacher_logits: torch.Tensor, labels: torch.Tensor, k: int, taus=(1.0,)):
    """A filled TeacherCache for one example: what the loop sees after the teacher's forward pass."""
    from kd_analysis.data.example import Example
    from kd_analysis.training.teacher_cache import TeacherCache

    cache = TeacherCache(topk=k, temperatures=tuple(taus))
    ex = Example(id="e0", text="q")
    cache.put_lm([ex], teacher_logits, labels, teacher_logits.shape[-1])
    return cache.lm([ex], "cpu")


@pytest.mark.parametrize("k", [4, 50])
@pytest.mark.parametrize("name", ["kl", "rkl", "js"])
def test_lm_kd_terms_are_full_vocabulary_divergences(name, k):
    """The loop's LM terms equal the dense loss when k = V and the (k+1)-bucket value when k < V, never the
    divergence renormalised over the teacher's top-k."""
    from kd_analysis.losses import LOSSES, sparse_kd, teacher_topk_logprobs
    from kd_analysis.training.batches import LMBatch

    g = torch.Generator().manual_seed(0)
    V = 50
    s_logits, t_logits = torch.randn(1, 4, V, generator=g) * 3, torch.randn(1, 4, V, generator=g) * 3
    labels = torch.tensor([[-100, 4, 5, 6]])
    cfg = TrainConfig(teacher=ModelSpec("x"), losses=[LossTerm(name)], tau=2.0, tau_squared=True, teacher_topk=k)
    terms = kd_loss_terms(cfg, LMBatch(s_logits, labels, 4), _cached_teacher(t_logits, labels, k, (2.0,)), V)
    s_rows, t_rows = s_logits[0, 1:], t_logits[0, 1:]
    lp, idx = teacher_topk_logprobs(t_rows, k, tau=2.0)
    assert terms[name].item() == pytest.approx(4 * sparse_kd(name, s_rows, lp, idx, tau=2.0).item(), rel=1e-5)
    if k == V:
        assert terms[name].item() == pytest.approx(4 * LOSSES[name](s_rows, t_rows, tau=2.0).item(), rel=1e-5)
    else:
        renormalised = 4 * LOSSES[name](s_rows.gather(-1, idx), t_rows.gather(-1, idx), tau=2.0).item()
        assert abs(terms[name].item() - renormalised) > 1e-3


def test_term_temperatures_and_sinkhorn_rows_are_never_dropped():
    """Each term runs at its own τ (the cache keeps a normaliser per τ); Sinkhorn on LM rows uses all of them."""
    from kd_analysis.losses import LOSSES
    from kd_analysis.losses.sinkhorn import sinkhorn_blocks
    from kd_analysis.training.batches import LMBatch

    g = torch.Generator().manual_seed(1)
    V, L = 20, 301
    s_logits, t_logits = torch.randn(1, L, V, generator=g), torch.randn(1, L, V, generator=g)
    labels = torch.full((1, L), 3)
    labels[0, 0] = -100  # 300 answer tokens: 4 blocks of 64 and one of 44
    cfg = TrainConfig(
        teacher=ModelSpec("x"),
        tau=1.0,
        tau_squared=False,
        teacher_topk=V,
        losses=[LossTerm("kl", tau=3.0, tau_squared=False), LossTerm("sinkhorn", tau=2.0)],
    )
    notes = []
    terms = kd_loss_terms(
        cfg, LMBatch(s_logits, labels, L), _cached_teacher(t_logits, labels, V, (2.0, 3.0)), V, note=notes.append
    )
    s_rows, t_rows = s_logits[0, 1:], t_logits[0, 1:]
    assert terms["kl"].item() == pytest.approx(LOSSES["kl"](s_rows, t_rows, tau=3.0).item(), rel=1e-5)
    ref = sinkhorn_blocks(
        torch.softmax(s_rows / 2, -1), torch.softmax(t_rows / 2, -1), teacher_probs=True, student_probs=True, tau=2.0
    )
    assert terms["sinkhorn"].item() == pytest.approx(ref.item(), rel=1e-5)
    assert any("no token is dropped" in n for n in notes)
    one = torch.tensor([[-100, 3]])
    notes.clear()
    single = kd_loss_terms(
        cfg,
        LMBatch(s_logits[:, :2], one, 2),
        _cached_teacher(t_logits[:, :2], one, V, (2.0, 3.0)),
        V,
        note=notes.append,
    )
    assert single["sinkhorn"].item() == 0.0 and any("single answer token" in n for n in notes)


def test_incompatible_pair_for_logit_losses(tiny_dir, tmp_path):
    cfg = train_config(
        tiny_dir,
        tmp_path,
        teacher=ModelSpec(str(tiny_dir / "gpt2")),
        student=StudentSpec(kind="model", model=ModelSpec(str(tiny_dir / "llama"))),
    )
    cfg.student = StudentSpec(kind="model", model=ModelSpec(str(tiny_dir / "bert"), task="causal_lm"))
    with pytest.raises(KDLensError, match="not comparable"):
        train(cfg)


def test_student_bigger_than_teacher_warns(tiny_dir, tmp_path):
    cfg = train_config(
        tiny_dir,
        tmp_path,
        steps=1,
        eval_every=1,
        student=StudentSpec(kind="shrink", num_layers=4, hidden_size=64, num_heads=4),
    )
    res = train(cfg)
    assert res.state == "finished" and "bigger than the teacher" in res.warnings[0]


def _wait(run, states, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = run.status()
        if st.get("state") in states:
            return st
        time.sleep(0.3)
    raise AssertionError(f"run stayed {run.status().get('state')}; log: {run.log_tail()}")


def _write_cfg(tmp_path, tiny_dir, **kw) -> Path:
    f = tmp_path / "run.json"
    f.write_text(train_config(tiny_dir, tmp_path, **kw).to_json())
    return f


@pytest.mark.slow
def test_ten_step_run_through_the_cli(tiny_dir, tmp_path):
    root = tmp_path / "runs"
    proc = cli("train", "--config", str(_write_cfg(tmp_path, tiny_dir)), "--root", str(root))
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(cli("runs", "show", proc.stdout.strip(), "--json", "--root", str(root)).stdout)
    assert shown["status"]["state"] == "finished"
    import hashlib

    data = shown["config"]["data"]  # the run keeps the sha256 of the file it trained on
    assert shown["status"]["data_sha256"] == hashlib.sha256(Path(data).read_bytes()).hexdigest()
    steps = [m for m in shown["metrics"] if "loss" in m]
    assert [m["step"] for m in steps] == list(range(1, 11))
    assert {"loss_ce", "loss_kl", "lr", "examples_per_s", "eta_s"} <= set(steps[-1])


def test_cli_bad_config_is_one_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("teacher: minilm\nsteps: [1, 2\n")
    proc = cli("train", "--config", str(f), "--root", str(tmp_path / "r"))
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr and "Traceback" not in proc.stderr


def test_background_run_cancel(tiny_dir, tmp_path):
    store = RunStore(tmp_path / "runs")
    run = start_run(train_config(tiny_dir, tmp_path, steps=100000, eval_every=100000).to_dict(), store)
    _wait(run, {"running"})
    deadline = time.monotonic() + 60
    while not run.metrics() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cancel_run(store, run.run_id) == "cancelled"
    st = run.status()
    assert st["state"] == "cancelled" and "cancelled at step" in st["reason"]


@pytest.mark.slow
def test_kill_9_is_detected_and_metrics_kept(tiny_dir, tmp_path):
    store = RunStore(tmp_path / "runs")
    run = start_run(train_config(tiny_dir, tmp_path, steps=100000, eval_every=100000).to_dict(), store)
    _wait(run, {"running"})
    deadline = time.monotonic() + 60
    while len([m for m in run.metrics() if "loss" in m]) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    kept = len(run.metrics())
    os.killpg(run.status()["pgid"], signal.SIGKILL)
    time.sleep(0.5)
    assert reconcile(store) == [run.run_id]
    st = run.status()
    assert st["state"] == "failed" and "killed or crashed" in st["reason"]
    assert len(run.metrics()) >= kept >= 3


@pytest.mark.slow
def test_reattach_after_restart_and_queue(tiny_dir, tmp_path):
    """Two runs at once: one waits for the device; a fresh store (an app restart) still follows both."""
    store = RunStore(tmp_path / "runs")
    cfg = train_config(tiny_dir, tmp_path, steps=15, eval_every=15).to_dict()
    a, b = start_run(cfg, store), start_run(cfg, store)
    assert a.run_id != b.run_id
    deadline = time.monotonic() + 60
    states = set()
    while time.monotonic() < deadline and not {"running"} <= states:
        states = {a.status().get("state"), b.status().get("state")}
        time.sleep(0.1)
    assert "running" in states
    restarted = RunStore(tmp_path / "runs")  # nothing in memory: the folders are the truth
    assert reconcile(restarted) == []
    for run in (restarted.get(a.run_id), restarted.get(b.run_id)):
        assert _wait(run, {"finished", "failed"}, timeout=180)["state"] == "finished"
    logs = a.log_tail(200) + b.log_tail(200)
    assert "queued" in logs  # one of them waited for the other


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tiny_dir, tmp_path):
    root = tmp_path / "runs"
    cfg = _write_cfg(tmp_path, tiny_dir, steps=3, eval_every=3, device="cpu")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--cpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "kd_analysis",
            "train",
            "--config",
            str(cfg),
            "--root",
            str(root),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = RunStore(root).list()
    assert len(runs) == 1 and runs[0].state == "finished" and runs[0].steps == 3


def test_failure_reasons_are_plain():
    import errno as _errno

    from kd_analysis.training.worker import failure_reason

    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "lower batch_size" in failure_reason(oom) and "bf16" in failure_reason(oom)
    assert "disk is full" in failure_reason(OSError(_errno.ENOSPC, "No space left on device"))
    assert failure_reason(KDLensError("plain words")) == "plain words"
    assert failure_reason(ValueError("boom\nmore")) == "ValueError: boom (traceback in the log)"


def test_crash_marks_the_run_failed_with_the_traceback(tiny_dir, tmp_path, monkeypatch):
    from kd_analysis.training import loop
    from kd_analysis.training.worker import run_worker

    def explode(*a, **k):
        raise RuntimeError("simulated crash in the loop")

    monkeypatch.setattr(loop, "train", explode)
    store = RunStore(tmp_path / "runs")
    run = store.create("train", train_config(tiny_dir, tmp_path).to_dict(), run_id="crash")
    assert run_worker(run.path / "config.json", run_id="crash", root=str(store.root)) == 1
    st = run.status()
    assert st["state"] == "failed" and st["reason"].startswith("RuntimeError: simulated crash")
    assert "Traceback" in run.log_tail(100)


def test_cancel_while_queued_is_honoured_at_once(tmp_path):
    """A run waiting for the device lock stops as soon as it is told to (cancel button, Ctrl-C), not when the
    run ahead of it finishes."""
    import fcntl
    import threading

    from kd_analysis.training.worker import supervise

    store = RunStore(tmp_path / "runs")
    store.root.mkdir(parents=True, exist_ok=True)
    holder = open(store.root / ".cpu.lock", "w")
    fcntl.flock(holder, fcntl.LOCK_EX)  # another run holds the CPU
    run = store.create("attention", {"name": "waits"}, state="queued")
    ran, saved = [], {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    t0 = time.monotonic()
    try:
        assert supervise(run, store.root, "cpu", lambda stop: ran.append(1) or ("finished", None, {})) == 0
    finally:
        timer.cancel()
        holder.close()
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert time.monotonic() - t0 < 5 and not ran
    assert run.status()["state"] == "cancelled" and "queued" in run.log_tail(20)


def test_full_vocabulary_mode_equals_the_dense_losses():
    """teacher_topk None: the teacher's whole rows, compared with the dense registry losses (no tail bucket)."""
    from kd_analysis.losses import LOSSES
    from kd_analysis.training.batches import LMBatch

    g = torch.Generator().manual_seed(2)
    s_logits, t_logits = torch.randn(2, 5, 30, generator=g), torch.randn(2, 5, 30, generator=g)
    labels = torch.tensor([[-100, 1, 2, 3, -100], [4, 5, -100, -100, -100]])
    cfg = TrainConfig(
        teacher=ModelSpec("x"),
        teacher_topk=None,
        tau=2.0,
        tau_squared=False,
        losses=[LossTerm("rkl"), LossTerm("js", tau=1.0)],
    )
    mask = labels != -100
    terms = kd_loss_terms(cfg, LMBatch(s_logits, labels, 10), t_logits[mask], 30)
    assert terms["rkl"].item() == pytest.approx(LOSSES["rkl"](s_logits[mask], t_logits[mask], tau=2.0).item(), rel=1e-5)
    assert terms["js"].item() == pytest.approx(LOSSES["js"](s_logits[mask], t_logits[mask]).item(), rel=1e-5)


def test_lm_sinkhorn_from_a_top_k_cache_never_overstates_and_refuses_batch_mass():
    """k < V: each pair is compared on the teacher row's own support plus a rest bucket (checked by hand in
    NumPy, then POT's Sinkhorn on that cost); never above Sinkhorn on the true L1 cost."""
    import numpy as np
    import ot

    from kd_analysis.training.batches import LMBatch

    g = torch.Generator().manual_seed(3)
    V, k = 20, 6
    s_logits, t_logits = (
        torch.randn(1, 9, V, generator=g, dtype=torch.float64),
        torch.randn(1, 9, V, generator=g, dtype=torch.float64) * 2,
    )
    labels = torch.full((1, 9), 1)
    labels[0, 0] = -100
    cfg = TrainConfig(
        teacher=ModelSpec("x"),
        tau=1.0,
        tau_squared=False,
        teacher_topk=k,
        losses=[LossTerm("sinkhorn", params={"eps": 0.1, "iters": 50, "domain": "log"})],
    )
    terms = kd_loss_terms(cfg, LMBatch(s_logits, labels, 9), _cached_teacher(t_logits.float(), labels, k), V)
    p = torch.softmax(s_logits[0, 1:], -1).numpy()
    q = torch.softmax(t_logits[0, 1:], -1).numpy()
    C = np.zeros((8, 8))
    for j in range(8):
        top = np.argsort(-q[j])[:k]
        for i in range(8):
            C[i, j] = np.abs(p[i, top] - q[j, top]).sum() + abs((1 - p[i, top].sum()) - (1 - q[j, top].sum()))
    a = np.full(8, 1 / 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = float((ot.sinkhorn(a, a, C, 0.1, method="sinkhorn_log", numItermax=50, stopThr=0) * C).sum())
        true_cost = ot.dist(p, q, metric="cityblock")
        upper = float(
            (ot.sinkhorn(a, a, true_cost, 0.1, method="sinkhorn_log", numItermax=50, stopThr=0) * true_cost).sum()
        )
    assert terms["sinkhorn"].item() == pytest.approx(ref, rel=1e-4)
    assert (true_cost + 1e-9 >= C).all() and terms["sinkhorn"].item() <= upper + 1e-6
    cfg.losses[0].params["mass"] = "batch"
    with pytest.raises(KDLensError, match="mass: batch"):
        kd_loss_terms(cfg, LMBatch(s_logits, labels, 9), _cached_teacher(t_logits.float(), labels, k), V)


def test_tail_mass_is_reported_and_a_thin_cache_warns():
    from kd_analysis.training.batches import LMBatch

    g = torch.Generator().manual_seed(4)
    s_logits, t_logits = torch.randn(1, 6, 500, generator=g), torch.randn(1, 6, 500, generator=g)
    labels = torch.full((1, 6), 2)
    cfg = TrainConfig(teacher=ModelSpec("x"), tau=2.0, teacher_topk=4, losses=[LossTerm("kl")])
    stats, notes = {}, []
    kd_loss_terms(
        cfg,
        LMBatch(s_logits, labels, 6),
        _cached_teacher(t_logits, labels, 4, (2.0,)),
        500,
        note=notes.append,
        stats=stats,
    )
    p = torch.softmax(t_logits[0] / 2, -1)
    assert stats["teacher_tail_mass"] == pytest.approx(float((1 - p.topk(4).values.sum(-1)).mean()), rel=1e-4)
    assert 0 < stats["student_tail_mass"] < 1 and any("hold only" in n for n in notes)


def test_repeated_loss_names_are_refused():
    with pytest.raises(KDLensError, match="repeated: kl"):
        TrainConfig(
            teacher=ModelSpec("x"), losses=[LossTerm("ce"), LossTerm("kl", tau=1.0), LossTerm("kl", tau=4.0)]
        ).validate()


def test_answer_rows_cross_entropy_is_torchs():
    from kd_analysis.training.batches import AnswerRows, LMBatch

    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 5, 11, generator=g)
    labels = torch.tensor([[-100, 1, 2, -100, -100], [3, 4, -100, 5, 6]])
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), ignore_index=-100)
    assert AnswerRows.of(LMBatch(logits, labels, 10)).ce().item() == pytest.approx(ref.item(), rel=1e-6)


def test_inputs_longer_than_max_length_are_reported_not_cut_silently(tiny_dir, tmp_path):
    """A run cuts inputs on the right at max_length; it says how many (a lower bound), in its warnings."""
    from kd_analysis.data import Example
    from kd_analysis.models.loading import load_model
    from kd_analysis.training.run_data import over_length

    tok = load_model(ModelSpec(str(tiny_dir / "gpt2"))).tokenizer
    examples = [Example("a", "one two"), Example("b", " ".join(["word"] * 50))]
    assert over_length(tok, examples, 10) == 1 and over_length(tok, examples, 10_000) == 0
    res = train(train_config(tiny_dir, tmp_path, steps=1, eval_every=1, max_length=4))
    assert any("longer than max_length (4 tokens)" in w for w in res.warnings)
    res = train(train_config(tiny_dir, tmp_path, steps=1, eval_every=1))
    assert not any("max_length" in w for w in res.warnings)


def test_every_run_writes_per_example_records(tiny_dir, tmp_path):
    """predictions.jsonl: the teacher at step 0 and the student at its final eval, one line per example, whose
    correctness agrees with the run's own accuracies; KL(teacher ‖ student) matches a direct formula."""
    from kd_analysis.fileio import read_jsonl
    from kd_analysis.runs.records import PREDICTIONS

    out = tmp_path / "run-a"
    out.mkdir()
    res = train(train_config(tiny_dir, tmp_path, steps=4, eval_every=2), out_dir=out)
    rows = read_jsonl(out / PREDICTIONS)
    teacher = [r for r in rows if r["role"] == "teacher"]
    student = [r for r in rows if r["role"] == "student"]
    assert len(teacher) == len(student) == 8 and {r["step"] for r in student} == {4}
    assert {r["run_id"] for r in rows} == {"run-a"}
    assert sum(r["correct"] for r in teacher) / 8 == pytest.approx(res.teacher_eval["accuracy"])
    assert sum(r["correct"] for r in student) / 8 == pytest.approx(res.evals[-1]["accuracy"])
    t_by_id = {r["example_id"]: r for r in teacher}
    for r in student:
        p, q = torch.tensor(t_by_id[r["example_id"]]["probs"]), torch.tensor(r["probs"])
        assert r["kl"] == pytest.approx(float((p * (p.log() - q.log())).sum()), abs=1e-4)
        assert r["p_gold"] == pytest.approx(r["probs"][r["gold"]], abs=1e-6)
        assert r["ce"] == pytest.approx(-float(torch.tensor(r["p_gold"]).log()), abs=1e-4)
        assert r["teacher_entropy"] == pytest.approx(t_by_id[r["example_id"]]["entropy"], abs=1e-4)
        assert r["text_tokens"] > 0 and r["choices"] and r["prediction"] == max(range(2), key=r["probs"].__getitem__)
    train(
        train_config(tiny_dir, tmp_path, steps=4, eval_every=2, records_every_eval=True),
        out_dir=tmp_path / "run-b",
    )
    steps = [r["step"] for r in read_jsonl(tmp_path / "run-b" / PREDICTIONS) if r["role"] == "student"]
    assert sorted(set(steps)) == [0, 2, 4] and len(steps) == 24


def test_answer_nll_per_example_agrees_with_the_aggregate(tiny_dir):
    from kd_analysis.data import Example
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.scoring import mc_prompt
    from kd_analysis.training.evaluate import answer_nll

    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    short = Example("a", "Tom has 2 apples.", answer="3", solution="2 + 1 = 3")
    long = Example("b", "Ann has 5 pears and buys 4 more.", answer="9", solution="5 + 4 = 9, so she has 9 pears")
    singles = []
    for ex in (short, long):
        one: list = []
        assert answer_nll(lm, [ex], 128, 2, mc_prompt, one) == pytest.approx(one[0], rel=1e-5)
        singles += one
    both: list = []
    total = answer_nll(lm, [short, long], 128, 2, mc_prompt, both)
    assert both == pytest.approx(singles, rel=1e-4)  # each example's own value, whatever it is batched with
    assert min(both) - 1e-6 <= total <= max(both) + 1e-6 and both[0] != both[1]


def test_an_unnamed_run_is_named_by_its_terms_and_its_seed(tiny_dir, tmp_path):
    base = train_config(tiny_dir, tmp_path, losses=[LossTerm("ce", 0.5), LossTerm("kl", 0.5, tau=4.0)])
    assert base.auto_name() == "0.5·ce + 0.5·kl τ 4"
    other = train_config(tiny_dir, tmp_path, losses=[LossTerm("ce", 0.5), LossTerm("kl", 0.5, tau=4.0)], seed=3)
    assert other.auto_name() == "0.5·ce + 0.5·kl τ 4 · seed 3"  # runs that differ only by seed differ by name


def test_the_eval_table_shows_each_rate_with_its_n_and_interval():
    from kd_analysis.stats.intervals import wilson_interval
    from kd_analysis.training.evals import eval_rows, eval_table

    metrics = [
        {"step": 0, "teacher_accuracy": 0.8},
        {"step": 0, "held_out": 20, "eval_accuracy": 0.5},
        {"step": 4, "loss": 1.0},
        {"step": 4, "eval_accuracy": 0.75, "eval_nll": 0.3},
    ]
    table = eval_table(eval_rows(metrics), metrics)
    low, high = wilson_interval(0.75, 20)
    assert table[1] == {
        "step": 4,
        "eval_accuracy": 0.75,
        "eval_nll": 0.3,
        "eval_accuracy 95%": f"{low:.1%}–{high:.1%}",
        "n": 20,
    }
    assert "teacher_accuracy 95%" in table[0] and "eval_nll 95%" not in table[1]
