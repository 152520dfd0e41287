"""Training: embeddings + linear probe (and, later, fine-tuning and training from scratch)."""

from wardrobe.training.train import MODES, TrainResult, train

__all__ = ["MODES", "TrainResult", "train"]
