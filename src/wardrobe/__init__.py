"""wardrobe: from folders of clothing photos to accurate, fast image classifiers."""

from wardrobe.data import DataOptions, load_dataset
from wardrobe.errors import WardrobeError
from wardrobe.evaluation import bench, compare, cross_validate, evaluate
from wardrobe.inference import Classifier, predict
from wardrobe.inference.batch import label_photos
from wardrobe.training import train
from wardrobe.version import __version__

__all__ = ["Classifier", "DataOptions", "WardrobeError", "evaluate", "load_dataset", "predict", "train"]
__all__ += ["__version__", "bench", "compare", "cross_validate", "label_photos"]
