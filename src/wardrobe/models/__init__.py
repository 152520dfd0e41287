"""Models: backbones by name, offline weights, classifier construction, fast runtimes."""

from wardrobe.models.registry import DEFAULT_BACKBONE, OFFLINE_MODELS, Backbone, canonical_name, create_backbone

__all__ = ["Backbone", "DEFAULT_BACKBONE", "OFFLINE_MODELS", "canonical_name", "create_backbone"]
