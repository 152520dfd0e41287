"""MixUp / CutMix on training batches (training/mixing.py)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_folder_dataset

import wardrobe
from wardrobe.training.knobs import resolve_augment
from wardrobe.training.mixing import BatchMixer, mixed_loss


def test_no_share_leaves_the_batch_alone():
    x, y = torch.rand(8, 3, 16, 16), torch.arange(8) % 3
    out, y1, other, lam = BatchMixer(0.0)(x, y)
    assert out is x and y1 is y and other is None and lam == 1.0


def test_mixed_batches_are_mixup_or_cutmix_with_the_true_share():
    n = 8
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 20, 20)  # photo i: all pixels i
    y = torch.arange(n)  # each photo its own class, so a partner's label names the partner
    kinds = set()
    torch.manual_seed(1)
    mixer = BatchMixer(1.0)
    for _ in range(40):
        out, y1, other, lam = mixer(x, y)
        assert other is not None and 0 <= lam <= 1 and torch.equal(y1, y)
        for i in range(n):
            j = int(other[i])
            values = out[i].unique()
            if len(values) == 1 and j != i:  # MixUp: every pixel lam * i + (1 - lam) * j
                kinds.add("mixup")
                assert float(values[0]) == pytest.approx(lam * i + (1 - lam) * j, abs=1e-5)
            elif j != i:  # CutMix: a box of the partner's pixels covering 1 - lam of the photo
                kinds.add("cutmix")
                assert set(values.tolist()) <= {float(i), float(j)}
                assert float((out[i] == i).float().mean()) == pytest.approx(lam, abs=1e-6)
    assert kinds == {"mixup", "cutmix"}


def test_mixed_loss_is_the_cross_entropy_on_mixed_soft_labels():
    torch.manual_seed(0)
    logits, y, y2 = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([3, 2, 1, 0, 1, 0])
    lam = 0.3
    soft = lam * torch.nn.functional.one_hot(y, 4).float() + (1 - lam) * torch.nn.functional.one_hot(y2, 4).float()
    expected = torch.nn.functional.cross_entropy(logits, soft)
    got = mixed_loss(torch.nn.CrossEntropyLoss(), logits, y, y2, lam)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.equal(mixed_loss(torch.nn.CrossEntropyLoss(), logits, y, None, 1.0),
                       torch.nn.functional.cross_entropy(logits, y))


def test_mix_is_a_checked_training_flag(tmp_path_factory, tmp_path):
    with pytest.raises(wardrobe.WardrobeError, match="--mix"):
        resolve_augment("light", mix=1.5)
    data = make_folder_dataset(tmp_path_factory.mktemp("mix"), per_class=4, size=48)
    res = wardrobe.train(data, tmp_path / "run", mode="finetune", model="efficientnet_lite0", epochs=1, image_size=48,
                         batch_size=6, workers=0, val_ratio=0.34, show_progress=False, trainable="head", mix=1.0)
    assert json.loads((res.out / "config.json").read_text())["fit"]["augment"]["mix"] == 1.0
    assert res.metrics["accuracy"] >= 0  # trained through mixed batches to a written model
