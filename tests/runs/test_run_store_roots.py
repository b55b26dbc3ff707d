"""Where runs live: the user's runs in a per-user data folder (or `$KD_LENS_RUNS`), the shipped reference runs
read-only beside them, and `kd-lens app` starting the app from anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kd_analysis.runs import RunStore, default_root
from tests.helpers.cli import assert_clean_error, cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_roots(tmp_path, monkeypatch):
    """A default store: the user's folder from XDG_DATA_HOME, reference runs in a folder of their own."""
    monkeypatch.delenv("KD_LENS_RUNS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    reference = tmp_path / "shipped"
    monkeypatch.setenv("KD_LENS_REFERENCE_RUNS", str(reference))
    shipped = RunStore(reference)
    shipped.create("train", {"name": "shipped kl"}, run_id="reference-kl", state="finished")
    shipped.create("train", {"name": "shipped ce"}, run_id="reference-ce", state="finished")
    return RunStore(), reference


def test_user_runs_go_to_the_per_user_folder_and_reference_runs_are_listed_beside_them(two_roots, tmp_path):
    store, reference = two_roots
    assert default_root() == tmp_path / "data" / "kd-lens" / "runs" and store.root == default_root()
    mine = store.create("train", {"name": "mine"}, run_id="my-run", state="finished")
    assert mine.path.parent == store.root  # never the source tree, never the reference folder
    assert {s.run_id for s in store.list()} == {"my-run", "reference-kl", "reference-ce"}
    assert store.get("reference-kl").path == reference / "reference-kl"
    assert store.is_reference("reference-kl") and not store.is_reference("my-run")
    with pytest.raises(Exception, match="already exists among the reference runs"):
        store.create("train", {}, run_id="reference-kl")
    # a user's run of the same id (from before the split) shadows the shipped one
    import shutil

    RunStore(store.root.parent / "old").create("train", {"name": "old copy"}, run_id="reference-ce", state="failed")
    shutil.move(store.root.parent / "old" / "reference-ce", store.root / "reference-ce")
    assert {s.run_id: s.state for s in store.list()}["reference-ce"] == "failed"


def test_a_store_opened_on_a_folder_or_KD_LENS_RUNS_is_that_folder_alone(two_roots, tmp_path, monkeypatch):
    assert [s.run_id for s in RunStore(tmp_path / "elsewhere").list()] == []
    monkeypatch.setenv("KD_LENS_RUNS", str(tmp_path / "env"))
    monkeypatch.delenv("KD_LENS_REFERENCE_RUNS")
    assert RunStore().root == tmp_path / "env" and RunStore().list() == []
    monkeypatch.setenv("KD_LENS_REFERENCE_RUNS", "")  # empty: none, whatever else is set
    monkeypatch.delenv("KD_LENS_RUNS")
    assert RunStore().reference is None


def test_explaining_a_reference_run_writes_beside_the_users_runs_not_into_it(two_roots):
    from kd_analysis.error_analysis.explain import EXPLANATIONS, cached, save
    from tests.helpers.error_runs import explanation

    store, reference = two_roots
    shipped = explanation("reference-kl", "ex-01")
    (reference / "reference-kl" / EXPLANATIONS).write_text(json.dumps(shipped.to_dict()) + "\n")
    before = sorted(p.name for p in (reference / "reference-kl").iterdir())
    save(store, explanation("reference-kl", "ex-02"))
    assert sorted(p.name for p in (reference / "reference-kl").iterdir()) == before  # read-only
    assert (store.root / "annotations" / "reference-kl" / EXPLANATIONS).is_file()
    assert {k[0] for k in cached(store, "reference-kl")} == {"ex-01", "ex-02"}  # shipped and the user's


def test_a_shipped_teacher_path_is_found_from_any_working_folder(tmp_path, monkeypatch):
    """Configs and presets name the reference teachers `cached_runs/<run>/checkpoint`; started elsewhere (`kd-lens
    app` from a home folder, a script in another project) that path still names them."""
    from kd_analysis.locations import shipped_path
    from kd_analysis.models.loading import expected_task
    from kd_analysis.models.specs import ModelSpec
    from kd_analysis.training.presets import MC_TEACHER

    monkeypatch.chdir(tmp_path)
    assert shipped_path(MC_TEACHER) == ROOT / MC_TEACHER
    assert expected_task(ModelSpec(MC_TEACHER)) == "multiple_choice"  # read from the adapter, found from here
    assert shipped_path("cached_runs/no-such-run/checkpoint") == ROOT / "cached_runs/no-such-run/checkpoint"
    assert shipped_path("elsewhere/checkpoint") is None


def test_app_command_binds_this_machine_and_refuses_a_public_address_unless_asked(capsys):
    proc = cli("app", "--print", "--port", "8600", "--", "--theme.base", "dark")
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert f"streamlit run {ROOT / 'app.py'}" in line
    assert "--server.address 127.0.0.1" in line and "--server.port 8600" in line and "fileWatcherType none" in line
    assert line.endswith("--theme.base dark")
    assert_clean_error(cli("app", "--address", "0.0.0.0"), "--allow-remote")
    assert "--server.address 0.0.0.0" in cli("app", "--print", "--address", "0.0.0.0", "--allow-remote").stdout


def test_make_reference_writes_to_the_shipped_folder_by_default(two_roots, monkeypatch):
    from kd_analysis.demo import reference as demo_reference

    _, shipped = two_roots
    seen = []
    monkeypatch.setattr(demo_reference, "make_reference", lambda store, **kw: seen.append(store.root) or [])
    assert cli("runs", "make-reference", "--only", "nothing").returncode == 0
    assert seen == [shipped]
