"""Run groups and paired statistics: checked against SciPy (binomtest, permutation_test, bootstrap, t)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy import stats

from kd_analysis.evidence.groups import (
    ce_twin,
    compare,
    gap,
    group_configs,
    list_groups,
    members,
    parse_seeds,
    start_group,
)
from kd_analysis.exceptions import KDLensError
from kd_analysis.runs import RunStore
from kd_analysis.stats.paired import compare_paired, describe, gap_closed, sign_flip_p, t_interval
from tests.helpers.cli import assert_clean_error, cli
from tests.helpers.groups import N, build_groups

# --- the statistics --------------------------------------------------------------------------------------------


def test_one_seed_each_is_the_exact_mcnemar_test_and_the_scipy_paired_bootstrap():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 2, 150), rng.integers(0, 2, 150)
    a[:25] = 1
    b[:25] = 0  # A wins 25 extra examples
    c = compare_paired(a, b)
    only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    assert c.p == pytest.approx(stats.binomtest(only_a, only_a + only_b).pvalue, rel=1e-9)
    assert c.per_seed_p == [pytest.approx(c.p, rel=1e-9)]
    assert c.difference == pytest.approx(a.mean() - b.mean())
    ref = stats.bootstrap(
        (a, b),
        lambda x, y, axis=-1: x.mean(axis) - y.mean(axis),
        paired=True,
        method="percentile",
        n_resamples=10_000,
        random_state=0,
    ).confidence_interval
    assert c.interval[0] == pytest.approx(ref.low, abs=0.015) and c.interval[1] == pytest.approx(ref.high, abs=0.015)


def test_several_seeds_use_the_exact_sign_flip_distribution():
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, 2, (3, 12)), rng.integers(0, 2, (2, 12))  # 3 and 2 seeds: steps of 1/6
    d = a.mean(axis=0) - b.mean(axis=0)
    ref = stats.permutation_test((d,), np.sum, permutation_type="samples", n_resamples=np.inf).pvalue
    assert compare_paired(a, b).p == pytest.approx(ref, rel=1e-9)
    assert sign_flip_p(d, 6) == pytest.approx(ref, rel=1e-9)
    assert sign_flip_p(np.zeros(5), 1) == 1.0


def test_the_interval_widens_with_seed_noise_and_the_words_follow_it():
    rng = np.random.default_rng(0)
    truth_a, truth_b = rng.random(500) < 0.70, rng.random(500) < 0.60
    steady = compare_paired(np.stack([truth_a] * 3), np.stack([truth_b] * 3))
    # three seeds of A that disagree about how good A is (55%, 70%, 85%): the seed spread must show
    noisy_a = np.stack([rng.random(500) < p for p in (0.55, 0.70, 0.85)])
    noisy = compare_paired(noisy_a, np.stack([truth_b] * 3))
    assert (steady.interval[1] - steady.interval[0]) < (noisy.interval[1] - noisy.interval[0])
    sentence = describe(steady, "KL", "CE")
    assert sentence.startswith("KL beats CE by") and "3 seeds × 500 examples" in sentence and "p = " in sentence
    flipped = describe(compare_paired(np.stack([truth_b] * 3), np.stack([truth_a] * 3)), "CE", "KL")
    assert flipped.startswith("KL beats CE by") and re.search(r"interval \+\d+\.\d to \+\d+\.\d", flipped)
    tie = compare_paired(truth_a[None, :].astype(int), truth_a[None, :].astype(int))
    assert tie.p == 1.0 and "not distinguishable" in describe(tie, "KL", "CE")
    with pytest.raises(ValueError, match="same examples"):
        compare_paired(np.ones((1, 5)), np.ones((1, 6)))


def test_gap_closed_and_its_undefined_case():
    rng = np.random.default_rng(2)
    teacher = (rng.random(400) < 0.85).astype(int)
    ce = np.stack([(rng.random(400) < 0.55).astype(int) for _ in range(3)])
    kd = np.stack([(rng.random(400) < 0.70).astype(int) for _ in range(3)])
    g = gap_closed(teacher, kd, ce)
    assert g.value == pytest.approx((kd.mean() - ce.mean()) / (teacher.mean() - ce.mean()))
    assert g.interval[0] < g.value < g.interval[1] and g.n == 400
    flat = gap_closed(ce[0], kd, ce)  # a "teacher" no better than CE-only
    assert flat.value is None and "undefined" in flat.note


def test_t_interval_matches_scipy():
    v = [0.61, 0.66, 0.58]
    lo, hi = t_interval(v)
    ref = stats.t.interval(0.95, 2, loc=np.mean(v), scale=stats.sem(v))
    assert (lo, hi) == pytest.approx(ref)
    assert t_interval([0.5]) is None


# --- groups in a run store -------------------------------------------------------------------------------------


@pytest.fixture
def grouped(run_root):
    return build_groups(RunStore(run_root))


def test_group_configs_share_the_split_and_differ_by_seed():
    cfgs = group_configs({"name": "KL", "seed": 4, "losses": []}, [0, 1, 1, 2])
    assert [c["seed"] for c in cfgs] == [0, 1, 2] and {c["split_seed"] for c in cfgs} == {4}
    assert len({c["group"] for c in cfgs}) == 1 and cfgs[0]["group"].startswith("kl-")
    assert cfgs[2]["name"] == "KL · seed 2"
    assert group_configs({"name": "KL", "seed": 0, "split_seed": 9}, [3])[0]["split_seed"] == 9
    assert parse_seeds("0, 1,2") == [0, 1, 2]
    with pytest.raises(KDLensError, match="whole numbers"):
        parse_seeds("0,a")
    for bad, words in [
        ("", "whole numbers"),
        ("١,٢", "whole numbers"),
        ("0,0", "each seed once"),
        ("9999999999", "at most"),
    ]:
        with pytest.raises(KDLensError, match=words):
            parse_seeds(bad)
    with pytest.raises(KDLensError, match="at least one seed"):
        group_configs({"name": "x"}, [])


def test_start_group_starts_one_validated_run_per_seed(run_root, monkeypatch, tiny_dir):
    import kd_analysis.runs as runs_mod

    started = []
    monkeypatch.setattr(
        runs_mod,
        "start_run",
        lambda cfg, store, name=None: started.append(cfg) or store.create("train", cfg, state="queued", name=name),
    )
    cfg = {"teacher": {"source": str(tiny_dir / "bert")}, "name": "tiny", "steps": 2}
    ids = start_group(cfg, [0, 1], RunStore(run_root))
    assert len(ids) == 2 and [c["seed"] for c in started] == [0, 1] and started[0]["group"] == started[1]["group"]
    with pytest.raises(KDLensError, match="steps"):
        start_group({**cfg, "steps": 0}, [0], RunStore(run_root))


def test_groups_list_compare_and_gap(grouped):
    store, made, other = grouped
    groups = {g.name: g for g in list_groups(store)}
    kl, ce = groups["KL"], groups["CE only"]
    assert kl.seeds == [0, 1, 2] and kl.eval_examples == N and len(kl.runs) == 3
    accs = [
        float(
            np.mean(
                [
                    json.loads(line)["correct"]
                    for line in open(store.root / r / "predictions.jsonl")
                    if json.loads(line)["role"] == "student" and json.loads(line)["step"] == 40
                ]
            )
        )
        for r in kl.runs
    ]
    assert kl.accuracies == pytest.approx(accs) and kl.mean == pytest.approx(np.mean(accs))
    assert kl.interval == pytest.approx(stats.t.interval(0.95, 2, loc=np.mean(accs), scale=stats.sem(accs)))
    assert members(store, kl.group) == kl.runs and members(store, made["KL"][0]) == [made["KL"][0]]
    _result, out = compare(store, kl.group, ce.group)
    assert out["difference"] == pytest.approx(kl.mean - ce.mean) and out["n"] == N and out["seeds"] == [3, 3]
    assert out["interval"][0] < out["difference"] < out["interval"][1] and out["p"] < 0.05
    assert out["sentence"].startswith("KL beats CE only by")
    assert ce_twin(store, kl, list(groups.values())).group == ce.group
    g = gap(store, kl.group, ce.group)
    assert g.value == pytest.approx((kl.mean - ce.mean) / (g.teacher - ce.mean))
    with pytest.raises(KDLensError, match="different data sets"):
        compare(store, kl.group, other)
    with pytest.raises(KDLensError, match="neither a run nor a run group"):
        members(store, "nope-123")


@pytest.mark.slow
def test_cli_groups_compare_gap_json(grouped, run_root):
    _store, made, other = grouped
    env = {"KD_LENS_RUNS": str(run_root)}
    rows = json.loads(cli("runs", "groups", "--json", env=env).stdout)
    assert {r["name"] for r in rows} == {"KL", "CE only"}
    for r in rows:
        assert set(r) >= {"group", "config", "seeds", "runs", "eval_examples", "mean", "interval"}
    kl = next(r for r in rows if r["name"] == "KL")
    ce = next(r for r in rows if r["name"] == "CE only")
    out = json.loads(cli("runs", "compare", kl["group"], ce["group"], "--json", env=env).stdout)
    assert set(out) >= {"a", "b", "difference", "interval", "p", "test", "n"}
    assert out["a"] == kl["group"] and out["difference"] == pytest.approx(kl["mean"] - ce["mean"])
    text = cli("runs", "compare", made["KL"][0], made["CE only"][0], env=env).stdout
    assert "1 seed × 120 examples" in text
    gap_out = json.loads(cli("runs", "gap", kl["group"], ce["group"], "--json", env=env).stdout)
    assert 0 < gap_out["value"] < 1.5 and len(gap_out["interval"]) == 2
    assert_clean_error(cli("runs", "compare", kl["group"], "nope-1", env=env), "neither a run nor a run group")
    assert_clean_error(cli("runs", "compare", kl["group"], other, env=env), "different data sets")


def test_reference_group_plan_shares_split_and_budget_across_losses_and_regimes(tmp_path):
    from kd_analysis.demo.reference import (
        FEW_LABELS,
        GROUP_PREFIX,
        GROUP_SEEDS,
        GROUP_TEACHER_RUN,
        SIZE_SPEED_RUN,
        group_plan,
    )
    from kd_analysis.training.config import TrainConfig

    plan = group_plan(RunStore(tmp_path))
    ids = [rid for rid, _, _ in plan]
    assert ids[:2] == [GROUP_TEACHER_RUN, SIZE_SPEED_RUN]
    students = [(rid, cfg) for rid, kind, cfg in plan if rid.startswith(GROUP_PREFIX) and kind == "train"]
    assert len(students) == 2 * 5 * len(GROUP_SEEDS)
    for rid, cfg in students:
        TrainConfig.from_dict(cfg).validate()
        assert cfg["split_seed"] == 0 and cfg["eval_size"] == 500 and cfg["steps"] == 150
        assert cfg["group"] == rid.rsplit("-s", 1)[0] and cfg["labels"] == (FEW_LABELS if "-few-" in rid else None)
    assert {c["seed"] for _, c in students} == set(GROUP_SEEDS)


def test_every_shipped_reference_run_names_a_teacher_that_ships_too():
    """A fresh clone must be able to rerun or explain any reference run: a teacher it names under cached_runs/ must
    be in the repository (a .gitignore once left the large-MC teacher's adapter out)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    tracked = set(
        subprocess.run(
            ["git", "ls-files", "cached_runs"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.split()
    )
    configs = sorted(p for p in tracked if p.endswith("/config.json") and p.count("/") == 2)
    assert configs
    for path in configs:
        teacher = (json.loads((root / path).read_text()).get("teacher") or {}).get("source") or ""
        if teacher.startswith("cached_runs/"):
            assert any(f"{teacher}/{name}" in tracked for name in ("adapter_config.json", "config.json")), (
                f"{path} names {teacher}, which is not in the repository"
            )


def test_shipped_records_name_their_own_run():
    """make-reference trains in `<id>.new` and renames the folder; the records must carry the final id."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "cached_runs"
    for path in root.glob("reference-*/predictions.jsonl"):
        ids = {json.loads(line)["run_id"] for line in path.open(encoding="utf-8")}
        assert ids == {path.parent.name}, (path, ids)


def test_unpoint_renames_the_temporary_id_in_records(tmp_path):
    from kd_analysis.training.plan_runner import unpoint as _unpoint

    (tmp_path / "predictions.jsonl").write_text(json.dumps({"run_id": "r1.new", "step": 0}) + "\n")
    (tmp_path / "result.json").write_text(json.dumps({"checkpoint": "runs/r1.new/checkpoint"}))
    _unpoint(tmp_path, "r1.new", "r1")
    assert json.loads((tmp_path / "predictions.jsonl").read_text())["run_id"] == "r1"
    assert "r1.new" not in (tmp_path / "result.json").read_text()
