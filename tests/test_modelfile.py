"""The model file: self-describing, safe to load, refuses files it cannot read."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from wardrobe.errors import WardrobeError
from wardrobe.models.modelfile import FORMAT_VERSION, load_model, read_meta, save_model


def _tiny(tmp_path, **meta_overrides):
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=2)
    meta = {"arch": "tf_efficientnet_lite0", "classes": ["a", "b"],
            "preprocess": {"input_size": 224, "resize_mode": "crop", "crop_pct": 0.875, "interpolation": "bicubic",
                           "mean": [0.5] * 3, "std": [0.5] * 3}, **meta_overrides}
    return model, save_model(tmp_path / "m.safetensors", model, meta)


def test_round_trip_keeps_weights_and_description(tmp_path):
    model, path = _tiny(tmp_path, metrics={"validation": {"accuracy": 0.9}})
    loaded, meta = load_model(path)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert meta["classes"] == ["a", "b"] and meta["format_version"] == FORMAT_VERSION
    assert meta["versions"]["torch"] == torch.__version__.split("+")[0] or meta["versions"]["torch"]
    assert meta["metrics"]["validation"]["accuracy"] == 0.9


def test_run_folder_is_accepted(trained_run):
    meta = read_meta(trained_run)
    assert meta["classes"] == ["circle", "square", "triangle"]
    assert meta["backbone"] == "efficientnet_lite1" and meta["preprocess"]["input_size"] == 240 and meta["levels"] == 3


def test_file_from_another_version_is_refused(tmp_path):
    model, path = _tiny(tmp_path)
    from safetensors.torch import load_file

    meta = read_meta(path)
    meta["format_version"] = FORMAT_VERSION + 1
    meta["versions"]["wardrobe"] = "9.0.0"
    save_file(load_file(str(path)), str(path), metadata={"wardrobe": json.dumps(meta)})
    with pytest.raises(WardrobeError, match=r"format 2 \(made by wardrobe 9.0.0\) is not supported"):
        load_model(path)


@pytest.mark.parametrize("content", [b"", b"hello, not a model", b"\x80\x02}q\x00."])
def test_garbage_and_pickles_are_refused(tmp_path, content):
    p = tmp_path / "model.safetensors"
    p.write_bytes(content)
    with pytest.raises(WardrobeError, match="not a wardrobe model file"):
        load_model(p)


def test_plain_safetensors_without_metadata_is_refused(tmp_path):
    p = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(WardrobeError, match="no wardrobe metadata"):
        load_model(p)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(WardrobeError, match="model file not found"):
        load_model(tmp_path / "nope.safetensors")
    with pytest.raises(WardrobeError, match="no model.safetensors in this folder"):
        load_model(tmp_path)
