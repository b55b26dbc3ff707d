"""A plain `pip install .` carries the app and the shipped reference runs (`<prefix>/share/kd-lens`), so `kd-lens
app` starts from an install as from a clone."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = "data/share/kd-lens/"


@pytest.mark.slow
def test_the_wheel_carries_the_app_and_the_reference_runs(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("kd_lens-*.whl")
    names = [n.split(".data/", 1)[1] for n in zipfile.ZipFile(wheel).namelist() if ".data/" + DATA in n]
    shipped = {n[len(DATA) :] for n in names}
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py")}
    assert {"app.py", ".streamlit/config.toml"} | pages <= shipped
    assert "cached_runs/reference-minilm-mc-teacher/checkpoint/adapter_config.json" in shipped
    assert "cached_runs/reference-minilm-2l-kl/metrics.jsonl" in shipped
    # weights other than the teachers' may sit in a working copy (ignored by git): never shipped
    checkpoints = {n.split("/")[1] for n in shipped if "/checkpoint/" in n}
    assert checkpoints and all(run.endswith("-teacher") for run in checkpoints), checkpoints


def test_an_installed_copy_of_the_app_is_found_when_there_is_no_checkout(tmp_path, monkeypatch):
    import sysconfig

    from kd_analysis import locations

    share = tmp_path / "share" / "kd-lens"
    (share / "pages").mkdir(parents=True)
    (share / "app.py").write_text("")
    (share / "cached_runs").mkdir()
    monkeypatch.setattr(locations, "_CHECKOUT", tmp_path / "site-packages")  # as for a plain install
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path) if name == "data" else "")
    monkeypatch.delenv("KD_LENS_REFERENCE_RUNS", raising=False)
    assert locations.app_root() == share and locations.shipped_runs() == share / "cached_runs"
