"""kd-lens as the analysis layer for distillation trained elsewhere: a Trainer callback, a logging API for custom
loops (`kd_analysis.track`) and an importer for finished Trainer folders, all writing kd-lens run folders."""

from __future__ import annotations

from typing import Any

__all__ = ["KDLensCallback"]


def __getattr__(name: str) -> Any:
    if name == "KDLensCallback":  # transformers is imported only by those who use the callback
        from kd_analysis.integrations.trainer_callback import KDLensCallback

        return KDLensCallback
    raise AttributeError(name)
