"""KD step throughput divided by plain fine-tuning of the same student, measured in the same run.

Step kinds on identical batches: fine-tune (CE only), KD with the teacher run online every step (CE +
full-vocabulary KL) on full logits and as the exact online mode computes it (from hidden states in blocks), and KD from the cached teacher (what the trainer does after the first epoch): its top-64
log-probabilities over the full vocabulary plus a tail bucket (`sparse_kd`), at τ = 2 (one extra logsumexp pass
over the student's vocabulary) and at τ = 1 (the logsumexp that CE computes is reused); either way one more pass
sums the student's tail over its own tokens (exact however small). CPU uses small random-init Llama shapes; a GPU uses SmolLM2 shapes (135M teacher, 30 layers -> 10-layer
student, 16x512 tokens) in bf16 and also reports MFU (6·N·tokens per step against the GPU's bf16 peak).

Run: python benchmarks/bench_train.py [--device cuda] [--json benchmarks/results/train-<device>.json]
Target: cached KD >= 0.9x of fine-tuning throughput. Measured before any project code on an H100 (SmolLM2
shapes, bf16): online KL 0.44x, cached top-64 0.86x.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import markdown_table, median_ms

from kd_analysis.losses.chunked_head import Head, Term, chunked_head_loss
from kd_analysis.losses.sparse import rest_logsumexp
from kd_analysis.models.specs import ModelSpec
from kd_analysis.training.batches import AnswerRows, LMBatch, head_parts
from kd_analysis.training.config import LossTerm, TrainConfig
from kd_analysis.training.objective import ce_loss, kd_loss_terms
from kd_analysis.training.teacher_cache import TopK, bytes_per_token

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def build(device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    if device.startswith("cuda"):
        shape = dict(
            vocab_size=49152,
            hidden_size=576,
            intermediate_size=1536,
            num_attention_heads=9,
            num_key_value_heads=3,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
        )
        t_layers, s_layers, batch, seq, dtype = 30, 10, 16, 512, torch.bfloat16
    else:
        shape = dict(
            vocab_size=8192,
            hidden_size=256,
            intermediate_size=688,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            tie_word_embeddings=True,
        )
        t_layers, s_layers, batch, seq, dtype = 6, 2, 8, 128, torch.float32
    torch.manual_seed(0)
    teacher = LlamaForCausalLM(LlamaConfig(num_hidden_layers=t_layers, **shape)).to(device, dtype).eval()
    student = LlamaForCausalLM(LlamaConfig(num_hidden_layers=s_layers, **shape)).to(device, dtype).train()
    ids = torch.randint(0, shape["vocab_size"], (batch, seq), device=device)
    labels = torch.cat([ids[:, 1:], torch.full((batch, 1), -100, device=device)], 1)
    return teacher, student, ids, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    dev = args.device
    teacher, student, ids, labels = build(dev)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-5)
    cfgs = {
        tau: TrainConfig(teacher=ModelSpec("bench"), losses=[LossTerm("ce", 0.5), LossTerm("kl", 0.5)], tau=tau)
        for tau in (1.0, 2.0)
    }
    width = student.config.vocab_size
    with torch.no_grad():
        t_logits = teacher(input_ids=ids).logits
        mask = labels != -100
        rows = t_logits[mask].float()
        vals, idx = rows.topk(64, -1)
    cached = TopK(
        vals,
        idx,
        {tau: torch.logsumexp(rows / tau, -1) for tau in cfgs},
        {tau: rest_logsumexp(rows, idx, tau) for tau in cfgs},
    )
    print(
        f"teacher cache: {idx.shape[0]} tokens × k = 64, {idx.shape[0] * bytes_per_token(64, len(cfgs)) / 1e6:.2f} MB "
        f"(a full-vocabulary cache: {rows.numel() * 4 / 1e6:.1f} MB)"
    )

    def blocks_step():
        """The exact online mode as the trainer runs it: CE + KL from hidden states, a block of positions at a time."""
        (body, head), (t_body, t_head) = head_parts(student), head_parts(teacher)
        hidden = body(input_ids=ids).last_hidden_state[mask]
        with torch.no_grad():
            t_hidden = t_body(input_ids=ids).last_hidden_state[mask]
        terms = [Term("ce", 0.5), Term("kl", 0.5, tau=2.0, scale=4.0)]
        loss, _ = chunked_head_loss(
            Head(hidden, head.weight, head.bias), Head(t_hidden, t_head.weight, t_head.bias), labels[mask], terms
        )
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def step(kind: str):
        if kind == "online, in blocks":
            return blocks_step

        def run():
            out = LMBatch(student(input_ids=ids).logits, labels, int(ids.numel()))
            answer = AnswerRows.of(out)  # shared by CE and the KD terms, as in the training loop
            loss = 0.5 * ce_loss(out, [], answer) if kind != "finetune" else ce_loss(out, [], answer)
            if kind == "online":
                with torch.no_grad():
                    tl = teacher(input_ids=ids).logits
                from kd_analysis.losses import LOSSES

                loss = loss + 0.5 * LOSSES["kl"](answer.rows(), tl[mask].float(), tau=2.0, tau_squared=True)
            elif kind.startswith("cached"):
                tau = 1.0 if kind.endswith("τ1") else 2.0
                loss = loss + 0.5 * kd_loss_terms(cfgs[tau], out, cached, width, rows=answer)["kl"]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return run

    times = {
        k: median_ms(step(k), repeats=args.repeats, warmup=2, device=dev)
        for k in ("finetune", "online", "online, in blocks", "cached τ2", "cached τ1")
    }
    tokens = ids.numel()
    rows = [
        {"step": k, "ms": v, "tokens/s": tokens / (v / 1e3), "× fine-tune throughput": times["finetune"] / v}
        for k, v in times.items()
    ]
    n_params = sum(p.numel() for p in student.parameters())
    if dev.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        for r in rows:
            r["MFU"] = (6 * n_params * tokens / (r["ms"] / 1e3)) / peak if peak else float("nan")
    print(f"device {dev}; student {n_params / 1e6:.1f}M params; batch {tuple(ids.shape)}; torch {torch.__version__}")
    print(markdown_table(rows, list(rows[0])))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"device": dev, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
