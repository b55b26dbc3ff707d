"""Training: TrainConfig, the accelerate-based distillation loop, evaluation, the run worker."""

from kd_analysis.training.config import LoraSettings, LossTerm, TrainConfig

__all__ = ["LoraSettings", "LossTerm", "TrainConfig"]
