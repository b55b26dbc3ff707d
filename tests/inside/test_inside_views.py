"""Inside the pair: linear CKA against a direct NumPy implementation and its invariances; a model paired with
itself (CKA 1 on the diagonal, identity head assignment, zero lens KL); a layer-dropped student at step 0 (its
first block is the teacher's); the Hungarian pairing against brute force; the last layer's lens is the output."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from kd_analysis.inside.cka import MinibatchCKA, linear_cka
from tests.helpers.cli import assert_clean_error, cli


def _np_hsic(k: np.ndarray, m: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC, written out directly."""
    n = k.shape[0]
    k, m = k.copy(), m.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(m, 0)
    one = np.ones(n)
    return (
        np.trace(k @ m) + (one @ k @ one) * (one @ m @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * one @ k @ m @ one
    ) / (n * (n - 3))


def _np_cka(x: np.ndarray, y: np.ndarray) -> float:
    k, m = x @ x.T, y @ y.T
    return _np_hsic(k, m) / np.sqrt(_np_hsic(k, k) * _np_hsic(m, m))


def test_cka_matches_numpy_and_is_invariant_to_rotation_and_scale():
    # float64 throughout: the two implementations agree to rounding of sums of ~n² terms (1e-12 is far above it)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 8))
    y = x @ rng.normal(size=(8, 5)) + 0.7 * rng.normal(size=(24, 5))
    assert linear_cka(torch.tensor(x), torch.tensor(y)) == pytest.approx(_np_cka(x, y), abs=1e-12)
    assert linear_cka(torch.tensor(x), torch.tensor(x)) == pytest.approx(1.0, abs=1e-12)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(torch.tensor(3.5 * x @ q), torch.tensor(y)) == pytest.approx(_np_cka(x, y), abs=1e-12)


def test_minibatch_cka_averages_hsic_over_batches():
    """Nguyen et al. (2021): HSIC terms averaged over minibatches, then the ratio."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 6)), rng.normal(size=(32, 4))
    y[:, :2] += x[:, :2]
    acc = MinibatchCKA(1, 1)
    for i in range(0, 32, 8):
        acc.update([torch.tensor(x[i : i + 8])], [torch.tensor(y[i : i + 8])])
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
    cross = np.mean([_np_hsic(a @ a.T, b @ b.T) for a, b in batches])
    xx = np.mean([_np_hsic(a @ a.T, a @ a.T) for a, _ in batches])
    yy = np.mean([_np_hsic(b @ b.T, b @ b.T) for _, b in batches])
    assert acc.matrix()[0][0] == pytest.approx(cross / np.sqrt(xx * yy), abs=1e-12)


def test_a_representation_that_never_varies_has_no_cka():
    same = torch.ones(8, 4)
    assert linear_cka(same, torch.randn(8, 4)) is None


def test_head_pairing_equals_brute_force():
    from kd_analysis.inside.heads import HeadMatching

    rng = np.random.default_rng(2)
    for _ in range(5):
        js = torch.tensor(rng.uniform(0, 0.69, size=(3, 4)))
        m = HeadMatching([(1, h) for h in range(3)], [(1, h) for h in range(4)], js_sum=js, examples=1)
        sim = m.similarity().numpy()
        best = max(itertools.permutations(range(4), 3), key=lambda p: sum(sim[i, p[i]] for i in range(3)))
        assert [p["teacher"][1] for p in m.pairs()] == list(best)


@pytest.fixture(scope="module")
def llama(tiny_dir):
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec

    return load_model(ModelSpec(str(tiny_dir / "llama"), task="causal_lm"))


def test_a_model_paired_with_itself(llama):
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.inside.report import inside_report

    report = inside_report(llama, llama, load_dataset("demo:arithmetic").examples[:8], batch=8).to_dict()
    matrix = report["cka"]["matrix"]
    for i in range(1, len(matrix)):  # layer 0 is the embeddings (varies here: each prompt ends on another token)
        assert matrix[i][i] == pytest.approx(1.0, abs=1e-9)
    assert all(
        p["student"] == p["teacher"] and p["similarity"] == pytest.approx(1.0, abs=1e-9)
        for p in report["heads"]["pairs"]
    )
    cross = report["lens"]["cross_kl"]
    assert all(cross[i][i] == pytest.approx(0.0, abs=1e-9) for i in range(len(cross)))
    assert report["lens"]["teacher"][-1]["kl_to_final"] == 0.0


def test_a_layer_dropped_student_starts_with_the_teachers_first_block(tiny_dir):
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.inside.report import inside_report
    from kd_analysis.models.pairs_loading import load_pair
    from kd_analysis.models.specs import ModelSpec, StudentSpec

    teacher, student, _ = load_pair(
        ModelSpec(str(tiny_dir / "llama"), task="causal_lm"), StudentSpec(kind="drop_layers", keep_layers=(0,))
    )
    report = inside_report(teacher, student, load_dataset("demo:arithmetic").examples[:8], batch=8).to_dict()
    assert report["cka"]["matrix"][1][1] == pytest.approx(1.0, abs=1e-9)
    block = [p for p in report["heads"]["pairs"] if p["student"][0] == 1]
    assert block and all(p["teacher"] == p["student"] for p in block)


@pytest.mark.parametrize(
    "family,task,data", [("bert", "multiple_choice", "demo:mcq"), ("bert", "classification", "demo:sentiment")]
)
def test_the_last_layer_lens_is_the_models_output(tiny_dir, llama, family, task, data):
    """Exactly: the lens reads the last layer through the same modules, on the same tensors, as the model."""
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.inside.reading import read_example
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.scoring import choice_scores, class_logits, mc_prompt
    from kd_analysis.models.specs import ModelSpec

    ex = load_dataset("demo:arithmetic").examples[2]
    enc = llama.tokenizer(mc_prompt(ex), return_tensors="pt")
    with torch.no_grad():
        out = llama.model(**enc, logits_to_keep=1).logits[0, -1]
    assert torch.equal(read_example(llama, ex).lens[-1], torch.log_softmax(out.float(), -1))
    loaded = load_model(ModelSpec(str(tiny_dir / family), task=task))
    ex = load_dataset(data).examples[2]
    with torch.no_grad():
        scores = (choice_scores if task == "multiple_choice" else class_logits)(loaded, [ex], 128)[0]
    assert torch.allclose(read_example(loaded, ex).lens[-1], torch.log_softmax(scores.float(), -1), atol=1e-6)


def test_inside_command_writes_the_contract(tiny_dir, tmp_path):
    out = tmp_path / "inside.json"
    args = [
        "inside",
        "--teacher",
        str(tiny_dir / "llama"),
        "--task",
        "causal_lm",
        "--keep",
        "0",
        "--data",
        "demo:arithmetic",
        "--limit",
        "6",
    ]
    done = cli(*args, "--json", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["cka"]["teacher_layers"] == [0, 1, 2] and report["cka"]["student_layers"] == [0, 1]
    assert len(report["cka"]["matrix"]) == 3 and len(report["cka"]["matrix"][0]) == 2
    assert {"student", "teacher", "similarity"} <= set(report["heads"]["pairs"][0])
    assert len(report["lens"]["teacher"]) == 3 and len(report["lens"]["student"]) == 2
    assert_clean_error(cli(*args, "--json", str(out)), "already exists")


def test_one_example_inside_a_model_and_itself_never_departs(llama):
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.inside.example import example_inside

    found = example_inside(llama, llama, load_dataset("demo:arithmetic").examples[4])
    assert found["departs_at"] is None and found["falls_behind_at"] is None
    assert [r["teacher_layer"] for r in found["student"]] == [0, 1, 2]
    assert all(r["kl_from_teacher"] == pytest.approx(0.0, abs=1e-9) for r in found["student"])
    assert all(h["similarity"] == pytest.approx(1.0, abs=1e-9) for h in found["heads_least_alike"])
    assert len(found["teacher"][0]["top"]) == 5 and found["student"][-1]["gold_rank"] >= 1


def test_one_example_inside_a_perturbed_student_departs(llama, monkeypatch):
    """A student whose last block is perturbed reads like its teacher up to that block, then departs there (the
    tiny random model's readings are near uniform, so the threshold is lowered to what they can reach)."""
    import copy

    import kd_analysis.inside.example as inside_example
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.inside.example import example_inside

    monkeypatch.setattr(inside_example, "DEPART_NATS", 1e-3)
    student = copy.deepcopy(llama)
    with torch.no_grad():
        for p in student.model.model.layers[-1].parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 5.0)
    found = example_inside(llama, student, load_dataset("demo:arithmetic").examples[4])
    assert found["student"][1]["kl_from_teacher"] == pytest.approx(0.0, abs=1e-9)
    assert found["departs_at"] == 2


def test_a_saved_inside_view_goes_into_the_report_of_a_pinned_example(error_store):
    """Computed once on the page, an example's inside view is kept with the run: the page reopens it and the
    HTML report shows it for the example when it is pinned (and only then)."""
    from kd_analysis.error_analysis.report import report_html
    from kd_analysis.inside.example import save_example_inside, saved_example_inside
    from tests.helpers.error_runs import RUN

    rows = [
        {
            "layer": i,
            "depth": i / 2,
            "gold_prob": 0.2,
            "gold_rank": 1,
            "top": [],
            "teacher_layer": i,
            "kl_from_teacher": 0.3 * i,
        }
        for i in range(3)
    ]
    found = {"example_id": "ex-05", "teacher": rows, "student": rows, "departs_at": 1, "falls_behind_at": None, "depart_nats": 0.1, "heads_least_alike": [], "heads_note": None}  # fmt: skip
    save_example_inside(error_store, RUN, found)
    assert saved_example_inside(error_store, RUN)["ex-05"]["departs_at"] == 1
    pinned, _ = report_html(error_store, RUN, pins=["ex-05"])
    assert (
        "departs from the teacher&#x27;s at its layer 1" in pinned
        or "departs from the teacher's at its layer 1" in pinned
    )
    other, _ = report_html(error_store, RUN, pins=["ex-06"])
    assert "<h4>Inside</h4>" in pinned and "<h4>Inside</h4>" not in other


def test_two_slices_each_get_their_report_with_n(llama):
    from kd_analysis.data.sources import load_dataset
    from kd_analysis.exceptions import KDLensError
    from kd_analysis.inside.slices import slice_reports

    examples = load_dataset("demo:arithmetic").examples
    seen: list[tuple[int, int]] = []
    found = slice_reports(
        llama, llama, {"lost": examples[:3], "kept": examples[3:8]}, progress=lambda d, t: seen.append((d, t))
    )
    assert [r["examples"] for r in found.values()] == [3, 5] and seen[-1] == (8, 8)
    assert all(r["lens"]["student"][-1]["gold_prob_interval"] for r in found.values())
    with pytest.raises(KDLensError, match="at least 2 examples"):
        slice_reports(llama, llama, {"one": examples[:1], "two": examples[1:3]})


def test_inside_command_saves_several_students_as_one_comparison(tiny_dir, tmp_path):
    """`--also` sets further students beside the first (a step-0 copy and a trained checkpoint, say); the
    comparison is saved in the run store, where Models & data opens it side by side."""
    from kd_analysis.inside.job import load_inside_run
    from kd_analysis.runs import RunStore

    llama = str(tiny_dir / "llama")
    args = [
        "inside",
        "--teacher",
        llama,
        "--task",
        "causal_lm",
        "--keep",
        "0",
        "--data",
        "demo:arithmetic",
        "--limit",
        "5",
    ]
    done = cli(*args, "--also", f"itself={llama}", "--root", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    [summary] = RunStore(tmp_path / "runs").list(kind="inside")
    found = load_inside_run(RunStore(tmp_path / "runs").get(summary.run_id))
    assert summary.state == "finished" and [s["label"] for s in found["students"]][1] == "itself"
    assert found["students"][1]["cka"]["matrix"][2][2] == pytest.approx(1.0, abs=1e-9)
    assert_clean_error(cli(*args, "--also", "after=", "--root", str(tmp_path / "runs")), "--also")
