"""Size and speed of a teacher and its student: parameters, safetensors bytes, median latency; as a job."""

from __future__ import annotations

import threading

import pytest

from kd_analysis.evidence.size_speed import KIND, load_size_speed, measure, size_speed_config, size_speed_job
from kd_analysis.models.specs import ModelSpec, StudentSpec
from kd_analysis.runs import RunStore
from tests.helpers.runs import mc_file


def test_measure_counts_parameters_and_bytes_and_times_both(tiny_dir, tmp_path):
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.students import derive_student

    teacher = load_model(ModelSpec(str(tiny_dir / "bert"), task="multiple_choice"))
    student = derive_student(teacher, StudentSpec(num_layers=1))
    examples = load_dataset(str(mc_file(tmp_path / "mc.jsonl"))).examples[:4]
    result = measure(teacher, student, examples, repeats=3)
    assert result.teacher.parameters == sum(p.numel() for p in teacher.model.parameters())
    assert result.student.parameters < result.teacher.parameters
    # float32 safetensors: 4 bytes a parameter plus a small header (tied weights are stored once)
    for cost in (result.teacher, result.student):
        assert 3.5 * cost.parameters < cost.disk_bytes < 4 * cost.parameters + 65_536
        lo, hi = cost.latency_spread_ms
        assert 0 < lo <= cost.latency_ms <= hi
    assert result.batch == 4 and result.repeats == 3 and result.speedup > 0
    stop = threading.Event()
    stop.set()
    with pytest.raises(InterruptedError):
        measure(teacher, student, examples, repeats=3, stop=stop)


def test_size_speed_job_writes_its_result(tiny_dir, tmp_path, run_root):
    store = RunStore(run_root)
    cfg = size_speed_config(
        ModelSpec(str(tiny_dir / "bert"), task="multiple_choice").to_dict(),
        StudentSpec(num_layers=1).to_dict(),
        str(mc_file(tmp_path / "mc.jsonl")),
        batch=4,
        repeats=2,
    )
    run = store.create(KIND, cfg, state="running")
    state, reason, _ = size_speed_job(run, threading.Event(), store)
    assert state == "finished" and reason is None
    result = load_size_speed(run)
    assert result.batch == 4 and result.teacher.role == "teacher" and result.student.parameters > 0
