"""Setting a run up: the accelerator and trackers, the models on their device, LoRA, the optimiser and learning-rate schedule, TAID's schedule, the on-policy sampler's generator, and the checks that refuse a set-up before any step."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import torch

from kd_analysis.exceptions import KDLensError
from kd_analysis.losses import LOSSES
from kd_analysis.training.batches import (
    head_split_matches,
)
from kd_analysis.training.config import TrainConfig
from kd_analysis.training.taid import TaidSchedule


def lr_factor(cfg: TrainConfig, per_epoch: int, total: int) -> Callable[[int], float]:
    """The learning-rate multiplier at step s: linear warm-up, then the configured schedule."""

    def factor(s: int) -> float:
        warm = min(1.0, (s + 1) / max(cfg.warmup_steps, 1))
        if cfg.schedule == "cosine_epoch":  # CosineAnnealingLR's closed form, T_max = one epoch, eta_min = 0
            return warm * 0.5 * (1 + math.cos(math.pi * s / per_epoch))
        return warm * max(0.0, 1 - s / max(total, 1))

    return factor


def make_optimizer(cfg: TrainConfig, params):
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def apply_lora(cfg: TrainConfig, model):
    from peft import LoraConfig, get_peft_model

    lora = cfg.lora
    if lora is None:
        raise ValueError("apply_lora needs the run's LoRA settings")  # callers check cfg.lora first
    heads = [n for n in ("classifier", "score") if hasattr(model, n)]
    lcfg = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        modules_to_save=heads or None,
    )
    return get_peft_model(model, lcfg)


def device_and_precision(cfg: TrainConfig) -> tuple[bool, str]:
    """(CPU only, accelerate's mixed_precision) for a run: what training used, and what a rebuild of its
    evaluation must use to reproduce it."""
    cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    return cpu, "no" if cpu or cfg.precision == "fp32" else ("fp16" if cfg.precision == "fp16" else "bf16")


def teacher_spec(cfg: TrainConfig, device: str):
    """The teacher as a run loads it: the run's task, float32 when the run fine-tunes it."""
    from kd_analysis.models.specs import ModelSpec

    return ModelSpec.from_dict(
        {
            **cfg.teacher.to_dict(),
            "device": device,
            "task": cfg.task or cfg.teacher.task,
            "dtype": "float32" if cfg.train_teacher else cfg.teacher.dtype,
        }
    )


def make_accelerator(cfg: TrainConfig, out_dir: str | Path | None, trackers: list[str]):
    from accelerate import Accelerator

    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise KDLensError(f"device {cfg.device} was asked for, but this machine has no CUDA GPU: use auto or cpu")
    cpu, mixed = device_and_precision(cfg)
    return Accelerator(
        cpu=cpu,
        mixed_precision=mixed,
        gradient_accumulation_steps=cfg.grad_accum,
        log_with=trackers or None,
        project_dir=str(out_dir) if out_dir else None,
    )


def load_models(cfg: TrainConfig, device: str, say: Callable[[str], None]):
    from kd_analysis.models.loading import load_model
    from kd_analysis.models.students import derive_student

    tspec = teacher_spec(cfg, device)
    say(f"loading teacher {tspec.source} on {device}")
    teacher = load_model(tspec)
    if cfg.train_teacher:
        return teacher, teacher
    say(f"building student: {cfg.student.describe()}")
    student = derive_student(teacher, cfg.student)
    student.model.float()
    return teacher, student


def policy_rng(cfg: TrainConfig, task: str) -> random.Random | None:
    if not cfg.on_policy or cfg.on_policy.fraction <= 0:
        return None
    if task != "causal_lm":
        raise KDLensError(f"on-policy distillation needs a causal language-model teacher (this one is {task})")
    return random.Random(cfg.seed * 7919 + 17)  # its own stream: the data order does not move with λ


def check_bucketed(cfg: TrainConfig, width: int | None) -> None:
    """A term without a form on the top-k cache's k + 1 buckets (ULD) is refused before training, unless k covers
    every shared column (then there is no bucket and the value is the dense one)."""
    if width and cfg.teacher_topk and cfg.teacher_topk >= width:
        return
    for t in cfg.kd_terms:
        spec = LOSSES[t.name]
        if spec.bucketed == "none":
            raise KDLensError(
                f"{spec.title} has no form on the top-{cfg.teacher_topk} teacher cache (it ranks every token of "
                "both distributions, and the cache merges the teacher's tail into one bucket): set "
                "teacher_cache: none"
            )


def taid_schedule(cfg: TrainConfig) -> TaidSchedule | None:
    term = next((t for t in cfg.kd_terms if t.name == "taid"), None)
    if term is None:
        return None
    schedule = TaidSchedule.from_params(LOSSES["taid"].resolve(term.params))
    if not 0 <= schedule.t_start < schedule.t_end <= 1:
        raise KDLensError(f"TAID needs 0 ≤ taid_t_start < taid_t_end ≤ 1 (got {schedule.t_start} and {schedule.t_end})")
    return schedule


def blockwise(cfg: TrainConfig, teacher, student, processes: int, say: Callable[[str], None]) -> bool:
    """Whether the exact online mode computes its terms block by block from hidden states; says why not."""
    if not (cfg.online and teacher.task == "causal_lm" and cfg.kd_terms and not cfg.train_teacher):
        return False
    batchwise = [LOSSES[t.name].title for t in cfg.kd_terms if LOSSES[t.name].batchwise]
    if batchwise:
        why = f"{', '.join(batchwise)} couples positions, so it needs every row at once"
    elif processes > 1:
        why = "several processes train together (the blocks would bypass the wrapper that syncs gradients)"
    elif not (head_split_matches(teacher) and head_split_matches(student)):
        why = "a model's output layer does not reproduce its logits (e.g. soft-capped or scaled logits)"
    else:
        say("exact online mode: every term computed from both models' hidden states, a block of positions at a time")
        return True
    say(f"exact online mode on full [positions, vocabulary] logits: {why}")
    return False


def check_cross_vocab(cfg: TrainConfig, say: Callable[[str], None]) -> None:
    if cfg.priming:
        raise KDLensError(
            "priming aligns the teacher's answer tokens with the student's one to one, which needs one tokenizer; "
            "this pair tokenizes apart"
        )
    say(
        "cross-tokenizer pair: the teacher runs every step on its own tokenization of the same texts, and "
        f"{', '.join(t.name for t in cfg.kd_terms)} compares the i-th answer token of each (the shorter answer "
        "sets how many)"
    )


def point_adapter_at(folder: Path, base_source: str) -> None:
    """peft records the base as an absolute path; name the user's source (e.g. a built-in) so it loads anywhere."""
    import json

    cfg_path = folder / "adapter_config.json"
    data = json.loads(cfg_path.read_text(encoding="utf-8"))
    data["base_model_name_or_path"] = base_source
    cfg_path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def tracker_installed(name: str) -> bool:
    import importlib.util

    module = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}.get(name, name)
    return importlib.util.find_spec(module) is not None


def pair_for_run(cfg: TrainConfig, teacher, student, say: Callable[[str], None], warn: Callable[[str], None]):
    """(aligned output width, whether the pair distils across vocabularies): the pair check, refusing KD terms
    that cannot compare these outputs and warning when the student is the bigger model."""
    from kd_analysis.models.pair import check_pair

    report = check_pair(teacher, student)
    cross_vocab = (
        bool(cfg.kd_terms)
        and not report.comparable
        and all(LOSSES[t.name].cross_vocab and report.losses.get(t.name, {}).get("applies") for t in cfg.kd_terms)
    )
    if cross_vocab:
        check_cross_vocab(cfg, say)
    elif cfg.kd_terms and not report.comparable:
        raise KDLensError(
            "these teacher and student outputs are not comparable, so "
            f"{', '.join(t.name for t in cfg.kd_terms)} cannot be used: "
            + " ".join(report.notes)
            + " Use ce only, a cross-tokenizer loss (uld) for two language models, or a student with the "
            "teacher's tokenizer/labels."
        )
    width = report.aligned_outputs
    t_n, s_n = teacher.info().parameters, student.info().parameters
    if s_n > t_n:
        warn(f"the student ({s_n:,} parameters) is bigger than the teacher ({t_n:,})")
    return width, cross_vocab


def optimisation(cfg: TrainConfig, acc, student, teacher, objective, train_set: list):
    """The trained model (LoRA-wrapped when asked), its optimiser, the shuffled loader and the learning-rate
    schedule, prepared by accelerate; with the optimiser steps per epoch and in all."""
    model = apply_lora(cfg, student.model) if cfg.lora else student.model
    model.train()
    teacher.model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(cfg, params + (list(objective.parameters()) if objective is not None else []))
    loader: torch.utils.data.DataLoader[int] = torch.utils.data.DataLoader(
        list(range(len(train_set))),  # type: ignore[arg-type]  # a list of indices is a map-style data set
        batch_size=cfg.batch_size,
        shuffle=True,
        collate_fn=list,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    per_epoch = max(1, math.ceil(len(loader) / cfg.grad_accum))
    total = math.ceil(cfg.epochs * per_epoch) if cfg.epochs else cfg.steps
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, per_epoch, total))
    model, optimizer, loader, sched = acc.prepare(model, optimizer, loader, sched)
    return model, optimizer, loader, sched, params, per_epoch, total
