"""Paper presets: the numbers of the papers' code, the SinKD term against the authors' formula, CLI and merging."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax

from kd_analysis.exceptions import KDLensError
from kd_analysis.models.specs import ModelSpec
from kd_analysis.training.config import LossTerm, TrainConfig
from kd_analysis.training.objective import kd_loss_terms
from kd_analysis.training.presets import (
    AS_IN_PAPER,
    KD_LENS,
    OUR_READING,
    PRESETS,
    SINKD_TASKS,
    changed_settings,
    loss_rows,
    merge,
    preset_config,
)

ROOT = Path(__file__).resolve().parents[2]
# The authors' per-task (α, T) from docs/methods.md §3 / their scripts, written out again here on purpose
PAPER_ALPHA_T = {
    "cola": (0.9, 1.0),
    "mnli": (0.8, 3.0),
    "mrpc": (1.0, 4.0),
    "qnli": (0.8, 3.0),
    "qqp": (1.0, 4.0),
    "rte": (0.9, 3.5),
    "sst2": (0.9, 2.0),
}


def test_every_glue_task_has_a_sinkd_preset_with_the_authors_numbers():
    assert {f"sinkd-{t}" for t in PAPER_ALPHA_T} <= set(PRESETS)
    for task, (alpha, T) in PAPER_ALPHA_T.items():
        p = PRESETS[f"sinkd-{task}"]
        assert p.label == AS_IN_PAPER and "2018cx/SinKD" in p.source
        cfg = p.config()
        terms = {t.name: t for t in cfg.losses}
        assert terms["soft_ce"].weight == alpha and terms["soft_ce"].tau == T and terms["soft_ce"].tau_squared is False
        assert ("ce" in terms) == (alpha < 1) and (alpha == 1 or terms["ce"].weight == pytest.approx(1 - alpha))
        sk = terms["sinkhorn"]
        assert sk.weight == 0.8 and sk.tau == 2.0 and sk.tau_squared is False
        assert sk.params == {"eps": 0.1, "iters": 20, "first": "rows", "mass": "batch", "scale": 0.001}
        assert cfg.optimizer == "adamw" and cfg.max_grad_norm == 1.0 and cfg.weight_decay == 0.0
        assert cfg.preset == f"sinkd-{task}"
    assert SINKD_TASKS == AUTHORS_SCRIPTS


# (α, T, learning rate, batch, epochs, KD temperature annealed) transcribed from github.com/2018cx/SinKD
# script/student/<task>.sh at 1ffac9010a4fc462d05e7ea0a0753aca062eca62 (2025-04-27): --alpha, --temperature,
# --learning_rate, --per_gpu_batch_size, --num_train_epochs, and kd_anneal in --distill_loss
AUTHORS_SCRIPTS = {
    "cola": (0.9, 1.0, 5e-5, 16, 20, False),
    "mnli": (0.8, 3.0, 4e-5, 16, 10, True),
    "mrpc": (1.0, 4.0, 3e-5, 16, 3, True),
    "qnli": (0.8, 3.0, 3e-5, 16, 6, False),
    "qqp": (1.0, 4.0, 4e-5, 32, 8, True),
    "rte": (0.9, 3.5, 2e-5, 16, 5, False),
    "sst2": (0.9, 2.0, 4e-5, 32, 2, False),
}


def test_sinkd_presets_name_the_commit_they_were_read_at():
    for task in AUTHORS_SCRIPTS:
        p = PRESETS[f"sinkd-{task}"]
        assert "1ffac90" in p.source and p.config().lr == AUTHORS_SCRIPTS[task][2]


def _authors_total(student: np.ndarray, teacher: np.ndarray, labels: np.ndarray, alpha: float, T: float) -> float:
    """(1−α)·CE + α·KD_T + 0.8·Sinkhorn as SinKD's code computes it, written directly in NumPy."""
    ce = -log_softmax(student, -1)[np.arange(len(labels)), labels].mean()
    kd = -(softmax(teacher / T, -1) * log_softmax(student / T, -1)).sum(-1).mean()
    ps, pt = softmax(student / 2, -1), softmax(teacher / 2, -1)
    C = np.abs(ps[:, None, :] - pt[None, :, :]).sum(-1)
    P = np.exp(-C / 0.1)
    for _ in range(20):
        P = P / P.sum(1, keepdims=True)
        P = P / P.sum(0, keepdims=True)
    return float((1 - alpha) * ce + alpha * kd + 0.8 * 0.001 * (P * C).sum())


@pytest.mark.parametrize("task", ["sst2", "mnli", "qqp"])
def test_sinkd_preset_loss_equals_the_authors_formula(task):
    cfg = PRESETS[f"sinkd-{task}"].config()
    alpha, T = PAPER_ALPHA_T[task]
    g = torch.Generator().manual_seed(0)
    classes = 3 if task == "mnli" else 2
    s, t = (
        torch.randn(32, classes, generator=g, dtype=torch.float64) * 2,
        torch.randn(32, classes, generator=g, dtype=torch.float64) * 2,
    )
    labels = torch.randint(0, classes, (32,), generator=g)
    terms = kd_loss_terms(cfg, s, t, None)
    terms["ce"] = torch.nn.functional.cross_entropy(s, labels)
    total = sum(term.weight * terms[term.name] for term in cfg.losses)
    assert total.item() == pytest.approx(_authors_total(s.numpy(), t.numpy(), labels.numpy(), alpha, T), rel=1e-9)


def test_goyal_preset_has_the_repo_numbers():
    cfg = PRESETS["goyal-priming"].config()
    terms = {t.name: t.weight for t in cfg.losses}
    assert terms["ce"] == pytest.approx(0.6093, abs=1e-4) and terms["rkl"] == pytest.approx(0.3907, abs=1e-4)
    assert cfg.tau == pytest.approx(5.9423, abs=1e-4) and cfg.tau_squared
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (4, 8, 0.1)
    assert sorted(cfg.lora.target_modules) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert (cfg.optimizer, cfg.lr, cfg.epochs, cfg.batch_size, cfg.max_length) == ("sgd", 5e-6, 2.0, 1, 256)
    assert cfg.priming.alignment == "paper" and cfg.priming.strategy == "ai_to_ai"


def test_labels_say_how_faithful_each_preset_is():
    assert PRESETS["ballout-rationales"].label == OUR_READING and PRESETS["ballout-rationales"].config().rationales
    assert PRESETS["kd-lens-default"].label == KD_LENS
    for p in PRESETS.values():
        assert p.source and (p.label == KD_LENS or p.differences)


def test_overrides_merge_blocks_and_replace_lists(tmp_path):
    base = PRESETS["goyal-priming"].config().to_dict()
    merged = merge(
        base,
        {
            "lora": {"r": 16},
            "losses": [{"name": "ce"}],
            "teacher": "minilm",
            "priming": None,
            "student": {"num_layers": 3},
        },
    )
    assert merged["lora"]["r"] == 16 and merged["lora"]["alpha"] == 8
    assert merged["student"] == {"num_layers": 3}  # replaced whole: no keep_layers left from the preset
    assert merged["losses"] == [{"name": "ce"}] and merged["teacher"] == {"source": "minilm"}
    assert merged["priming"] is None
    f = tmp_path / "o.yaml"
    f.write_text("lr: 0.001\nsteps: 7\n")
    cfg = preset_config("sinkd-sst2", f)
    assert cfg.lr == 0.001 and cfg.preset == "sinkd-sst2" and cfg.epochs is None and cfg.steps == 7
    assert preset_config("sinkd-sst2", {"lr": 0.001}).epochs == 2.0  # the preset's epochs unless steps are set
    with pytest.raises(KDLensError, match="unknown preset"):
        preset_config("sinkd-nope")
    with pytest.raises(KDLensError, match="config.learning_rate is not a known setting"):
        preset_config("sinkd-sst2", {"learning_rate": 1})


def test_form_helpers():
    base = PRESETS["sinkd-sst2"].config()
    assert changed_settings(base, {"lr": 4e-5, "batch_size": 32}) == []
    assert changed_settings(base, {"lr": 1e-3, "epochs": 30.0}) == ["lr 0.001", "epochs 30"]
    assert changed_settings(base, {"data": "demo:mcq"}) == ["your teacher, student and data"]
    rows = {r["term"]: r for r in loss_rows(base)}
    assert (
        rows["soft_ce"]["τ"] == 2.0
        and rows["sinkhorn"]["τ²"] is False
        and "scale 0.001" in rows["sinkhorn"]["parameters"]
    )


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "kd_analysis", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_cli_presets_list_and_show():
    listed = json.loads(_cli("presets", "list", "--json").stdout)
    assert {r["name"] for r in listed} == set(PRESETS)
    assert all({"label", "source", "differences"} <= set(r) for r in listed)
    shown = _cli("presets", "show", "sinkd-rte", "--json")
    cfg = TrainConfig.from_dict(json.loads(shown.stdout))  # a valid --config file
    assert cfg.preset == "sinkd-rte" and {t.name: t.tau for t in cfg.losses}["soft_ce"] == 3.5
    text = _cli("presets", "show", "goyal-priming").stdout
    assert "source:" in text and "differs:" in text
    bad = _cli("presets", "show", "nope")
    assert bad.returncode == 2 and "unknown preset" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_train_with_a_preset_and_overrides(tiny_dir, tmp_path):
    data = tmp_path / "s.jsonl"
    data.write_text(
        "".join(
            json.dumps({"sentence": f"good {i}" if i % 2 else f"bad {i}", "label": i % 2}) + "\n" for i in range(20)
        )
    )
    over = tmp_path / "o.yaml"
    over.write_text(
        f"teacher: {{source: {tiny_dir / 'bert'}, task: classification}}\nstudent: {{num_layers: 1}}\n"
        f"data: {data}\nsteps: 2\nepochs: null\nbatch_size: 4\neval_size: 4\neval_every: 2\n"
        "save_checkpoint: false\ndevice: cpu\n"
    )
    proc = _cli("train", "--preset", "sinkd-sst2", "--config", str(over), "--root", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(over.read_text().replace("num_layers: 1", "keep_layers: [0, 7]"))
    failed = _cli("train", "--preset", "sinkd-sst2", "--config", str(bad), "--root", str(tmp_path / "bad_runs"))
    assert failed.returncode == 2 and "layers to keep" in failed.stderr  # the reason, not silence
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())  # not the device lock file
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["preset"] == "sinkd-sst2" and cfg["steps"] == 2
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("loss_sinkhorn" in m and "loss_soft_ce" in m for m in metrics)


def test_compare_table_names_the_preset_its_edits_and_intervals(tmp_path):
    from kd_analysis.runs import RunStore
    from kd_analysis.training.progress import final_table

    store = RunStore(tmp_path)
    faithful = PRESETS["sinkd-sst2"].config().to_dict()
    edited = {**faithful, "epochs": 30.0, "data": "elsewhere"}
    for rid, cfg in (("a", faithful), ("b", edited), ("c", {"losses": [{"name": "ce", "weight": 1.0}]})):
        run = store.create("train", cfg, run_id=rid)
        run.append_metrics({"step": 0, "held_out": 50, "eval_accuracy": 0.5})
        run.append_metrics({"step": 10, "loss": 0.1, "eval_accuracy": 0.9})
    rows = {r["run"]: r for r in final_table(store, ["a", "b", "c"])}
    assert rows["a"]["set-up"] == "sinkd-sst2 preset: loss and optimiser as in the paper"
    assert rows["b"]["set-up"] == "sinkd-sst2 preset: loss and optimiser as in the paper; edited: epochs"
    assert rows["c"]["set-up"] == "custom"
    assert rows["a"]["eval n"] == 50 and rows["a"]["final accuracy 95% interval"] == "78.6%–95.7%"


def test_runs_being_rebuilt_are_not_listed(tmp_path):
    from kd_analysis.runs import RunStore

    store = RunStore(tmp_path)
    store.create("train", {"name": "done"}, run_id="reference-x")
    store.create("train", {"name": "rebuilding"}, run_id="reference-x.new")
    assert [r.run_id for r in store.list()] == ["reference-x"]


def test_plots_keep_token_labels_and_one_bar_per_run():
    from kd_analysis.plots.losses import probability_bars
    from kd_analysis.plots.priming import accuracy_bars

    fig = probability_bars([".", "1", "\n", "1"], [0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4])
    assert fig.layout.xaxis.type == "category" and len(set(fig.data[0].x)) == 4 and "\\n" in fig.data[0].x[2]
    rows = [
        {
            "run": r,
            "strategy": "ai_to_ai",
            "student exact match": a,
            "95% low": 0.0,
            "95% high": 0.3,
            "eval questions": 24,
        }
        for r, a in (("r1", 0.04), ("r2", 0.08))
    ]
    bars = accuracy_bars(rows)
    assert list(bars.data[0].y) == [0.04, 0.08] and len(set(bars.data[0].x)) == 2


def test_cuda_without_a_gpu_is_refused(tiny_dir, tmp_path):
    from kd_analysis.models.specs import StudentSpec
    from kd_analysis.training.loop import train

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = TrainConfig(teacher=ModelSpec(str(tiny_dir / "bert")), student=StudentSpec(num_layers=1), device="cuda")
    with pytest.raises(KDLensError, match="no CUDA GPU"):
        train(cfg)


def test_annealed_kd_temperature_follows_the_authors_schedule():
    """DistillKL_anneal: temperature = (1 − T)/(E − 1)·epoch + T, epoch 0 … E − 1 (written out here)."""
    for task, anneal in (("mnli", True), ("mrpc", True), ("qqp", True), ("sst2", False), ("rte", False)):
        cfg = PRESETS[f"sinkd-{task}"].config()
        kd = next(t for t in cfg.losses if t.name == "soft_ce")
        T, E = PAPER_ALPHA_T[task][1], int(cfg.epochs)
        for epoch in range(E):
            expected = (1 - T) / (E - 1) * epoch + T if anneal else T
            assert cfg.term_tau(kd, epoch, E) == pytest.approx(expected)
        sk = next(t for t in cfg.losses if t.name == "sinkhorn")
        assert cfg.term_tau(sk, E - 1, E) == 2.0  # the Sinkhorn term keeps τ 2 (their hard-coded self.T)


def test_annealed_temperature_reaches_the_loss():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    cfg = PRESETS["sinkd-mnli"].config()
    from kd_analysis.losses import LOSSES

    last = kd_loss_terms(cfg, s, t, None, epoch=9, epochs=10)["soft_ce"]
    assert last.item() == pytest.approx(LOSSES["soft_ce"](s, t, tau=1.0).item(), rel=1e-6)


def test_cosine_epoch_schedule_is_torchs_cosine_annealing():
    """Goyal et al. step CosineAnnealingLR(T_max = one epoch) every example and keep stepping past T_max."""
    from kd_analysis.training.setup import lr_factor

    cfg = PRESETS["goyal-priming"].config()
    assert cfg.schedule == "cosine_epoch"
    per_epoch, total = 7, 14
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=5e-6)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=per_epoch)
    factor = lr_factor(cfg, per_epoch, total)
    for s in range(total):
        assert factor(s) * 5e-6 == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15), s
        opt.step()
        ref.step()


def test_annealing_is_refused_on_a_top_k_language_model_cache(tiny_dir):
    from kd_analysis.models.specs import StudentSpec
    from kd_analysis.training.loop import train

    data = Path(tiny_dir).parent / "anneal.jsonl"
    data.write_text(
        "".join(
            json.dumps({"question": f"{i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"}) + "\n"
            for i in range(10)
        )
    )
    cfg = TrainConfig(
        teacher=ModelSpec(str(tiny_dir / "llama")),
        student=StudentSpec(num_layers=1),
        data=str(data),
        steps=1,
        eval_size=2,
        losses=[LossTerm("kl", tau=3.0, tau_end=1.0)],
        teacher_topk=8,
    )
    with pytest.raises(KDLensError, match="tau_end"):
        train(cfg)


def test_every_preset_labelled_as_in_the_paper_names_the_commit_it_was_checked_against():
    import re

    from kd_analysis.training.presets import AS_IN_PAPER, PRESETS

    faithful = [p for p in PRESETS.values() if p.label == AS_IN_PAPER]
    assert faithful and all(re.search(r"\bat [0-9a-f]{7}\b", p.source) for p in faithful), [p.source for p in faithful]
