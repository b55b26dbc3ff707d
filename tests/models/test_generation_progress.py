"""Long generation says where it is and stops within one token: the token hook under the Priming page's
"Compute now", the priming job, and a run's generation evaluation (a Goyal preset spends minutes there at step 0)."""

from __future__ import annotations

import pytest

from kd_analysis.models.generation import generate_texts
from kd_analysis.models.loading import load_model
from kd_analysis.models.specs import ModelSpec
from kd_analysis.runs import PhaseReporter, RunStore
from kd_analysis.training.loop import train
from kd_analysis.training.progress import run_progress
from tests.helpers.lm_runs import arith_file, tiny_lm_config


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def tiny_lm(tiny_dir):
    return load_model(ModelSpec(str(tiny_dir / "llama"), task="causal_lm"))


def test_the_token_hook_hears_every_token_and_stops_generation_where_it_raises(tiny_lm):
    heard: list[tuple[int, int, int, int]] = []
    generate_texts(tiny_lm, ["a b", "c d e", "f"], max_new_tokens=4, batch_size=2, on_token=lambda *a: heard.append(a))
    first = [h for h in heard if h[0] == 0]
    assert [h[2] for h in first] == list(range(1, len(first) + 1)) and {h[1:4:2] for h in heard} == {(3, 4)}
    assert {h[0] for h in heard} == {0, 2}  # rows done before each batch: 0, then 2

    calls = []

    def stop_at_two(done, total, tokens, budget):
        calls.append(tokens)
        if tokens == 2:
            raise Stop

    with pytest.raises(Stop):
        generate_texts(tiny_lm, ["a b", "c d e", "f"], max_new_tokens=50, batch_size=2, on_token=stop_at_two)
    assert calls == [1, 2]  # stopped inside the first batch, at its second token


def test_cancel_during_the_step_0_generation_evaluation_ends_the_run_there(tiny_dir, tmp_path):
    cfg = tiny_lm_config(tiny_dir / "llama", arith_file(tmp_path / "arith.jsonl"), max_new_tokens=8, eval_size=4)
    phases: list[str] = []
    result = train(cfg, should_stop=lambda: any("generating token 2" in p for p in phases), on_phase=phases.append)
    assert result.state == "cancelled" and result.steps == 0
    assert phases[0] == "evaluating the teacher at step 0"
    assert "evaluating the teacher at step 0: 0/4 examples done, generating token 1 of at most 8" in phases
    assert len([p for p in phases if "generating token" in p]) == 2  # the next token after the request: stopped


def test_a_jobs_phase_is_shown_until_its_next_logged_step(tmp_path):
    run = RunStore(tmp_path).create("train", {"name": "r", "steps": 4}, run_id="r")
    run.set_status("running")
    phases = PhaseReporter(run, every_s=3600)
    phases.say("evaluating the teacher at step 0: 3/24 examples done")
    phases.say("not written: within the interval")
    assert run_progress(run).phase == "evaluating the teacher at step 0: 3/24 examples done"
    run.append_metrics({"step": 1, "total_steps": 4, "loss": 1.0})
    assert run_progress(run).phase is None  # the step says more now
    run.set_status("finished")
    assert run_progress(run).phase is None
