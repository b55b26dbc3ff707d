"""Where and in what precision models run: CUDA in bf16 when present, else CPU in fp32."""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BYTES = {torch.float32: 4, torch.bfloat16: 2, torch.float16: 2}


def pick_device(requested: str = "auto") -> torch.device:
    if requested in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from kd_analysis.exceptions import KDLensError

        raise KDLensError(f"device {requested!r} asked for, but this machine has no CUDA GPU; use 'auto' or 'cpu'")
    return dev


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested in ("auto", "", None):
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if requested not in DTYPES:
        from kd_analysis.exceptions import KDLensError

        raise KDLensError(f"unknown dtype {requested!r}; one of auto, {', '.join(DTYPES)}")
    return DTYPES[requested]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def describe_device() -> dict:
    """What the app can run on, for display: GPU name and memory when present."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {
            "device": "cuda",
            "name": props.name,
            "memory_gb": round(props.total_memory / 2**30, 1),
            "count": torch.cuda.device_count(),
        }
    return {"device": "cpu", "name": "CPU", "threads": torch.get_num_threads()}
