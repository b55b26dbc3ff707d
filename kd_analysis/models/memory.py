"""Will a model fit? Compare the estimate from its config with the memory free on the chosen device.

`available_memory_mb` is looked up at call time, so tests (and callers) can monkeypatch it or pass `available_mb`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

WARN_FRACTION = 0.8  # above this share of the available memory: warn; above all of it: refuse


@dataclass(frozen=True)
class MemoryVerdict:
    status: str  # ok | warn | refuse | unknown (available memory could not be read: not checked)
    estimate_mb: float
    available_mb: float | None
    device: str
    message: str

    @property
    def refused(self) -> bool:
        return self.status == "refuse"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _meminfo_available_mb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory_mb(device: str) -> float | None:
    """Memory free for a new model on `device` ("cpu", "cuda", "cuda:N"), in MB; None when it cannot be read."""
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None
        try:
            free, _total = torch.cuda.mem_get_info(torch.device(device))
        except (RuntimeError, ValueError, AssertionError):
            return None
        return free / 2**20
    try:
        import psutil

        return psutil.virtual_memory().available / 2**20
    except Exception:  # not installed, or no permission to read the figures
        pass
    found = _meminfo_available_mb()
    if found is not None:
        return found
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (ValueError, OSError, AttributeError):
        return None


def format_mb(mb: float) -> str:
    """'664,832 MB (649.2 GB)': both units, so huge and small figures read at a glance."""
    return f"{mb:,.0f} MB ({mb / 1024:,.1f} GB)" if mb >= 1024 else f"{mb:,.0f} MB"


def check_memory(
    estimate_mb: float, device: str, available_mb: float | Callable[[str], float | None] | None = None
) -> MemoryVerdict:
    """ok / warn (above 80% of what is free) / refuse (above what is free) for `estimate_mb` on `device`.

    `available_mb`: a number, a function of the device, or None to read the machine's free memory now.
    """
    if available_mb is None:
        available_mb = available_memory_mb(device)
    elif callable(available_mb):
        available_mb = available_mb(device)
    where = "GPU memory free" if str(device).startswith("cuda") else "RAM available"
    need = f"needs about {format_mb(estimate_mb)} on {device}"
    if available_mb is None:
        return MemoryVerdict(
            "unknown", estimate_mb, None, str(device), f"{need}; the {where} could not be read, so this was not checked"
        )
    have = f"{format_mb(available_mb)} of {where}"
    if estimate_mb > available_mb:
        status, text = "refuse", f"{need} but only {have}: it will not fit"
    elif estimate_mb > WARN_FRACTION * available_mb:
        status, text = "warn", f"{need}, close to the {have}: loading may fail or swap"
    else:
        status, text = "ok", f"{need}; {have}"
    return MemoryVerdict(status, round(float(estimate_mb), 1), round(float(available_mb), 1), str(device), text)


def verdict_for(estimate: Any, available_mb: float | Callable[[str], float | None] | None = None) -> MemoryVerdict:
    """The verdict for a `MemoryEstimate`: weights plus the activation margin (its inference figure)."""
    return check_memory(estimate.inference_mb, estimate.device, available_mb)
