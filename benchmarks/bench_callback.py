"""Cost of KDLensCallback between evaluations: the per-step time of a transformers Trainer fine-tuning MiniLM
(22M parameters) on the sentiment demo, with and without the callback, measured in the same run, alternating.
Each step is timed from the end of the one before (after `--skip` warm-up steps, before the last), and the
median step is compared, so the callback's own evaluations at the start and the end are outside the window. Target: at most 2% slower.

Run: python benchmarks/bench_callback.py [--json benchmarks/results/callback-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import markdown_table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--skip", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from kd_analysis.data.sources import load_dataset
    from kd_analysis.integrations import KDLensCallback
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.specs import ModelSpec

    data = load_dataset("demo:sentiment").examples
    train, held_out = data[:256], data[256:288]

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: dict[int, float] = {}

        def on_step_end(self, a, state, control, **kw):
            self.ends[state.global_step] = time.perf_counter()

    def per_step_ms(with_callback: bool) -> float:
        loaded = load_model(ModelSpec("minilm", task="classification", device="cpu"))
        tok = loaded.tokenizer
        enc = tok([e.text for e in train], padding="max_length", truncation=True, max_length=64)

        class Rows(torch.utils.data.Dataset):
            def __len__(self) -> int:
                return len(train)

            def __getitem__(self, i: int) -> dict:
                return {k: enc[k][i] for k in ("input_ids", "attention_mask")} | {"labels": train[i].label}

        clock = Clock()
        callbacks: list = [clock]
        if with_callback:
            callbacks.append(KDLensCallback(tempfile.mkdtemp(), name="bench", eval_examples=held_out))
        settings = TrainingArguments(
            output_dir=tempfile.mkdtemp(),
            max_steps=args.steps,
            per_device_train_batch_size=16,
            logging_steps=1,  # the callback's busiest case: a metrics line every step
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        Trainer(
            model=loaded.model, args=settings, train_dataset=Rows(), processing_class=tok, callbacks=callbacks
        ).train()
        window = range(args.skip + 1, args.steps)  # the last step's end is followed by the final evaluation
        # the median step, not the mean: one step slowed by the machine (another process, a page fault) moves a
        # mean of 55 steps more than the callback's cost does
        return statistics.median(clock.ends[s] - clock.ends[s - 1] for s in window) * 1e3

    plain, tracked = [], []
    for _ in range(args.repeats):  # alternating, so drift in the machine's speed hits both alike
        plain.append(per_step_ms(False))
        tracked.append(per_step_ms(True))
    base, with_cb = statistics.median(plain), statistics.median(tracked)
    rows = [
        {"case": "Trainer", "ms per step": base, "ratio": 1.0},
        {"case": "Trainer + KDLensCallback", "ms per step": with_cb, "ratio": with_cb / base},
    ]
    print(
        f"torch threads {torch.get_num_threads()}, {args.steps} steps, batch 16, max_length 64, repeats {args.repeats}"
    )
    print(markdown_table(rows, ["case", "ms per step", "ratio"]))
    print(f"overhead: {(with_cb / base - 1) * 100:+.1f}% (target: at most +2%)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "plain": plain, "tracked": tracked}, indent=2) + "\n")


if __name__ == "__main__":
    main()
