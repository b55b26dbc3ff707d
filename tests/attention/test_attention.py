"""Attention heads: statistics against a hand computation from output_attentions, streaming, grouped-query
models, comparisons, the offline bertviz view and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kd_analysis.attention.compare import diff_map, rank_heads
from kd_analysis.attention.stats import STATS, HeadStats, head_matrix, head_stats
from kd_analysis.attention.views import attention_view, example_attentions, safe_tokens
from kd_analysis.data.example import Example
from kd_analysis.exceptions import KDLensError
from kd_analysis.models.loading import attention_weights, load_model
from kd_analysis.models.specs import ModelSpec
from tests.helpers.cli import assert_clean_error, cli

pytestmark = pytest.mark.numeric  # floats compared across computation orders: rerun on other kernels

EXS = [
    Example(id=str(i), text=f"Ann has {i + 3} pens and buys {i} more." + " How many pens?" * (1 + 3 * (i % 3)))
    for i in range(6)
]


def _manual(loaded, text):
    ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
    with attention_weights(loaded.model), torch.no_grad():
        att = loaded.model(input_ids=ids, output_attentions=True).attentions
    digits = np.array([any(c.isdigit() for c in loaded.tokenizer.decode([i])) for i in ids[0].tolist()])
    out = {s: [] for s in STATS}
    prev = None
    for a in att:
        a = a[0].double().numpy()  # [H, L, L]
        L = a.shape[-1]
        valid = np.tril(np.ones((L, L), dtype=bool))
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.where(valid, a * np.log(np.where(a > 0, a, 1)), 0).sum(-1).mean(-1)
        out["entropy"].append(ent)
        out["self"].append(np.einsum("hii->hi", a).mean(-1))
        out["sparsity_visible"].append((((a > 0.1) & valid).sum(-1) / valid.sum(-1)).mean(-1))
        out["sparsity_paper"].append(((a > 0.1) & valid).mean((-2, -1)))
        out["numbers"].append((a * digits).sum(-1).mean(-1))
        if prev is None:
            out["prev_similarity"].append(np.full(a.shape[0], np.nan))
        else:
            fa, fb = a.reshape(a.shape[0], -1), prev.reshape(a.shape[0], -1)
            out["prev_similarity"].append(
                (fa * fb).sum(-1) / (np.linalg.norm(fa, axis=-1) * np.linalg.norm(fb, axis=-1))
            )
        prev = a
    return {s: np.stack(v) for s, v in out.items()}


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
def test_stats_match_a_hand_computation(tiny_dir, family):
    lm = load_model(ModelSpec(str(tiny_dir / family)))
    manual = [_manual(lm, ex.text) for ex in EXS[:3]]
    stats = head_stats(lm, EXS[:3], lambda ex: ex.text, label=family)
    assert (stats.layers, stats.heads, stats.examples) == (2, 4, 3)
    for s in STATS:
        expected = np.mean([m[s] for m in manual], axis=0)
        np.testing.assert_allclose(stats.mean[s], expected, rtol=1e-4, atol=1e-6, err_msg=s)
    sd = np.std([m["entropy"] for m in manual], axis=0, ddof=1)
    from scipy.stats import t

    np.testing.assert_allclose(stats.ci["entropy"], t.ppf(0.975, 2) * sd / np.sqrt(3), rtol=1e-3, atol=1e-7)
    assert np.isnan(stats.mean["prev_similarity"][0]).all() and np.isfinite(stats.mean["prev_similarity"][1]).all()


def test_grouped_query_model_has_one_row_per_query_head(tiny_dir):
    lm = load_model(ModelSpec(str(tiny_dir / "qwen2")))
    kv = getattr(lm.model.config, "num_key_value_heads", None)
    assert kv is not None and kv < lm.model.config.num_attention_heads  # the fixture really is grouped-query
    assert head_stats(lm, EXS[:1], lambda ex: ex.text).heads == lm.model.config.num_attention_heads


def test_encoder_and_choice_models(tiny_dir):
    enc = load_model(ModelSpec(str(tiny_dir / "bert"), task="multiple_choice"))
    stats = head_stats(enc, EXS[:2], lambda ex: ex.text)
    n = max(len(enc.tokenizer(ex.text)["input_ids"]) for ex in EXS[:2])
    assert stats.mean["sparsity_paper"].shape == (2, 4)
    assert np.all(stats.mean["entropy"] <= np.log(n) + 1e-5)
    assert np.all(stats.mean["entropy"] > np.log(n) - 1.5)  # bidirectional, near-uniform: not a causal triangle


def test_streaming_never_holds_every_layer(tiny_dir, monkeypatch):
    """The forward is run without output_attentions: only the hook sees each layer's matrix."""
    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    seen = []
    original = lm.model.forward

    def spy(*a, **k):
        seen.append(k.get("output_attentions"))
        return original(*a, **k)

    monkeypatch.setattr(lm.model, "forward", spy)
    head_stats(lm, EXS[:2], lambda ex: ex.text)
    assert seen and not any(seen)


def test_long_input_is_cut_with_a_note(tiny_dir):
    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    long = Example(id="long", text=" ".join(["seven 7"] * 1000))
    stats = head_stats(lm, [long], lambda ex: ex.text, max_tokens=64)
    assert stats.notes and "1 of 1 example(s)" in stats.notes[0] and "input truncated to 64 tokens" in stats.notes[0]


def test_round_trip_diff_and_ranking(tiny_dir):
    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    a = head_stats(lm, EXS, lambda ex: ex.text, label="plain")
    b = head_stats(lm, EXS, lambda ex: "Think step by step. " + ex.text, label="primed")
    again = HeadStats.from_dict(json.loads(json.dumps(a.to_dict())))
    np.testing.assert_allclose(again.mean["entropy"], a.mean["entropy"], atol=1e-6)
    d = diff_map(b, a, "numbers")
    np.testing.assert_allclose(d.diff, b.mean["numbers"] - a.mean["numbers"])
    same = diff_map(a, again, "entropy")
    assert not same.clear.any()  # identical strategies never differ "clearly"
    rows = rank_heads([a, b], "entropy", top=3)
    var = np.var(np.stack([a.mean["entropy"], b.mean["entropy"]]), axis=0)
    assert [(r["layer"], r["head"]) for r in rows] == [
        tuple(np.unravel_index(i, var.shape)) for i in np.argsort(-var, axis=None)[:3]
    ]
    with pytest.raises(KDLensError, match="at least two"):
        rank_heads([a], "entropy")


def test_head_matrix_rows_are_distributions(tiny_dir):
    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    m, labels = head_matrix(lm, EXS[0].text, layer=1, head=2)
    assert m.shape == (len(labels), len(labels)) and np.allclose(m.sum(-1), 1, atol=1e-5)
    assert np.allclose(np.triu(m, 1), 0)  # causal
    with pytest.raises(KDLensError, match="layer must be"):
        head_matrix(lm, EXS[0].text, layer=9, head=0)


def test_offline_view_has_no_cdn_and_escapes_tokens(tiny_dir):
    lm = load_model(ModelSpec(str(tiny_dir / "llama")))
    att, tokens = example_attentions(lm, EXS[0].text)
    html, notes = attention_view(att, tokens + [], kind="model")
    assert "cdnjs" not in html and "require.min.js" not in html and "d3" in html and "jQuery" in html
    assert not notes
    evil = attention_view([torch.softmax(torch.randn(1, 2, 2, 2), -1)], ["</script><b>", "x"])[0]
    assert "</script><b>" not in evil
    assert json.dumps(safe_tokens(["</script><b>"])[0]).strip('"') in evil  # shown as ‹/script›‹b›
    many = [torch.softmax(torch.randn(1, 4, 100, 100), -1)] * 2
    _, notes = attention_view(many, [str(i) for i in range(100)], max_tokens=32)
    assert notes and "last 32 of 100" in notes[0]
    with pytest.raises(KDLensError, match="MB"):
        attention_view([torch.softmax(torch.randn(1, 64, 64, 64), -1)] * 40, [str(i) for i in range(64)])


@pytest.mark.slow
def test_cli_attention_stats_view_and_prime(tiny_dir, tmp_path):
    data = tmp_path / "arith.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "question": f"Ann has {i} pens and buys 2 more. How many pens?",
                    "answer": f"Ann has {i} + 2 = {i + 2} pens.\n#### {i + 2}",
                }
            )
            + "\n"
            for i in range(5)
        )
    )
    llama = str(tiny_dir / "llama")
    proc = cli(
        "attention",
        "stats",
        "--model",
        f"a={llama}",
        "--model",
        f"b={tiny_dir / 'qwen2'}",
        "--data",
        str(data),
        "--limit",
        "3",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["profiles"]) == {"a", "b"} and len(report["top_heads"]) == 8
    out = tmp_path / "view.html"
    proc = cli("attention", "view", "--model", llama, "--data", str(data), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and "cdnjs" not in out.read_text()
    proc = cli(
        "prime",
        "outputs",
        "--teacher",
        llama,
        "--data",
        str(data),
        "--limit",
        "2",
        "--strategies",
        "none,cot",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert [r["strategy"] for r in json.loads(proc.stdout)] == ["none", "cot"]
    proc = cli(
        "prime",
        "outputs",
        "--teacher",
        llama,
        "--data",
        str(data),
        "--limit",
        "2",
        "--generate",
        "--max-new-tokens",
        "3",
        "--strategies",
        "cot,none",
        "--save",
        "--root",
        str(tmp_path / "runs"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    saved = json.loads(proc.stdout)
    assert [r["strategy"] for r in saved] == ["cot", "none"] and all(r["accuracy"] is not None for r in saved)
    from kd_analysis.runs import RunStore

    assert [j.kind for j in RunStore(tmp_path / "runs").list()] == ["teacher_outputs"]
    assert_clean_error(
        cli(
            "prime",
            "outputs",
            "--teacher",
            llama,
            "--data",
            str(data),
            "--strategies",
            "none",
            "--template",
            "none=no slot here",
        ),
        "no {question} slot",
    )
    assert_clean_error(cli("attention", "stats", "--data", str(data)), "at least one --run")


def test_attention_job_primes_one_model_per_template(tiny_dir, tmp_path, monkeypatch):
    from kd_analysis.attention import job as job_mod
    from kd_analysis.attention.job import attention_config, load_attention_run
    from kd_analysis.runs import RunStore
    from kd_analysis.training.worker import run_one

    data = tmp_path / "arith.jsonl"
    data.write_text(
        "".join(
            json.dumps({"question": f"Ann has {i} pens and buys 2 more. How many pens?", "answer": f"#### {i + 2}"})
            + "\n"
            for i in range(4)
        )
    )
    spec = ModelSpec(str(tiny_dir / "llama")).to_dict()
    models = [
        {"label": "none", "spec": spec, "template": "{question}"},
        {"label": "cot", "spec": spec, "template": "{question}\nLet's think step by step, carefully."},
    ]
    loads = []
    original = job_mod.load_labelled
    monkeypatch.setattr(job_mod, "load_labelled", lambda e, s: loads.append(e) or original(e, s))
    store = RunStore(tmp_path / "runs")
    run = store.create("attention", attention_config(models, str(data), limit=4), run_id="heads")
    assert run_one(run, store) == 0 and run.status()["state"] == "finished"
    stats = load_attention_run(store.get("heads"))
    assert [s.label for s in stats] == ["none", "cot"] and len(loads) == 1  # one model, two prompts
    assert not np.allclose(stats[0].mean["entropy"], stats[1].mean["entropy"])  # the prompt changes the heads
    assert [m["step"] for m in run.metrics()] == list(range(1, 9))
