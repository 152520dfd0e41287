"""Offline EfficientNet-Lite weights and the backbone registry."""

from __future__ import annotations

import pytest
import torch

from wardrobe.errors import WardrobeError
from wardrobe.models import create_backbone
from wardrobe.models.lite import LITE_INPUT_SIZE, lite_state_dict, lite_weights_path


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_timm_lite_matches_reference_logits(name):
    """The key mapping is right: timm's architecture with mapped weights gives the reference
    implementation's ImageNet logits."""
    import timm
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    size = LITE_INPUT_SIZE[name]
    x = torch.randn(2, 3, size, size)
    ref = EfficientNet.from_pretrained(name.replace("_", "-"), weights_path=lite_weights_path(name)).eval()
    ours = timm.create_model(f"tf_{name}", pretrained=False)
    ours.load_state_dict(lite_state_dict(name))
    with torch.no_grad():
        a, b = ref(x), ours.eval()(x)
    assert a.shape == (2, 1000)
    assert torch.allclose(a, b, atol=1e-4, rtol=0), (a - b).abs().max()


def test_backbone_gives_pooled_embeddings_and_own_preprocessing():
    bb = create_backbone("lite1")
    assert bb.name == "efficientnet_lite1" and bb.arch == "tf_efficientnet_lite1"
    assert bb.preprocess.input_size == 240
    with torch.no_grad():
        out = bb.model(torch.zeros(1, 3, 240, 240))
    assert out.shape == (1, bb.num_features) == (1, 1280)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(WardrobeError, match="unknown model 'no_such_net'"):
        create_backbone("no_such_net")


def test_online_model_offline_is_one_clear_line(monkeypatch):
    from wardrobe.models import registry

    monkeypatch.setattr(registry, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setenv("HF_HOME", "/nonexistent-wardrobe-hf-home")
    with pytest.raises(WardrobeError) as e:
        create_backbone("resnet18", pretrained=True)
    msg = str(e.value)
    assert "cannot be downloaded" in msg and "efficientnet_lite0" in msg and "\n" not in msg


def test_random_init_timm_model_works_offline():
    bb = create_backbone("resnet18", pretrained=False)
    assert bb.weights == "random" and bb.num_features == 512


def test_one_registry_every_network_from_timm():
    """Scratch networks are registered with timm, the Lite weights are a weight source of their
    entries, and model files that name the old architecture strings still build."""
    import timm

    from wardrobe.models.registry import ENTRIES, OFFLINE_MODELS, build_network, lookup

    assert timm.is_model("wardrobe_alexnet") and timm.is_model("wardrobe_simple_cnn")
    net = timm.create_model("wardrobe_simple_cnn", num_classes=3)
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 3)
    assert OFFLINE_MODELS == ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
    lite1 = lookup("lite1")
    assert lite1.arch == "tf_efficientnet_lite1" and lite1.weights.offline and lite1.preprocess.input_size == 240
    assert lookup("alexnet").weights is None and lookup("resnet18").weights.offline is False
    assert len({e.name for e in ENTRIES}) == len(ENTRIES)
    assert type(build_network("wardrobe.alexnet", 2)).__name__ == "AlexNet"  # a model file from before
