"""Is the Hugging Face Hub reachable? Answered in well under a second, so offline machines fail fast.

Without this, transformers waits ~23 s per file before giving up on an unreachable hub.
"""

from __future__ import annotations

import os
import re
import socket
from urllib.parse import urlparse

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_cache: dict[str, bool] = {}


def looks_like_hub_id(text: str) -> bool:
    return bool(HUB_ID.match(text)) and ".." not in text and not text.endswith((".json", ".csv", ".tsv", ".jsonl"))


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def offline_forced() -> bool:
    return any(
        os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_reachable(timeout: float = 1.5) -> bool:
    """True when a TCP connection to the hub's host opens within `timeout` seconds (cached per process)."""
    if offline_forced():
        return False
    url = urlparse(hub_endpoint())
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    key = f"{host}:{port}"
    if key not in _cache:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                _cache[key] = True
        except OSError:
            _cache[key] = False
    return _cache[key]


def offline_message(what: str, name: str) -> str:
    return (
        f"{what} '{name}' is not a local path or built-in, and this machine is offline (the Hugging Face Hub "
        f"at {hub_endpoint()} cannot be reached), so it cannot be downloaded. Use a local folder or a built-in, "
        f"or connect and try again."
    )
