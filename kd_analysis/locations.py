"""Where kd-lens keeps files it makes for itself: the cache of dequantised models, uploads and teacher outputs
(`$KD_LENS_CACHE`, else ~/.cache/kd-lens). A foundation module, so data, models and methods can all find it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("KD_LENS_CACHE", Path.home() / ".cache" / "kd-lens"))
