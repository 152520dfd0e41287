"""Evaluation: metrics, figures, reports, cross-validation, robustness, calibration, speed, comparison."""

from wardrobe.evaluation.calibration import expected_calibration_error
from wardrobe.evaluation.compare import compare
from wardrobe.evaluation.cv import cross_validate, make_folds
from wardrobe.evaluation.evaluate import evaluate
from wardrobe.evaluation.robustness import CORRUPTIONS, robustness
from wardrobe.evaluation.speed import bench
from wardrobe.metrics import compute_metrics, fit_temperature

__all__ = ["CORRUPTIONS", "bench", "compare", "compute_metrics", "cross_validate", "evaluate",
           "expected_calibration_error", "fit_temperature", "make_folds", "robustness"]
