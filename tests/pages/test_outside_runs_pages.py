"""Runs trained elsewhere (a Trainer with KDLensCallback, a loop with kd_analysis.track) open on the Runs, Compare
and Error analysis pages like kd-lens's own, which say where each came from and what it lacks."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from kd_analysis import track
from tests.helpers.outside import classification_trainer, perturbed

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 180


def _open(page: str, **params: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    return " ".join(str(x.value) for kind in (at.caption, at.markdown, at.info, at.warning) for x in kind)


def test_pages_open_runs_trained_elsewhere_and_say_what_they_lack(tiny_dir, run_root, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from kd_analysis.data.sources import load_dataset
    from kd_analysis.integrations import KDLensCallback

    examples = load_dataset("demo:sentiment").examples[64:76]
    teacher = perturbed(AutoModelForSequenceClassification.from_pretrained(tiny_dir / "bert", num_labels=2))
    callback = KDLensCallback(
        run_root, name="Trainer run", eval_examples=examples, teacher=teacher, data_name="demo:sentiment"
    )
    classification_trainer(tiny_dir / "bert", tmp_path / "out", [callback]).train()
    with track.start("loop run", student="s", root=run_root) as loop:
        loop.log(1, loss=0.7)

    runs = _open("pages/distillation_runs.py", watch=callback.run_id)
    words = _texts(runs)
    assert "trained by a transformers Trainer with KDLensCallback" in words
    assert "logged by a custom training loop" in words
    assert "no saved student" in words  # the Trainer saved no checkpoint: explanations cannot load it

    compare = _open("pages/compare_runs.py", runs=f"{callback.run_id},{loop.run_id}")
    table = compare.dataframe[0].value
    assert list(table["losses"]) == ["its trainer's own", "its trainer's own"]

    errors = _open("pages/error_analysis.py", run=callback.run_id)
    assert any("Right/wrong matrix" in s.value for s in errors.subheader)
    assert any(m.label.endswith("accuracy") and m.value for m in errors.metric)
