"""kd-lens's trainer against TRL's `DistillationTrainer` on identical set-ups: same-run speed, memory and loss ratios.

What it measures: ms per optimiser step (median after 2 warm-up steps) and the peak resident memory of the whole
process (ru_maxrss, one subprocess per trainer/mode, since that figure only ever grows), for

- TRL 1.16 `DistillationTrainer`: forward KL (beta = 0) at temperature 1, the teacher online (its forward runs every
  step), full vocabulary through TRL's chunked hidden-state × lm_head divergence (`ChunkedDivergenceFunction`).
  TRL 1.16 has no off-policy setting (no lambda / on-policy fraction: the student always generates its
  completions), so the benchmark subclasses it and overrides one method, `_generate_single_turn`, to return each
  prompt's fixed completion from the data set instead of sampling one; nothing is generated, and the loss,
  teacher forward, optimiser and scheduler are TRL's own. It also records each step's prompt/completion lengths.
- kd-lens `exact`: teacher_topk None / teacher_cache "none": the teacher runs every step, full vocabulary, nothing
  cached. The only kd-lens mode that computes the same loss as TRL, so the losses of both are compared step by step.
- kd-lens `topk64`: the default teacher cache (top-64 + one tail bucket per target token), on a data set of
  steps × batch examples, so every step is a cache miss (the teacher runs and its top-k is stored).
- kd-lens `topk64-cached`: the same on one batch of examples repeated, so every step after the first reads the
  cache: the steady state of a multi-epoch run.

Why: the issue sets targets against TRL measured in the same run: the exact mode at ≥ 1.0× TRL's throughput and ≤
TRL's peak memory; the cached top-k + tail mode at ≥ 2× TRL's throughput.

Set-up (identical for both trainers): random-init Llama teacher (6 layers) and student (2 layers), hidden 256,
intermediate 688, 4 heads (2 key/value heads), tied embeddings, vocabulary 8,192, fp32, seed 0; a word-level
tokenizer built in code (no downloads); 8 sequences × 128 tokens (32 prompt + 96 completion, the loss on the
completion only); AdamW, lr 5e-5, linear decay, no warm-up, no clipping, no gradient accumulation; torch's default
threads. kd-lens's evaluation (at step 0 and at the end) is not timed: its step times come from each step's
`examples_per_s`; TRL's from on_step_begin → on_step_end. Both trainers see the same batches in the same order
(the TRL run replays the batches kd-lens's exact run drew).

Run: python benchmarks/bench_peer.py [--steps 8] [--quick] [--json benchmarks/results/peer-cpu.json]
     python benchmarks/bench_peer.py --one trl|exact|topk64|topk64-cached   (one measurement, printed as JSON)
TRL is a benchmark-only dependency: pip install --no-deps trl==1.16.0 (without it only kd-lens is measured).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, fields
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import markdown_table

TRL_VERSION = "1.16.0"
INSTALL = f"pip install --no-deps trl=={TRL_VERSION}"
MODES = ("exact", "trl", "topk64", "topk64-cached")  # exact first: the TRL run replays its batches
RESULT = "@@bench_peer "  # prefix of the one JSON line a `--one` subprocess prints
SEED, LR, WARMUP = 0, 5e-5, 2
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>", "Question:", "Answer:")  # prompt = <s> Question: … Answer:
TARGETS = {"exact": "≥ 1.0× speed, ≤ 1.0× RSS", "topk64": "none set", "topk64-cached": "≥ 2× speed", "trl": ""}


@dataclass(frozen=True)
class Shape:
    vocab: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    teacher_layers: int
    student_layers: int
    batch: int
    prompt: int  # tokens per prompt: BOS, "Question:", the words, "Answer:"
    completion: int  # tokens per completion: the words, then EOS

    def describe(self) -> str:
        return (
            f"Llama teacher {self.teacher_layers} layers / student {self.student_layers} layers, hidden {self.hidden}, "
            f"intermediate {self.intermediate}, {self.heads} heads ({self.kv_heads} key/value), tied embeddings, "
            f"vocabulary {self.vocab:,}, fp32; batch {self.batch} × {self.prompt + self.completion} tokens "
            f"({self.prompt} prompt + {self.completion} completion)"
        )


FULL = Shape(8192, 256, 688, 4, 2, 6, 2, 8, 32, 96)
QUICK = Shape(1024, 64, 172, 4, 2, 2, 1, 4, 8, 24)


# --- the shared set-up ----------------------------------------------------------------------------------------
def build_tokenizer(shape: Shape):
    """A word-level tokenizer over exactly `shape.vocab` ids: the specials, then words w0, w1, …; BOS is added."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    table = {t: i for i, t in enumerate(SPECIALS)}
    table.update({f"w{i}": len(SPECIALS) + i for i in range(shape.vocab - len(SPECIALS))})
    core = Tokenizer(models.WordLevel(table, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", table["<s>"])])
    core.decoder = decoders.WordPiece()  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def write_data(path: Path, shape: Shape, n: int) -> Path:
    """n examples of random words whose prompt and completion tokenise to exactly shape.prompt / shape.completion."""
    rng = random.Random(SEED)
    words = shape.vocab - len(SPECIALS)

    def text(k: int) -> str:
        return " ".join(f"w{rng.randrange(words)}" for _ in range(k))

    rows = [
        {"id": f"ex{i:04d}", "text": text(shape.prompt - 3), "answer": text(shape.completion - 1)} for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def build_models(shape: Shape):
    from transformers import LlamaConfig, LlamaForCausalLM

    common = dict(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(SEED)
    teacher = LlamaForCausalLM(LlamaConfig(num_hidden_layers=shape.teacher_layers, **common)).float().eval()
    student = LlamaForCausalLM(LlamaConfig(num_hidden_layers=shape.student_layers, **common)).float().train()
    return teacher, student


def rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def step_ms(seconds: list[float]) -> float:
    timed = seconds[WARMUP:] or seconds
    return statistics.median(timed) * 1e3


def examples_of(path: Path):
    from kd_analysis.data.sources import load_dataset

    return load_dataset(str(path)).examples


# --- kd-lens --------------------------------------------------------------------------------------------------
def run_kdlens(mode: str, shape: Shape, steps: int, tmp: Path) -> dict:
    from kd_analysis.models.loading import LoadedModel
    from kd_analysis.models.scoring import mc_prompt
    from kd_analysis.models.specs import ModelSpec
    from kd_analysis.training.batches import target_lengths
    from kd_analysis.training.config import LossTerm, TrainConfig
    from kd_analysis.training.loop import train

    n_train = shape.batch if mode == "topk64-cached" else steps * shape.batch
    data = write_data(tmp / "data.jsonl", shape, n_train + 1)  # + 1 held out: kd-lens evaluates on it
    tok = build_tokenizer(shape)
    teacher, student = build_models(shape)
    spec = ModelSpec("bench-peer-teacher", "causal_lm", dtype="float32")

    def loaded(model, name):
        return LoadedModel(
            spec=spec if name == "teacher" else ModelSpec("bench-peer-student", "causal_lm", dtype="float32"),
            model=model,
            tokenizer=tok,
            task="causal_lm",
            head="lm",
            source_kind="local",
            location=f"random-init {name}",
        )

    settings = dict(
        teacher=spec,
        data=str(data),
        losses=[LossTerm("ce", 0.0), LossTerm("kl", 1.0)],
        tau=1.0,
        tau_squared=False,
        optimizer="adamw",
        lr=LR,
        weight_decay=0.0,
        schedule="linear",
        warmup_steps=0,
        max_grad_norm=None,
        steps=steps,
        batch_size=shape.batch,
        grad_accum=1,
        max_length=shape.prompt + shape.completion,
        eval_every=steps + 1,
        eval_size=1,
        teacher_topk=None if mode == "exact" else 64,
        seed=SEED,
        device="cpu",
        precision="fp32",
        save_checkpoint=False,
    )
    if "teacher_cache" in {f.name for f in fields(TrainConfig)}:
        settings["teacher_cache"] = "none" if mode == "exact" else "topk"
    cfg = TrainConfig(**settings)

    # which examples each training step drew (the student's input embedding sees every training forward), and how
    # many rows the teacher ran on in training (evaluation runs it on the one held-out example at a time)
    examples = examples_of(data)
    by_prompt = {tuple(tok(mc_prompt(ex))["input_ids"][: shape.prompt]): ex for ex in examples}
    batches: list[list[str]] = []
    lengths: list[int] = []
    teacher_rows: list[int] = []

    def record(module, args):
        if module.training:
            ids = args[0]
            batches.append([by_prompt[tuple(row[: shape.prompt].tolist())].id for row in ids])
            lengths.extend([int(ids.shape[1])] * ids.shape[0])

    def record_teacher(module, args):
        if args[0].shape[0] > 1:
            teacher_rows.append(int(args[0].shape[0]))

    hooks = [
        student.get_input_embeddings().register_forward_pre_hook(record),
        teacher.get_input_embeddings().register_forward_pre_hook(record_teacher),
    ]
    metrics: list[dict] = []
    start_rss = rss_now_mb()
    try:
        result = train(cfg, models=(loaded(teacher, "teacher"), loaded(student, "student")), on_metrics=metrics.append)
    finally:
        for hook in hooks:
            hook.remove()
    per_step = [m for m in metrics if "examples_per_s" in m]
    seen = {ex.id: ex for ex in examples}
    completion = target_lengths(tok, [seen[i] for b in batches for i in b], cfg.max_length)
    return {
        "mode": mode,
        "state": result.state,
        "steps": len(per_step),
        "step_s": [cfg.batch_size / m["examples_per_s"] for m in per_step],
        "loss": [m["loss"] for m in per_step],
        "cache_hits": per_step[-1].get("teacher_cache_hits") if per_step else None,
        "teacher_forwards": len(teacher_rows),
        "teacher_sequences": sum(teacher_rows),
        "batches": batches,
        "tokens": {
            "sequence": sorted(set(lengths)),
            "prompt": sorted({s - c for s, c in zip(lengths, completion)}),
            "completion": sorted(set(completion)),
        },
        "start_rss_mb": start_rss,
        "peak_rss_mb": peak_rss_mb(),
    }


# --- TRL ------------------------------------------------------------------------------------------------------
def run_trl(shape: Shape, steps: int, tmp: Path, order: list[list[str]] | None) -> dict:
    if importlib.util.find_spec("trl") is None:
        return {"mode": "trl", "skipped": f"TRL is not installed, so only kd-lens was measured: {INSTALL}"}
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DistillationConfig, DistillationTrainer

    from kd_analysis.models.scoring import mc_prompt
    from kd_analysis.training.batches import lm_target

    n_train = steps * shape.batch
    data = write_data(tmp / "data.jsonl", shape, n_train + 1)  # the same file as kd-lens's exact run
    tok = build_tokenizer(shape)
    teacher, student = build_models(shape)
    examples = {ex.id: ex for ex in examples_of(data)}
    if order is None:  # standalone: the file's order (kd-lens draws other batches, so losses do not compare)
        ids = list(examples)[:n_train]
        order = [ids[i : i + shape.batch] for i in range(0, n_train, shape.batch)]
    prompts = [mc_prompt(examples[i]) for batch in order for i in batch]
    # the data set's completion for each prompt, tokenised exactly as kd-lens does (answer text, then EOS)
    fixed, name = {}, {}
    for ex in examples.values():
        key = tuple(tok(mc_prompt(ex))["input_ids"])
        fixed[key] = tok(lm_target(ex), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        name[key] = ex.id

    class FixedCompletions(DistillationTrainer):
        """DistillationTrainer trained off-policy: each prompt's completion is the data set's, not a sample."""

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, has_tool_images=False):
            out = [list(fixed[tuple(p)]) for p in prompt_ids]
            seen.append([(name[tuple(p)], len(p), len(c)) for p, c in zip(prompt_ids, out)])
            return out

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step_s.append(time.perf_counter() - self.t0)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    seen: list[list[tuple[str, int, int]]] = []  # per step: (example id, prompt tokens, completion tokens)
    step_s: list[float] = []
    losses: list[float] = []
    config = DistillationConfig(
        output_dir=str(tmp / "trl"),
        max_steps=steps,
        per_device_train_batch_size=shape.batch,
        gradient_accumulation_steps=1,
        learning_rate=LR,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        optim="adamw_torch",
        max_grad_norm=0.0,  # no clipping (the Trainer still computes the norm it logs)
        beta=0.0,  # forward KL(teacher ‖ student)
        temperature=1.0,
        max_completion_length=shape.completion,
        shuffle_dataset=False,  # the batches come in the order of `order`
        gradient_checkpointing=False,  # TRL's default is True; kd-lens does not checkpoint
        bf16=False,  # TRL's default is True; both run fp32
        fp16=False,
        use_cpu=True,
        seed=SEED,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = FixedCompletions(
        model=student,
        teacher_model=teacher,
        args=config,
        train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
        processing_class=tok,
        callbacks=[Clock()],
    )
    start_rss = rss_now_mb()
    trainer.train()
    return {
        "mode": "trl",
        "trl_version": trl.__version__,
        "steps": len(step_s),
        "step_s": step_s,
        "loss": losses,
        "batches": [[i for i, _, _ in b] for b in seen],
        "tokens": {
            "sequence": sorted({p + c for b in seen for _, p, c in b}),
            "prompt": sorted({p for b in seen for _, p, _ in b}),
            "completion": sorted({c for b in seen for _, _, c in b}),
        },
        "start_rss_mb": start_rss,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_one(mode: str, shape: Shape, steps: int, order_file: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_peer_") as tmp:
        if mode == "trl":
            order = json.loads(Path(order_file).read_text()) if order_file else None
            return run_trl(shape, steps, Path(tmp), order)
        return run_kdlens(mode, shape, steps, Path(tmp))


# --- the parent: one subprocess per measurement, then the table ---------------------------------------------------
def measure(mode: str, args, order_file: Path | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", mode, "--steps", str(args.steps)]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--order", str(order_file)] if mode == "trl" and order_file else []
    print(f"  {mode} …", end=" ", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
    if not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
        out = {"mode": mode, "error": f"exit {proc.returncode}, no result; last output:\n{tail}"}
    else:
        out = json.loads(lines[-1][len(RESULT) :])
    print(f"{time.perf_counter() - t0:.0f} s", flush=True)
    return out


def header(shape: Shape, steps: int) -> list[str]:
    return [
        f"set-up: {shape.describe()}; seed {SEED}; {steps} steps (median over steps {WARMUP + 1}..{steps}); "
        f"AdamW lr {LR:g}, linear decay, no warm-up, no clipping, no accumulation; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        f"TRL {TRL_VERSION} DistillationTrainer: beta 0 (forward KL), temperature 1, teacher online (forward every "
        "step), full vocabulary (ChunkedDivergenceFunction on hidden states × lm_head), fp32, no gradient "
        "checkpointing, optim adamw_torch",
        "TRL is run OFF-POLICY on the data set's fixed prompt + completion: TRL 1.16 has no off-policy / lambda "
        "setting, so a subclass overrides only `_generate_single_turn` to return each prompt's completion from the "
        "data set (nothing is generated); loss, teacher forward, optimiser and scheduler are TRL's",
        "kd-lens: losses [ce 0, kl 1], tau 1, no tau²; exact = teacher_topk None / teacher_cache none (the only mode "
        "with TRL's loss); topk64 = top-64 + tail cache, every step a miss; topk64-cached = one batch repeated, every "
        "step after the first reads the cache",
    ]


def table(results: dict[str, dict]) -> list[dict]:
    trl = results.get("trl", {})
    trl_ok = "step_s" in trl
    rows = []
    for mode in ("trl", "exact", "topk64", "topk64-cached"):
        r = results.get(mode, {})
        if "step_s" not in r:
            continue
        ms, rss = step_ms(r["step_s"]), r["peak_rss_mb"]
        speed = step_ms(trl["step_s"]) / ms if trl_ok else float("nan")
        memory = rss / trl["peak_rss_mb"] if trl_ok else float("nan")
        diff = "—"
        if mode == "exact" and trl_ok and r["batches"] == trl["batches"] and len(r["loss"]) == len(trl["loss"]):
            diff = f"{max(abs(a - b) for a, b in zip(r['loss'], trl['loss'])):.1e}"
        elif mode != "trl":
            diff = "no TRL run" if not trl_ok else "n/a (other loss)" if mode != "exact" else "other batches"
        met = ""
        if trl_ok and mode == "exact":
            met = "met" if speed >= 1.0 and memory <= 1.0 else "missed"
        elif trl_ok and mode == "topk64-cached":
            met = "met" if speed >= 2.0 else "missed"
        rows.append(
            {
                "mode": mode,
                "ms/step": ms,
                "TRL ms ÷ ms (speed)": speed,
                "peak RSS MB": rss,
                "RSS ÷ TRL RSS": memory,
                "peak − start RSS MB": rss - r["start_rss_mb"],
                "final loss": f"{r['loss'][-1]:.6f}" if r["loss"] else "—",
                "max abs Δloss vs TRL": diff,
                "target": TARGETS[mode],
                "met": met,
            }
        )
    return rows


def report(results: dict[str, dict]) -> None:
    for mode, r in results.items():
        if "skipped" in r:
            print(r["skipped"])
        elif "error" in r:
            print(f"{mode} FAILED: {r['error']}")
    tokens = {m: r["tokens"] for m, r in results.items() if "tokens" in r}
    for mode, t in tokens.items():
        print(
            f"tokens per sequence, {mode}: {t['sequence']} = prompt {t['prompt']} + completion {t['completion']} "
            "(loss on completion tokens)"
        )
    rows = table(results)
    if rows:
        print(markdown_table(rows, list(rows[0])))
    exact, trl = results.get("exact", {}), results.get("trl", {})
    if "loss" in exact and "loss" in trl:
        same = exact["batches"] == trl["batches"]
        print(f"same batches in the same order for exact and TRL: {'yes' if same else 'NO'}")
        print("loss per step, exact: " + " ".join(f"{v:.6f}" for v in exact["loss"]))
        print("loss per step, TRL:   " + " ".join(f"{v:.6f}" for v in trl["loss"]))
        if same and len(exact["loss"]) == len(trl["loss"]):
            pairs = list(zip(exact["loss"], trl["loss"]))
            gap = max(abs(a - b) for a, b in pairs)
            rel = max(abs(a - b) / max(abs(b), 1e-12) for a, b in pairs)
            agree = all(round(a, 5) == round(b, 5) for a, b in pairs)
            print(
                f"losses agree to 5 decimals at every step: {'yes' if agree else 'NO'} (max abs difference "
                f"{gap:.2e}, max relative {rel:.1e}); only the exact mode computes TRL's loss (full-vocabulary "
                "forward KL at τ 1): topk64 modes train on the top-64 + tail-bucket KL, a different number"
            )
    for mode in ("exact", "topk64", "topk64-cached"):
        r = results.get(mode, {})
        if "teacher_forwards" in r:
            print(
                f"{mode}: the teacher ran {r['teacher_forwards']} times on {r['teacher_sequences']} sequences in "
                f"{r['steps']} training steps (teacher-cache hits reported by kd-lens: {r['cache_hits']})"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--steps", type=int, help=f"optimiser steps per run (default 8, --quick 4; the first {WARMUP} warm up)"
    )
    ap.add_argument("--quick", action="store_true", help="a tiny set-up (smoke check in seconds)")
    ap.add_argument("--json", help="write every measurement (per-step times and losses) here")
    ap.add_argument("--one", choices=MODES, help="run one measurement in this process and print it as JSON")
    ap.add_argument("--order", help="(with --one trl) a JSON file of the batches, as example ids, to replay")
    args = ap.parse_args()
    shape = QUICK if args.quick else FULL
    args.steps = args.steps or (4 if args.quick else 8)
    if args.one:
        try:
            out = run_one(args.one, shape, args.steps, args.order)
        except Exception as exc:
            lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()
            print(RESULT + json.dumps({"mode": args.one, "error": "\n".join(lines[-8:])}), flush=True)
            sys.exit(1)
        print(RESULT + json.dumps(out), flush=True)
        return
    for line in header(shape, args.steps):
        print(line)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_peer_") as tmp:
        order_file = None
        for mode in MODES:
            results[mode] = measure(mode, args, order_file)
            if mode == "exact" and "batches" in results[mode]:
                order_file = Path(tmp) / "order.json"
                order_file.write_text(json.dumps(results[mode]["batches"]))
    report(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        payload = {"setup": header(shape, args.steps), "rows": table(results), "runs": results}
        Path(args.json).write_text(json.dumps(payload, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
