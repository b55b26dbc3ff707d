"""TRL's DistillationTrainer (on-policy KD with a teacher) with KDLensCallback: three steps on tiny random
language models write a run with teacher and student records on a generation set."""

from __future__ import annotations

import json

import pytest

from kd_analysis.runs import RunStore
from tests.helpers.cli import cli
from tests.helpers.outside import perturbed

trl = pytest.importorskip("trl")  # a test extra (requirements-test.txt pins it)


@pytest.mark.slow
def test_trl_distillation_trainer_writes_a_run_the_commands_read(tiny_dir, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kd_analysis.data.sources import load_dataset
    from kd_analysis.integrations import KDLensCallback

    tok = AutoTokenizer.from_pretrained(tiny_dir / "llama")
    tok.pad_token = tok.pad_token or tok.eos_token
    student = AutoModelForCausalLM.from_pretrained(tiny_dir / "llama")
    teacher = perturbed(AutoModelForCausalLM.from_pretrained(tiny_dir / "llama"))
    examples = load_dataset("demo:arithmetic").examples
    callback = KDLensCallback(
        tmp_path / "runs", name="GKD tiny", eval_examples=examples[20:24], teacher=teacher, data_name="demo:arithmetic"
    )
    args = trl.DistillationConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=4,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        max_completion_length=8,
        bf16=False,
        gradient_checkpointing=False,
        beta=0.5,
        disable_tqdm=True,
    )
    trainer = trl.DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=args,
        train_dataset=Dataset.from_list([{"prompt": f"Question: {e.text}\nAnswer:"} for e in examples[:12]]),
        processing_class=tok,
        callbacks=[callback],
    )
    trainer.train()
    run = RunStore(tmp_path / "runs").get(callback.run_id)
    config = run.config()
    assert run.status()["state"] == "finished"
    assert config["distillation"]["beta"] == 0.5 and "trl" in config["origin"]["versions"]
    assert [m["step"] for m in run.metrics() if "loss" in m] == [1, 2, 3]
    records = [json.loads(x) for x in (run.path / "predictions.jsonl").read_text().splitlines()]
    assert {(r["role"], r["step"]) for r in records} == {("teacher", 0), ("student", 0), ("student", 3)}
    assert all(r["kl"] is not None and r["generated"] is not None for r in records if r["role"] == "student")
    matrix = cli("errors", "matrix", run.run_id, "--root", str(tmp_path / "runs"))
    assert matrix.returncode == 0 and "4 examples" in matrix.stdout
