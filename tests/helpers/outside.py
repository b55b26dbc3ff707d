"""Training that kd-lens does not drive, on tiny random checkpoints: a transformers Trainer with KDLensCallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def perturbed(model: Any, scale: float = 0.05, seed: int = 1) -> Any:
    """The same architecture with other weights: a teacher that disagrees with the student somewhat."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model


def classification_trainer(
    folder: Path, output_dir: Path, callbacks: list, *, steps: int = 3, train_size: int = 32, **args: Any
):
    """A plain Trainer fine-tuning a tiny BERT classifier on the sentiment demo (CE only), with `callbacks`."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    from kd_analysis.data.sources import load_dataset

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    train = load_dataset("demo:sentiment").examples[:train_size]
    enc = tok([e.text for e in train], padding=True, truncation=True, max_length=32)

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(train)

        def __getitem__(self, i: int) -> dict:
            return {
                "input_ids": enc["input_ids"][i],
                "attention_mask": enc["attention_mask"][i],
                "labels": train[i].label,
            }

    settings = dict(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=8,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    settings.update(args)
    return Trainer(
        model=model, args=TrainingArguments(**settings), train_dataset=Rows(), processing_class=tok, callbacks=callbacks
    )
