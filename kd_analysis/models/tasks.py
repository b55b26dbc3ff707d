"""Which model class serves a task for a given checkpoint, and which task a checkpoint was made for."""

from __future__ import annotations

from typing import Any

from kd_analysis.exceptions import ModelLoadError
from kd_analysis.models.specs import TASKS


def infer_task(config: Any) -> str:
    """From the checkpoint's saved architecture name; bare encoders default to classification (new head)."""
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "ForMultipleChoice" in archs:
        return "multiple_choice"
    if "ForSequenceClassification" in archs:
        return "classification"
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    if "ForCausalLM" in archs or "LMHeadModel" in archs:
        return "causal_lm"
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
        return "classification"
    return "causal_lm"


def head_for(task: str, config: Any) -> str:
    """How the task's outputs are produced: a task head, or scoring choices with the language-model head.

    Multiple choice on a decoder or seq2seq model scores each choice by its log-likelihood, since those
    families have no multiple-choice head.
    """
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    mt = config.model_type
    if task not in TASKS:
        raise ModelLoadError(f"unknown task {task!r}; one of {', '.join(TASKS)}")
    if task == "multiple_choice":
        if getattr(config, "is_encoder_decoder", False):
            return "seq2seq"
        if mt in MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES and infer_task(config) != "causal_lm":
            return "choice_head"
        return "lm"
    if task == "classification":
        if mt not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
            raise ModelLoadError(f"{mt} models have no sequence-classification head in transformers")
        return "class_head"
    if task == "seq2seq":
        if mt not in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
            raise ModelLoadError(f"{mt} is not an encoder-decoder model; use task causal_lm or classification")
        return "seq2seq"
    if mt not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelLoadError(
            f"{mt} models cannot generate text (no causal-LM head); use classification or multiple_choice"
        )
    return "lm"


def auto_class(head: str):
    import transformers as tf

    return {
        "choice_head": tf.AutoModelForMultipleChoice,
        "class_head": tf.AutoModelForSequenceClassification,
        "lm": tf.AutoModelForCausalLM,
        "seq2seq": tf.AutoModelForSeq2SeqLM,
    }[head]
