"""Progressive self-knowledge distillation (--self-distill): soft targets from the network's own
last predictions per photo."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import make_folder_dataset

import wardrobe
from wardrobe.training.config import fit_config
from wardrobe.training.selfdistill import Indexed, SelfDistiller


def test_targets_start_as_the_smoothed_labels_and_move_towards_the_remembered_predictions():
    d = SelfDistiller(torch.tensor([0, 1, 2, 1]), 3, alpha=0.8, label_smoothing=0.1)
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 1.0]], requires_grad=True)
    y, idx = torch.tensor([0, 1]), torch.tensor([0, 3])
    # progress 0: the plain label-smoothed cross-entropy
    assert d.loss(logits, y, idx, 0.0).item() == pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.1).item())
    remembered = torch.softmax(logits.detach(), 1)
    assert torch.allclose(d.memory[idx], remembered) and torch.allclose(d.memory[1], d.smoothed(torch.tensor(1)))
    # half-way: 0.4 of the target is what the network said about these photos last time
    new = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)
    loss = d.loss(new, y, idx, 0.5)
    target = 0.6 * d.smoothed(y) + 0.4 * remembered
    assert loss.item() == pytest.approx(-(target * F.log_softmax(new, 1)).sum(1).mean().item(), rel=1e-6)
    loss.backward()
    assert new.grad is not None and new.grad.abs().sum() > 0
    assert d.weight(2.0) == pytest.approx(0.8) and d.weight(-1.0) == 0.0


def test_a_photo_its_network_disagrees_with_gets_a_softer_loss_later_in_training():
    d = SelfDistiller(torch.tensor([0]), 2, alpha=0.8)
    doubtful = torch.tensor([[0.0, 4.0]])  # the network keeps saying class 1 for a photo labelled 0
    first = d.loss(doubtful, torch.tensor([0]), torch.tensor([0]), 0.0).item()
    late = d.loss(doubtful, torch.tensor([0]), torch.tensor([0]), 1.0).item()
    assert late < 0.5 * first


def test_indexed_dataset_appends_each_items_index():
    base = [(torch.zeros(1), 3), (torch.ones(1), 5)]
    x, y, i = Indexed(base)[1]
    assert torch.equal(x, torch.ones(1)) and y == 5 and i == 1 and len(Indexed(base)) == 2


def test_state_round_trips_and_a_mismatched_one_is_ignored():
    d = SelfDistiller(torch.tensor([0, 1]), 2, alpha=0.5)
    d.memory[0] = torch.tensor([0.3, 0.7])
    e = SelfDistiller(torch.tensor([0, 1]), 2, alpha=0.5)
    e.load_state_dict(d.state_dict())
    assert torch.equal(e.memory, d.memory)
    e.load_state_dict({"memory": torch.zeros(5, 2)})  # another dataset's: kept as it was
    assert torch.equal(e.memory, d.memory)


def test_options_are_checked():
    with pytest.raises(wardrobe.WardrobeError, match="--self-distill"):
        fit_config(self_distill=1.0)
    with pytest.raises(wardrobe.WardrobeError, match="--self-distill"):
        fit_config(self_distill=0.8, loss="focal")


def test_training_with_self_distillation_remembers_every_photo(tmp_path, monkeypatch):
    from wardrobe.training import module as module_mod

    seen = {}
    original = module_mod.ClassifierModule.on_train_end

    def keep(self):
        seen["memory"] = self.distiller.memory.clone()
        original(self)

    monkeypatch.setattr(module_mod.ClassifierModule, "on_train_end", keep)
    data = make_folder_dataset(tmp_path / "data", per_class=6, size=64)
    res = wardrobe.train(data, tmp_path / "run", mode="finetune", model="efficientnet_lite0", epochs=2,
                         image_size=64, batch_size=4, workers=0, val_ratio=0.34, show_progress=False,
                         trainable="last:2", self_distill=0.8)
    memory = seen["memory"]
    n_train = res.metrics["counts"]["train"]
    assert memory.shape == (n_train, 3)
    # every training photo was drawn, so each row is a softmax of the network, not the smoothed label
    assert torch.allclose(memory.sum(1), torch.ones(n_train), atol=1e-5)
    labels = SelfDistiller(torch.zeros(n_train, dtype=torch.long), 3, 0.8, 0.1)
    assert not torch.isclose(memory, labels.smoothed(memory.argmax(1))).all(1).any()
    assert json.loads((res.out / "config.json").read_text())["fit"]["self_distill"] == 0.8


def test_checkpoints_carry_the_remembered_predictions_for_resume():
    from wardrobe.models.heads import set_head
    from wardrobe.models.registry import create_backbone
    from wardrobe.training.module import ClassifierModule

    def module():
        model = set_head(create_backbone("efficientnet_lite0", pretrained=False).model, 2, "linear")
        m = ClassifierModule(model, 2, fit_config(self_distill=0.5))
        m.distiller = SelfDistiller(torch.tensor([0, 1, 1]), 2, 0.5)
        return m

    saved, ckpt = module(), {}
    saved.distiller.memory[2] = torch.tensor([0.8, 0.2])
    saved.on_save_checkpoint(ckpt)
    resumed = module()
    resumed.on_load_checkpoint(ckpt)
    assert torch.equal(resumed.distiller.memory, saved.distiller.memory)
