"""The memory guard: models far larger than the free memory are refused before any weight file is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kd_analysis.exceptions import ModelLoadError
from kd_analysis.models import memory
from kd_analysis.models.memory import MemoryVerdict, available_memory_mb, check_memory
from kd_analysis.models.specs import ModelSpec, StudentSpec

# ~230B parameters: no machine this runs on has a terabyte free (takes ~3 s to count on the meta device)
HUGE_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 12288,
    "num_hidden_layers": 96,
    "intermediate_size": 49152,
    "vocab_size": 50000,
    "num_attention_heads": 96,
    "num_key_value_heads": 96,
    "max_position_embeddings": 2048,
}
# counted instantly, ~100M parameters (bigger than MiniLM); "too big" comes from a patched amount of free memory
SMALL_LLAMA = {
    **HUGE_LLAMA,
    "hidden_size": 256,
    "num_hidden_layers": 2,
    "intermediate_size": 512,
    "vocab_size": 200000,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
}
FREE = 250  # MB: MiniLM (~170 MB fp32 with margins) fits, SMALL_LLAMA (~540 MB fp32, ~300 bf16) does not
SMALL_BERT = {
    "architectures": ["BertForMaskedLM"],
    "model_type": "bert",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "vocab_size": 500,
    "max_position_embeddings": 64,
}


def config_only(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.fixture
def free_mb(monkeypatch):
    """Set the free memory every check sees (MB, for any device)."""

    def set_free(value):
        monkeypatch.setattr(memory, "available_memory_mb", lambda device: value)

    return set_free


# --- verdicts ---------------------------------------------------------------------------------------------------
def test_verdict_ok_warn_refuse():
    ok = check_memory(500, "cpu", 1000)
    warn = check_memory(900, "cpu", 1000)
    refuse = check_memory(664_832, "cpu", 24_000)
    assert (ok.status, warn.status, refuse.status) == ("ok", "warn", "refuse")
    assert not ok.refused and not warn.refused and refuse.refused
    assert refuse.estimate_mb == 664_832 and refuse.available_mb == 24_000 and refuse.device == "cpu"
    assert "664,832 MB" in refuse.message and "24,000 MB" in refuse.message and "\n" not in refuse.message
    assert "RAM" in refuse.message
    assert check_memory(800, "cpu", 1000).status == "ok"  # exactly 80%: still ok


def test_verdict_reads_the_injected_source_and_handles_unknown(monkeypatch):
    assert check_memory(10, "cuda:1", lambda device: 5 if device == "cuda:1" else 1e9).status == "refuse"
    monkeypatch.setattr(memory, "available_memory_mb", lambda device: 100.0)
    assert check_memory(99, "cpu").status == "warn"
    unknown = check_memory(10, "cpu", lambda device: None)
    assert unknown.status == "unknown" and not unknown.refused and "not checked" in unknown.message
    assert isinstance(unknown.to_dict(), dict) and isinstance(unknown, MemoryVerdict)


def test_available_memory_reads_ram_and_gpu(monkeypatch):
    assert available_memory_mb("cpu") > 0
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * 2**30, 80 * 2**30))
    assert available_memory_mb("cuda:0") == 3 * 1024
    verdict = check_memory(4000, "cuda:0")
    assert verdict.refused and "GPU" in verdict.message and "3,072 MB" in verdict.message


# --- specs ------------------------------------------------------------------------------------------------------
def test_force_flag_keeps_keys_and_old_specs():
    plain, forced = ModelSpec("minilm"), ModelSpec("minilm", force_memory=True)
    assert plain.key() == forced.key() and plain == forced  # same model: same cache entry
    assert "force_memory" not in plain.to_dict() and forced.to_dict()["force_memory"] is True
    assert ModelSpec.from_dict(forced.to_dict()).force_memory is True
    old = {
        "source": "minilm",
        "task": None,
        "num_labels": None,
        "trust_remote_code": False,
        "revision": None,
        "device": "auto",
        "dtype": "auto",
        "attentions": False,
    }
    assert ModelSpec.from_dict(old) == plain and json.loads(plain.key()) == old
    student = StudentSpec(kind="model", model=forced)
    assert StudentSpec.from_dict(student.to_dict()).model.force_memory is True
    assert "force_memory" not in StudentSpec(kind="model", model=plain).to_dict()["model"]


def test_train_config_carries_the_flag():
    from kd_analysis.training.config import TrainConfig

    cfg = TrainConfig.from_dict({"teacher": {"source": "minilm", "force_memory": True}})
    assert cfg.teacher.force_memory and TrainConfig.from_dict(cfg.to_dict()).teacher.force_memory


# --- loading ----------------------------------------------------------------------------------------------------
def test_load_model_refuses_before_touching_weights(tmp_path, free_mb, monkeypatch):
    from kd_analysis.models import loading

    folder = config_only(tmp_path / "big", SMALL_LLAMA)
    free_mb(FREE)

    def no_weights(*a, **k):
        raise AssertionError("weights were looked for before the memory check")

    monkeypatch.setattr(loading, "resolve_source", no_weights)
    with pytest.raises(ModelLoadError) as err:
        loading.load_model(ModelSpec(str(folder)))
    text = str(err.value)
    assert "MB" in text and "250 MB" in text and "will not fit" in text and "force" in text and "\n" not in text


def test_load_model_with_force_gets_past_the_guard(tmp_path, free_mb):
    from kd_analysis.models.loading import load_model

    folder = config_only(tmp_path / "big", SMALL_LLAMA)
    free_mb(FREE)
    with pytest.raises(ModelLoadError, match="no weights"):
        load_model(ModelSpec(str(folder), force_memory=True))
    free_mb(1e9)  # fits: the guard lets it through, and the missing weights are the problem
    with pytest.raises(ModelLoadError, match="no weights"):
        load_model(ModelSpec(str(folder)))


def test_student_and_pair_loading_are_guarded(tmp_path, free_mb):
    from kd_analysis.models.pairs_loading import load_pair
    from kd_analysis.models.students import derive_student

    folder = config_only(tmp_path / "big", SMALL_LLAMA)
    free_mb(FREE)
    with pytest.raises(ModelLoadError, match="will not fit"):
        derive_student(None, StudentSpec(kind="model", model=ModelSpec(str(folder))))
    with pytest.raises(ModelLoadError, match="no weights"):
        derive_student(None, StudentSpec(kind="model", model=ModelSpec(str(folder), force_memory=True)))
    with pytest.raises(ModelLoadError, match="will not fit"):
        load_pair(ModelSpec(str(folder)), StudentSpec())


def test_memory_verdict_from_config_only(tmp_path, free_mb):
    from kd_analysis.models.loading import memory_verdict

    folder = config_only(tmp_path / "bert", SMALL_BERT)
    free_mb(1e6)
    assert memory_verdict(ModelSpec(str(folder))).status == "ok"
    assert memory_verdict(ModelSpec(str(folder)), available_mb=0.01).refused


# --- command line -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", [SMALL_BERT, SMALL_LLAMA], ids=["bert", "llama"])
def test_cli_estimate_only_on_a_config_only_folder(tmp_path, capsys, config):
    from kd_analysis.cli import main

    folder = config_only(tmp_path / "m", config)
    assert main(["models", "inspect", str(folder), "--estimate-only", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parameters"] > 0 and out["fits"] in ("ok", "warn") and out["available_mb"] > 0


def test_cli_refuses_a_huge_model_in_one_line(tmp_path, capsys):
    from kd_analysis.cli import main

    folder = config_only(tmp_path / "huge", HUGE_LLAMA)
    assert main(["models", "inspect", str(folder), "--estimate-only"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "will not fit" in lines[0]
    assert "GB" in lines[0] and "available" in lines[0] and "Traceback" not in captured.err
    assert "parameters: 233" in captured.out  # the estimate itself is still printed


def test_cli_load_refused_then_forced(tmp_path, capsys, free_mb):
    from kd_analysis.cli import main

    folder = config_only(tmp_path / "big", SMALL_LLAMA)
    free_mb(FREE)
    for args in (
        ["models", "inspect", str(folder)],
        ["models", "pair", "--teacher", str(folder)],
        ["models", "pair", "--teacher", "minilm", "--student", str(folder)],
    ):
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "will not fit" in err[0] and "MB" in err[0], (args, err)
    assert main(["models", "inspect", str(folder), "--force"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no weights" in err[0]
    assert main(["models", "inspect", str(folder), "--estimate-only", "--force"]) == 0
    capsys.readouterr()
    rationales = ["rationales", "--teacher", str(folder), "--data", "demo:mcq", "--limit", "1"]
    assert main(rationales) == 2 and "will not fit" in capsys.readouterr().err
    assert main(rationales + ["--force"]) == 2 and "no weights" in capsys.readouterr().err


# --- page -------------------------------------------------------------------------------------------------------
def _models_page_with_folder(folder: Path):
    from tests.helpers.pages import MODELS, open_page

    at = open_page(MODELS)
    at.radio[0].set_value("Local folder").run()
    next(t for t in at.text_input if t.label == "Folder path").set_value(str(folder)).run()
    return at


def _load_button(at):
    return next(b for b in at.button if b.label.startswith("Load as"))


def test_page_refuses_and_offers_load_anyway(tmp_path, free_mb):
    folder = config_only(tmp_path / "big", SMALL_LLAMA)
    free_mb(FREE)
    at = _models_page_with_folder(folder)
    assert not at.exception
    assert any("Will not fit" in e.value and "MB" in e.value for e in at.error)
    assert _load_button(at).disabled
    next(c for c in at.checkbox if c.label.startswith("Load anyway")).check().run()
    assert not _load_button(at).disabled
    _load_button(at).click().run()
    assert not at.exception
    assert any("no weights" in e.value for e in at.error)  # past the guard: the missing weights stop it


def test_page_warns_when_close(tmp_path, free_mb):
    from kd_analysis.models.loading import estimate_memory

    folder = config_only(tmp_path / "near", SMALL_LLAMA)
    free_mb(estimate_memory(ModelSpec(str(folder))).inference_mb / 0.9)
    at = _models_page_with_folder(folder)
    assert not at.exception
    assert any("Tight fit" in w.value for w in at.warning)
    assert not any("Will not fit" in e.value for e in at.error)
    assert not _load_button(at).disabled
    assert not any(c.label.startswith("Load anyway") for c in at.checkbox)
