"""Progressive resizing (--progressive): the crop sides per epoch, the shared crop size that loader
workers see, training on growing crops, and the time budget that counts the cheaper epochs."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from conftest import make_folder_dataset
from torch.utils.data import DataLoader, Dataset

import wardrobe
from wardrobe.errors import WardrobeError
from wardrobe.training.augment import GrowingCrop, progressive_sides

TINY = dict(image_size=64, batch_size=8, workers=0, val_ratio=0.34, show_progress=False, crop_scale=0.5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_folder_dataset(tmp_path_factory.mktemp("tiny"), per_class=6, size=64)


def test_sides_grow_in_steps_of_16_to_the_full_size_by_the_ramp_epoch():
    assert progressive_sides(160, 224, 14, 7) == [160, 176, 176, 192, 192, 208, 208] + [224] * 7
    assert progressive_sides(160, 224, 9, 4) == [160, 176, 192, 208] + [224] * 5
    assert progressive_sides(128, 224, 3, 0) == [128, 224, 224]  # the ramp is at least one epoch
    assert progressive_sides(100, 150, 4, 2) == [100, 128, 150, 150]  # never below start nor above the end


class _Pixels(Dataset):
    def __init__(self, transform):
        self.transform = transform

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return self.transform(torch.zeros(3, 80, 80, dtype=torch.uint8))


def test_a_new_crop_size_reaches_a_persistent_loader_worker():
    crop = GrowingCrop([32, 32], scale=(0.5, 1.0), antialias=True)
    loader = DataLoader(_Pixels(crop), batch_size=2, num_workers=1, persistent_workers=True)
    assert {tuple(b.shape[-2:]) for b in loader} == {(32, 32)}
    crop.size = [24, 40]  # in the training process, after the worker started
    assert {tuple(b.shape[-2:]) for b in loader} == {(24, 40)}


class _Sides(L.Callback):
    """The training batches' side, one per epoch."""

    def __init__(self):
        self.sides: list[int] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == 0:
            self.sides.append(batch[0].shape[-1])


def test_training_crops_grow_until_the_weight_average_starts(tiny, tmp_path):
    # the fast path too: the frozen stages run in ONNX Runtime, one graph per crop size
    seen = _Sides()
    res = wardrobe.train(tiny, tmp_path / "run", mode="finetune", model="efficientnet_lite0", epochs=4,
                         progressive=32, average_from=0.5, trainable="last:3", freeze_bn=True,
                         extra_callbacks=[seen], **TINY)
    assert seen.sides == [32, 48, 64, 64]
    assert json.loads((res.out / "config.json").read_text())["fit"]["progressive"] == 32
    assert wardrobe.Classifier.load(res.out).preprocess.input_size == 64  # tested at full size


def test_the_time_budget_counts_small_crop_epochs_at_their_cost(tiny, tmp_path, monkeypatch):
    # A full-size epoch "takes" 100 s, a smaller one 100 s times its crops' area over the full area.
    # Budget 420 s: after the first epoch (32 px, 25 s) six epochs (32, 48, 48, 64, 64, 64 px) would
    # need 433 s with the margin, five (32, 48, 64, 64, 64) 374 s: the plan is five from there on. Judged
    # by the cheap first epoch's raw time, all six would have seemed to fit.
    from lightning.pytorch.callbacks import Timer

    seen = _Sides()
    monkeypatch.setattr(Timer, "time_elapsed",
                        lambda self, stage="train": sum(100.0 * (s / 64) ** 2 for s in seen.sides))
    res = wardrobe.train(tiny, tmp_path / "run", mode="scratch", model="simple_cnn", epochs=6, progressive=32,
                         average_from=0.5, warmup_epochs=1, max_minutes=7, extra_callbacks=[seen], **TINY)
    assert seen.sides == [32, 48, 64, 64, 64]
    assert (res.out / "model.safetensors").exists()


def test_progressive_needs_random_crops_below_the_training_size(tiny, tmp_path):
    base = dict(TINY, mode="scratch", model="simple_cnn", epochs=1)
    with pytest.raises(WardrobeError, match="--progressive 64"):
        wardrobe.train(tiny, tmp_path / "a", progressive=64, **base)
    with pytest.raises(WardrobeError, match="--crop-scale below 1"):
        wardrobe.train(tiny, tmp_path / "b", progressive=32, **{**base, "crop_scale": 1.0})
