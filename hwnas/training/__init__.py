"""Training a classifier (teacher or child), resumable per epoch, with optional distillation (``loop``), and the fast
depthwise convolutions that make small maps train quickly on the CPU (``depthwise``)."""

from hwnas.training.loop import TrainConfig, evaluate, train_classifier

__all__ = ["TrainConfig", "evaluate", "train_classifier"]
