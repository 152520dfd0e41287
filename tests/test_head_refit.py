"""The second head mixed in after fine-tuning (training/head_refit.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_folder_dataset
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

import wardrobe
from wardrobe.training.head_refit import REFIT_C, refit_head


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_folder_dataset(tmp_path_factory.mktemp("tiny"), per_class=6, size=64)


class _Net(nn.Module):
    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def get_classifier(self):
        return self.head


def _data(classes: int, n: int = 90, dim: int = 8):
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, dim)) + 1.5 * np.eye(dim)[y] + 3.0  # an offset and scales the fit must fold in
    return (x * rng.uniform(0.5, 4, dim)).astype(np.float32), y


def _regression(x, y):
    z = StandardScaler().fit_transform(x)
    return LogisticRegression(C=REFIT_C, max_iter=2000).fit(z, y).decision_function(z)


@pytest.mark.parametrize("weight", [0.25, 1.0])
def test_the_mixed_head_gives_the_mixed_logits(weight):
    x, y = _data(3)
    net = _Net(nn.Linear(8, 3))
    before = net.head(torch.from_numpy(x)).detach().numpy()
    info = refit_head(net, x, y, weight)
    after = net.head(torch.from_numpy(x)).detach().numpy()
    assert info["weight"] == weight and info["c"] == REFIT_C
    np.testing.assert_allclose(after, (1 - weight) * before + weight * _regression(x, y), atol=1e-3)


def test_two_classes_mix_as_the_binary_regression():
    x, y = _data(2)
    net = _Net(nn.Linear(8, 2))
    before = net.head(torch.from_numpy(x)).detach().numpy()
    refit_head(net, x, y, 0.5)
    after = net.head(torch.from_numpy(x)).detach().numpy()
    margin = lambda z: z[:, 1] - z[:, 0]  # noqa: E731 - what a two-class softmax depends on
    np.testing.assert_allclose(margin(after), 0.5 * margin(before) + 0.5 * _regression(x, y), atol=1e-3)


def test_a_head_that_is_not_one_linear_layer_is_left_alone():
    x, y = _data(3)
    net = _Net(nn.Sequential(nn.ReLU(), nn.Linear(8, 3)))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    assert "skipped" in refit_head(net, x, y, 0.25)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_fine_tuning_saves_the_mixed_head_with_or_without_a_validation_split(tiny, tmp_path):
    opts = dict(mode="finetune", model="efficientnet_lite0", epochs=1, image_size=64, batch_size=8, workers=0,
                show_progress=False)
    res = wardrobe.train(tiny, tmp_path / "mixed", val_ratio=0.34, head_refit=0.5, **opts)
    config = json.loads((res.out / "config.json").read_text())
    assert config["head_refit"]["weight"] == 0.5 and config["fit"]["head_refit"] == 0.5
    assert config["validation_figures"]["graded"] == "the kept epoch and its refit head, tau cross-fitted"
    # the saved model is the mixed one: scoring it again gives the run's own validation figures
    assert wardrobe.evaluate(res.out, tiny, show_progress=False)["accuracy"] == pytest.approx(res.metrics["accuracy"])
    res = wardrobe.train(tiny, tmp_path / "all", val_ratio=0, head_refit=0.5, **opts)
    assert json.loads((res.out / "config.json").read_text())["head_refit"]["weight"] == 0.5
    with pytest.raises(wardrobe.WardrobeError, match="--head-refit"):
        wardrobe.train(tiny, tmp_path / "bad", head_refit=1.5, **opts)
