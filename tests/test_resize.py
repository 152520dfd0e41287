"""--resize: how a photo becomes the network's square, in training and in every later use."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from synthetic_photos import banded_portraits
from typer.testing import CliRunner

import wardrobe
from wardrobe import transforms
from wardrobe.cli import app
from wardrobe.data import load_dataset
from wardrobe.errors import WardrobeError
from wardrobe.training import config
from wardrobe.training.config import FitConfig
from wardrobe.training.datamodule import PhotoDataModule
from wardrobe.transforms import Preprocess

runner = CliRunner()


def _tall_photos(root, n=6):
    """Portrait photos whose class shows only in the top eighth, where a centre square never looks."""
    return banded_portraits(root, n, (128, 64))


def _top_rows_colour(batch) -> np.ndarray:
    """Mean RGB of the top eighth of a normalised (0.5, 0.5) float CHW photo."""
    x = batch.numpy() * 0.5 + 0.5
    return x[:, : x.shape[1] // 8].mean((1, 2))


@pytest.mark.parametrize("mode, band_seen", [("crop", False), ("squash", True)])
def test_training_views_follow_the_resize_mode(tmp_path, monkeypatch, mode, band_seen):
    monkeypatch.setenv("WARDROBE_CACHE_DIR", str(tmp_path / "cache"))
    ds = load_dataset(str(_tall_photos(tmp_path / "photos")))
    ds.records = [dataclasses.replace(r, split="train" if i % 3 else "validation") for i, r in enumerate(ds.records)]
    cfg = FitConfig(resize=mode, workers=0).validate()
    pre = Preprocess(input_size=32, resize_mode=mode, mean=(0.5,) * 3, std=(0.5,) * 3)
    data = PhotoDataModule(ds, cfg, pre, show_progress=False)
    data.setup()
    for x, y in (data.val_set[0], data.train_eval_set()[0]):
        red = _top_rows_colour(x)
        assert (red.max() > 0.7 and red.min() < 0.2) == band_seen, red  # a pure band vs grey noise


def test_squash_is_recorded_and_used_for_every_later_prediction(tmp_path):
    photos = _tall_photos(tmp_path / "photos")
    res = wardrobe.train(photos, tmp_path / "ft", mode="finetune", model="efficientnet_lite0", epochs=1,
                         image_size=32, batch_size=4, workers=0, val_ratio=0.34, trainable="last:2",
                         resize="squash", show_progress=False)
    clf = wardrobe.Classifier.load(res.out)
    assert clf.preprocess.resize_mode == "squash"
    pixels = clf.preprocess.pixels(Image.open(next(photos.rglob("red_*.png"))).convert("RGB"))
    assert pixels[0, :3].float().mean() > 200 and pixels[2, :3].float().mean() < 60  # the top band is in view
    assert json.loads((res.out / "config.json").read_text())["fit"]["resize"] == "squash"


def test_unknown_resize_mode_is_a_one_line_error(tmp_path):
    with pytest.raises(WardrobeError, match="--resize letterbox: use crop or squash"):
        FitConfig(resize="letterbox").validate()
    r = runner.invoke(app, ["train", str(_tall_photos(tmp_path / "p", 2)), "--out", str(tmp_path / "o"),
                            "--mode", "finetune", "--resize", "letterbox"])
    assert isinstance(r.exception, WardrobeError) and "--resize letterbox" in str(r.exception)


def test_the_options_resize_modes_are_the_preprocessings():
    assert config.RESIZE_MODES == transforms.RESIZE_MODES  # two copies only so the CLI starts without torch
