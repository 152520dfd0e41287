"""Progressive self-knowledge distillation (PS-KD, Kim et al. 2021, ICCV).

Each training photo's target mixes its (smoothed) label with the network's own prediction for that
photo the last time it was drawn, with a weight that grows linearly from 0 at the start of training to
``alpha`` at its end: labels the network keeps finding ambiguous (a long dress labelled longsleeve)
are softened, the confident ones keep their label. It needs no second network and no extra forward
pass: the predictions are the training steps' own, kept per photo.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Indexed(torch.utils.data.Dataset):
    """A dataset's (x, y) items with their index appended: (x, y, i), so a batch knows its photos."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y = self.dataset[i]
        return x, y, i


class SelfDistiller:
    """Per-photo memory of the network's last predicted probabilities, and the soft targets and loss
    built from it."""

    def __init__(self, labels: torch.Tensor, num_classes: int, alpha: float, label_smoothing: float = 0.0):
        self.alpha, self.num_classes, self.label_smoothing = alpha, num_classes, label_smoothing
        # a photo not drawn yet is its own smoothed label: its target is then the plain smoothed one
        self.memory = self.smoothed(torch.as_tensor(labels, dtype=torch.long))

    def smoothed(self, y: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(y, self.num_classes).float()
        return one_hot * (1 - self.label_smoothing) + self.label_smoothing / self.num_classes

    def weight(self, progress: float) -> float:
        """The predictions' share of the target ``progress`` (0 to 1) of the way through training."""
        return self.alpha * min(1.0, max(0.0, progress))

    def loss(self, logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, progress: float) -> torch.Tensor:
        """Cross-entropy against the mixed targets; remembers this step's predictions for the photos."""
        idx = idx.to(self.memory.device)
        w = self.weight(progress)
        target = (1 - w) * self.smoothed(y).to(logits.device) + w * self.memory[idx].to(logits.device)
        log_p = F.log_softmax(logits, dim=1)
        self.memory[idx] = log_p.detach().exp().to(self.memory.device, self.memory.dtype)
        return -(target * log_p).sum(dim=1).mean()

    def state_dict(self) -> dict:
        return {"memory": self.memory.clone()}

    def load_state_dict(self, state: dict) -> None:
        memory = state.get("memory")
        if isinstance(memory, torch.Tensor) and memory.shape == self.memory.shape:
            self.memory = memory.float().cpu()
