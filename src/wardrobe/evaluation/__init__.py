"""Evaluation: metrics, figures, reports."""

from wardrobe.evaluation.evaluate import evaluate
from wardrobe.evaluation.metrics import compute_metrics

__all__ = ["compute_metrics", "evaluate"]
