"""Inference: the Classifier and batch prediction."""

from wardrobe.inference.classifier import Classifier
from wardrobe.inference.predict import expand_paths, format_rows, predict

__all__ = ["Classifier", "expand_paths", "format_rows", "predict"]
