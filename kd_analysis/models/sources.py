"""Turn a user's model source into a place transformers can load from, checking it first.

Each check turns a confusing library error (or a 23 s hub time-out) into one plain sentence.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from kd_analysis.exceptions import ModelLoadError
from kd_analysis.hub import hub_reachable, looks_like_hub_id, offline_message
from kd_analysis.models.builtins import BUILTINS, Progress
from kd_analysis.models.specs import ModelSpec

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass
class ResolvedSource:
    kind: str  # builtin | local | hub | hub-cache
    location: str
    notes: list[str] = field(default_factory=list)

    @property
    def local_only(self) -> bool:
        return self.kind != "hub"


def _is_pathlike(source: str) -> bool:
    from kd_analysis.locations import shipped_path

    return (
        source.startswith((".", "/", "~"))
        or "\\" in source
        or Path(source).expanduser().exists()
        or shipped_path(source) is not None
    )


def check_safetensors(path: Path) -> None:
    """Header parses and the file is as long as its header says: catches truncated and garbage files."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n <= 0 or n > min(size - 8, 100 * 2**20):
                raise ValueError("header length out of range")
            header = json.loads(fh.read(n))
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(
            f"{path.name} in {path.parent} is corrupt (not a safetensors file: {exc}); re-save or re-download it"
        ) from None
    if 8 + n + end != size:
        raise ModelLoadError(
            f"{path.name} in {path.parent} is truncated or corrupt ({size} bytes, header "
            f"expects {8 + n + end}); re-save or re-download it"
        )


def check_config(folder: Path, spec: ModelSpec) -> None:
    """config.json is there, is JSON, and needs no remote code the user has not allowed (weights not looked at)."""
    if not (folder / "config.json").exists():
        raise ModelLoadError(
            f"{folder} has no config.json, so it is not a Hugging Face model folder "
            f"(expected config.json, model.safetensors and tokenizer files)"
        )
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"config.json in {folder} is not valid JSON ({exc})") from None
    except RecursionError:
        raise ModelLoadError(f"config.json in {folder} is nested too deeply to be a model config") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"config.json in {folder} must hold a JSON object (it holds a {type(config).__name__})")
    _check_remote_code(config, str(folder), spec)


def check_folder(folder: Path, spec: ModelSpec) -> list[str]:
    """Validate a local model folder; return notes for the user (e.g. pickle checkpoint in use)."""
    notes: list[str] = []
    check_config(folder, spec)
    safes = sorted(folder.glob("*.safetensors"))
    for f in safes:
        check_safetensors(f)
    if not safes:
        if list(folder.glob("pytorch_model*.bin")):
            notes.append(
                "Weights are a pickle checkpoint (pytorch_model.bin): loaded with weights_only=True, "
                "which refuses anything but tensors. Prefer safetensors."
            )
        elif not list(folder.glob("*.gguf")):
            raise ModelLoadError(f"{folder} has config.json but no weights (looked for {', '.join(WEIGHT_FILES)})")
    return notes


def _check_remote_code(config: dict, name: str, spec: ModelSpec) -> None:
    if spec.trust_remote_code is True or not config.get("auto_map"):
        return
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    auto_map, model_type = config["auto_map"], config.get("model_type")
    if not isinstance(auto_map, dict) or not isinstance(model_type, (str, type(None))):
        raise ModelLoadError(f"{name}: config.json's auto_map or model_type is malformed, so it is not loaded")
    if model_type not in CONFIG_MAPPING_NAMES:
        code = sorted({str(v[0] if isinstance(v, list) and v else v) for v in auto_map.values()})
        raise ModelLoadError(
            f"{name} needs its own Python code ({', '.join(code)}), which is not run unless you "
            f"tick 'trust remote code'; only do so if you trust its author"
        )


def _local_path(source: str) -> Path:
    from kd_analysis.locations import local_folder

    return local_folder(source)


def resolve_source(spec: ModelSpec, progress: Progress | None = None) -> ResolvedSource:
    source = (spec.source or "").strip()
    if not source:
        raise ModelLoadError("no model given: choose a built-in, a local folder or a hub id")
    if source in BUILTINS:
        builtin = BUILTINS[source]
        folder = builtin.locate(progress)
        return ResolvedSource("builtin", str(folder), [builtin.description])
    if _is_pathlike(source):
        path = _local_path(source)
        if not path.exists():
            raise ModelLoadError(f"model folder not found: {path}")
        if path.is_file():
            raise ModelLoadError(f"{path} is a file; give the folder that holds config.json and the weights")
        return ResolvedSource("local", str(path.resolve()), check_folder(path, spec))
    if not looks_like_hub_id(source):
        raise ModelLoadError(
            f"{source!r} is not a built-in ({', '.join(BUILTINS)}), an existing folder, or a hub id like 'org/name'"
        )
    if hub_reachable():
        return ResolvedSource("hub", source)
    cached = _hub_cache_folder(source, spec.revision)
    if cached is not None:
        notes = check_folder(cached, spec)
        return ResolvedSource("hub-cache", str(cached), notes + ["Offline: loaded from the local Hugging Face cache."])
    raise ModelLoadError(offline_message("model", source))


def resolve_config_source(spec: ModelSpec, progress: Progress | None = None) -> ResolvedSource:
    """Where config.json is, without requiring weights: for memory estimates before any weight file is read."""
    source = (spec.source or "").strip()
    if source and source not in BUILTINS and _is_pathlike(source):
        path = _local_path(source)
        if path.is_dir():
            check_config(path, spec)
            return ResolvedSource("local", str(path.resolve()))
    elif source and source not in BUILTINS and looks_like_hub_id(source) and not hub_reachable():
        cached = _hub_cache_folder(source, spec.revision)
        if cached is not None:
            check_config(cached, spec)
            return ResolvedSource("hub-cache", str(cached))
    return resolve_source(spec, progress)


def _hub_cache_folder(repo_id: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception:  # not cached (the hub client raises several types for that)
        return None
