"""Training: the probe, and fine-tuning or training from scratch on Lightning.

``train`` is imported on first use (PEP 562), so the command line can read the option
declarations in ``wardrobe.training.config`` without importing torch."""

from importlib import import_module

__all__ = ["MODES", "TrainResult", "train"]


def __getattr__(name: str):
    if name in __all__:
        value = getattr(import_module("wardrobe.training.train"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wardrobe.training' has no attribute {name!r}")
