"""wardrobe: from folders of clothing photos to accurate, fast image classifiers.

The API below is imported on first use (PEP 562), so `import wardrobe.cli` and `wardrobe --help`
do not pay for torch, timm and Lightning until a command needs them.
"""

from importlib import import_module

from wardrobe.errors import WardrobeError
from wardrobe.version import __version__

_API = {
    "Classifier": "wardrobe.inference", "DataOptions": "wardrobe.data", "bench": "wardrobe.evaluation",
    "compare": "wardrobe.evaluation", "cross_validate": "wardrobe.evaluation", "evaluate": "wardrobe.evaluation",
    "label_photos": "wardrobe.inference.batch", "load_dataset": "wardrobe.data", "predict": "wardrobe.inference",
    "train": "wardrobe.training", "label_catalogue": "wardrobe.inference.labelling",
    "Explainer": "wardrobe.inference.explain", "create_review_app": "wardrobe.inference.review",
}
__all__ = ["WardrobeError", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        value = getattr(import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wardrobe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
