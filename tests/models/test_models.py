"""The one loading path: nine families, built-ins offline, students, pair check, bad checkpoints."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import torch

from kd_analysis.data import Example
from kd_analysis.exceptions import KDLensError, ModelLoadError
from kd_analysis.models import ModelSpec, StudentSpec
from kd_analysis.models.loading import attention_weights, estimate_memory, load_model
from kd_analysis.models.pair import check_pair
from kd_analysis.models.scoring import forward
from kd_analysis.models.students import derive_student, evenly_spaced
from kd_analysis.models.tiny import TINY_FAMILIES, build_tiny

MC = [Example("1", "what is two plus three", choices=["five", "six", "seven"], label=0)]


@pytest.mark.parametrize("family", list(TINY_FAMILIES))
def test_every_family_loads_and_runs(tiny_dir, family):
    task = TINY_FAMILIES[family][0]
    m = load_model(ModelSpec(str(tiny_dir / family)))
    assert m.task == task and m.family == family and m.source_kind == "local"
    out = forward(m, ["the cat sat on the mat", "a dog"])
    assert torch.isfinite(out).all()
    info = m.info()
    assert info.layers == 2 and info.heads == 4 and info.parameters > 0
    if task == "classification":
        assert out.shape == (2, 2)
    else:
        assert out.shape[0] == 2 and out.shape[-1] == m.output_size() == info.vocab_size


@pytest.mark.parametrize("family", list(TINY_FAMILIES))
def test_every_family_scores_multiple_choice(tiny_dir, family):
    m = load_model(ModelSpec(str(tiny_dir / family), task="multiple_choice"))
    scores = forward(m, MC)
    assert scores.shape == (1, 3) and torch.isfinite(scores).all()
    assert m.head == (
        "choice_head"
        if TINY_FAMILIES[family][0] == "classification"
        else "seq2seq"
        if family in ("t5", "bart")
        else "lm"
    )


def test_lm_choice_score_is_the_mean_token_logprob(tiny_dir):
    """Independent recomputation of one choice's score from a plain forward pass."""
    m = load_model(ModelSpec(str(tiny_dir / "llama"), task="multiple_choice"))
    tok = m.tokenizer
    prompt = "Question: what is two plus three\nAnswer:"
    p_ids, c_ids = tok(prompt)["input_ids"], tok(" six", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p_ids + c_ids])
    with torch.no_grad():
        logp = torch.log_softmax(m.model(input_ids=ids).logits[0].float(), -1)
    expected = torch.stack([logp[len(p_ids) + i - 1, t] for i, t in enumerate(c_ids)]).mean()
    assert forward(m, MC)[0, 1].item() == pytest.approx(expected.item(), abs=1e-5)


def test_memory_estimate_matches_loaded_model(tiny_dir):
    for family in ("bert", "llama", "t5"):
        spec = ModelSpec(str(tiny_dir / family))
        est = estimate_memory(spec)
        assert est.parameters == load_model(spec).info().parameters
        assert est.weights_mb == pytest.approx(est.parameters * 4 / 2**20, abs=0.1)


def test_drop_layers_copies_the_kept_blocks(tiny_dir):
    teacher = load_model(ModelSpec(str(tiny_dir / "gpt2")))
    student = derive_student(teacher, StudentSpec(keep_layers=(1,)))
    assert student.info().layers == 1 and student.derivation["kept_layers"] == [1]
    t_sd, s_sd = teacher.model.state_dict(), student.model.state_dict()
    assert torch.equal(s_sd["transformer.h.0.attn.c_attn.weight"], t_sd["transformer.h.1.attn.c_attn.weight"])
    assert torch.equal(s_sd["transformer.wte.weight"], t_sd["transformer.wte.weight"])
    assert student.tokenizer is teacher.tokenizer


def test_drop_layers_t5_keeps_relative_position_bias(tiny_dir):
    teacher = load_model(ModelSpec(str(tiny_dir / "t5")))
    student = derive_student(teacher, StudentSpec(keep_layers=(1,)))
    key = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    assert torch.equal(student.model.state_dict()[key], teacher.model.state_dict()[key])
    assert student.derivation["fallback_tensors"] >= 1
    assert torch.isfinite(forward(student, ["the cat"])).all()


def test_drop_layers_on_qwen2_subsets_layer_types(tiny_dir):
    teacher = load_model(ModelSpec(str(tiny_dir / "qwen2")))
    student = derive_student(teacher, StudentSpec(num_layers=1))
    layer_types = getattr(student.model.config, "layer_types", None)
    assert layer_types is None or len(layer_types) == 1


def test_drop_layers_bad_indices(tiny_dir):
    teacher = load_model(ModelSpec(str(tiny_dir / "bert")))
    for keep in [(0, 0), (5,), (-1,)]:
        with pytest.raises(KDLensError, match="distinct indices"):
            derive_student(teacher, StudentSpec(keep_layers=keep))


def test_evenly_spaced():
    assert evenly_spaced(30, 10) == [0, 3, 6, 10, 13, 16, 19, 23, 26, 29]
    assert evenly_spaced(6, 2) == [0, 5] and evenly_spaced(6, 1) == [0]
    with pytest.raises(KDLensError):
        evenly_spaced(6, 7)


@pytest.mark.parametrize("family", list(TINY_FAMILIES))
def test_shrink_makes_a_smaller_model_with_the_same_vocabulary(tiny_dir, family):
    teacher = load_model(ModelSpec(str(tiny_dir / family)))
    student = derive_student(teacher, StudentSpec(kind="shrink", num_layers=1, hidden_size=16, num_heads=2))
    t, s = teacher.info(), student.info()
    assert s.parameters < t.parameters and s.layers == 1 and s.hidden_size == 16
    assert student.output_size() == teacher.output_size()
    assert torch.isfinite(forward(student, ["the cat"])).all()
    assert check_pair(teacher, student).comparable


def test_pair_padded_vocab_is_aligned(tmp_path):
    a = build_tiny("qwen2", tmp_path / "a", vocab_size=320)
    b = build_tiny("qwen2", tmp_path / "b", vocab_size=384)
    t, s = load_model(ModelSpec(str(a))), load_model(ModelSpec(str(b)))
    report = check_pair(t, s)
    assert report.same_tokenizer and report.teacher_outputs == 320 and report.student_outputs == 384
    assert report.comparable and report.aligned_outputs == 320
    assert "padding" in " ".join(report.notes)
    assert report.losses["sinkhorn"]["applies"]


def test_pair_different_tokenizers_rule_out_logit_losses(tiny_dir):
    t = load_model(ModelSpec(str(tiny_dir / "gpt2")))
    s = load_model(
        ModelSpec(str(tiny_dir / "bert")),
    )
    s2 = load_model(ModelSpec(str(tiny_dir / "bert"), task="classification"))
    r = check_pair(t, s2)
    assert not r.comparable and not r.losses["kl"]["applies"] and r.losses["ce"]["applies"]
    assert r.output_space == "mismatch"
    tok_diff = check_pair(
        load_model(ModelSpec(str(tiny_dir / "llama"))),
        derive_student(load_model(ModelSpec(str(tiny_dir / "llama"))), StudentSpec(num_layers=1)),
    )
    assert tok_diff.same_tokenizer and tok_diff.comparable
    assert s.task == "classification"


def test_pair_multiple_choice_compares_across_tokenizers(tiny_dir):
    t = load_model(ModelSpec(str(tiny_dir / "gpt2"), task="multiple_choice"))
    s = load_model(ModelSpec(str(tiny_dir / "bert"), task="multiple_choice"))
    r = check_pair(t, s)
    assert not r.same_tokenizer and r.comparable and r.output_space == "choices"


def test_pair_label_count_mismatch(tmp_path):
    a = build_tiny("bert", tmp_path / "a")
    b = build_tiny("bert", tmp_path / "b", num_labels=3)
    r = check_pair(load_model(ModelSpec(str(a))), load_model(ModelSpec(str(b))))
    assert not r.comparable and "labels" in r.notes[0]


def test_attentions_on_request_only(tiny_dir):
    m = load_model(ModelSpec(str(tiny_dir / "llama")))
    ids = m.tokenizer(["the cat sat"], return_tensors="pt")
    assert m.model.config._attn_implementation != "eager"
    with attention_weights(m.model):
        att = m.model(**ids, output_attentions=True).attentions
        assert len(att) == 2 and att[0].shape[1] == 4
        assert torch.allclose(att[0].sum(-1), torch.ones_like(att[0].sum(-1)), atol=1e-5)
    assert m.model.config._attn_implementation != "eager"
    eager = load_model(ModelSpec(str(tiny_dir / "llama"), attentions=True))
    assert eager.model.config._attn_implementation == "eager"


# bad input -----------------------------------------------------------------------------------------------------
def test_nonexistent_path(tmp_path):
    with pytest.raises(ModelLoadError, match="model folder not found"):
        load_model(ModelSpec(str(tmp_path / "nope")))


def test_folder_without_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(ModelSpec(str(tmp_path)))


def test_file_instead_of_folder(tiny_dir):
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model(ModelSpec(str(tiny_dir / "bert" / "config.json")))


@pytest.mark.parametrize("damage", ["garbage", "truncate"])
def test_corrupt_safetensors(tiny_dir, tmp_path, damage):
    folder = tmp_path / "m"
    shutil.copytree(tiny_dir / "bert", folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(b"\x00garbage" * 10 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="corrupt|truncated"):
        load_model(ModelSpec(str(folder)))


def test_pickle_only_checkpoint_loads_safely(tiny_dir, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_dir / "bert", folder)
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    m = load_model(ModelSpec(str(folder)))
    assert any("weights_only=True" in n for n in m.notes)
    assert torch.equal(m.model.state_dict()["classifier.weight"], state["classifier.weight"])


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_with_code_is_refused(tiny_dir, tmp_path, capsys):
    folder = tmp_path / "m"
    shutil.copytree(tiny_dir / "bert", folder)
    (folder / "model.safetensors").unlink()
    torch.save({"evil": _Evil()}, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="refused|could not load"):
        load_model(ModelSpec(str(folder)))
    assert "this must never run" not in capsys.readouterr().out


def test_hub_id_offline_fails_fast(monkeypatch):
    monkeypatch.setattr("kd_analysis.models.sources.hub_reachable", lambda: False)
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelSpec("some-org/some-model-that-is-not-cached"))
    assert "some-org/some-model-that-is-not-cached" in str(err.value) and "offline" in str(err.value)
    assert time.monotonic() - start < 10, "must not wait on network time-outs"


def test_hub_reachable_is_quick_and_false_here(monkeypatch):
    from kd_analysis import hub

    monkeypatch.setattr(hub, "_cache", {})
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # closed port: refused at once
    assert hub.hub_reachable() is False
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_reachable() is False


def test_remote_code_needs_the_tick(tmp_path):
    cfg = {
        "model_type": "my_custom_arch",
        "architectures": ["MyModel"],
        "auto_map": {"AutoConfig": "configuration_my.MyConfig", "AutoModel": "modeling_my.MyModel"},
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "modeling_my.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ModelLoadError, match="trust remote code"):
        load_model(ModelSpec(str(tmp_path)))


def test_unknown_source_and_task(tiny_dir):
    with pytest.raises(ModelLoadError, match="not a built-in"):
        load_model(ModelSpec("not a model!"))
    with pytest.raises(ModelLoadError, match="not an encoder-decoder"):
        load_model(ModelSpec(str(tiny_dir / "bert"), task="seq2seq"))
    with pytest.raises(ModelLoadError, match="cannot generate text"):
        load_model(ModelSpec(str(tiny_dir / "distilbert"), task="causal_lm"))


def test_lora_adapter_folder_loads_through_the_same_path(tiny_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = load_model(ModelSpec(str(tiny_dir / "bert")))
    peft_model = get_peft_model(
        base.model,
        LoraConfig(
            r=2, lora_alpha=4, target_modules="all-linear", modules_to_save=["classifier"], init_lora_weights=False
        ),
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tiny_dir / "bert")
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(cfg))
    expected = forward(base, ["the cat sat"])  # peft model shares (and now wraps) the base modules
    loaded = load_model(ModelSpec(str(tmp_path / "adapter")))
    assert loaded.source_kind == "adapter" and any("LoRA adapter" in n for n in loaded.notes)
    torch.testing.assert_close(forward(loaded, ["the cat sat"]), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ModelLoadError, match="classifier head"):
        load_model(ModelSpec(str(tmp_path / "adapter"), task="causal_lm"))


def test_new_task_heads_are_reproducible(tiny_dir):
    a = load_model(ModelSpec(str(tiny_dir / "bert"), task="multiple_choice"))
    torch.manual_seed(1234)
    b = load_model(ModelSpec(str(tiny_dir / "bert"), task="multiple_choice"))
    assert torch.equal(a.model.classifier.weight, b.model.classifier.weight)
    assert torch.initial_seed() == 1234  # the caller's random state is left alone


class _NotATensor:
    """Pickled into an adapter's weights: a global that weights_only loading refuses."""


def test_a_pickled_adapter_is_refused_in_our_words_not_torchs(tiny_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = load_model(ModelSpec(str(tiny_dir / "bert")))
    peft_model = get_peft_model(base.model, LoraConfig(r=2, lora_alpha=4, target_modules="all-linear"))
    peft_model.save_pretrained(tmp_path / "adapter")
    folder = tmp_path / "adapter"
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tiny_dir / "bert")
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    (folder / "adapter_model.safetensors").unlink()
    torch.save({"weight": _NotATensor()}, folder / "adapter_model.bin")
    with pytest.raises(ModelLoadError) as caught:
        load_model(ModelSpec(str(folder)))
    assert "refused (weights_only=True)" in str(caught.value) and "weights_only=False" not in str(caught.value)


@pytest.mark.parametrize(
    "config,words",
    [
        ("[1, 2]", "must hold a JSON object"),
        ('{"model_type": "x", "auto_map": ["a.B"]}', "auto_map or model_type is malformed"),
        ('{"model_type": ["x"], "auto_map": {"AutoConfig": "a.B"}}', "auto_map or model_type is malformed"),
        ('{"model_type": "x", "auto_map": {"AutoConfig": 5}}', "needs its own Python code"),
    ],
)
def test_a_malformed_model_config_is_a_sentence(tmp_path, config, words):
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(ModelLoadError, match=words):
        load_model(ModelSpec(str(tmp_path)))


def test_a_shipped_adapter_loads_for_the_task_its_run_trained():
    """A LoRA adapter on MiniLM may be a sentiment classifier or a multiple-choice model: its run's config says
    which (task "auto" took the base's default, multiple choice, for the sentiment teacher too)."""
    from pathlib import Path

    from kd_analysis.models.loading import adapter_task, expected_task

    runs = Path(__file__).resolve().parents[2] / "cached_runs"
    sentiment = runs / "reference-minilm-sentiment-teacher" / "checkpoint"
    assert adapter_task(sentiment) == "classification"
    assert expected_task(ModelSpec(str(sentiment))) == "classification"
    assert expected_task(ModelSpec(str(runs / "reference-minilm-mc-teacher" / "checkpoint"))) == "multiple_choice"
    assert adapter_task(runs) is None  # not an adapter saved by a run
