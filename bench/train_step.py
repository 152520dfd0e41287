"""Training-step throughput (forward + backward + AdamW step, batch 32, synthetic input, no data
loading) for the layout and freezing choices behind the best preset.
Run: .venv/bin/python bench/train_step.py"""

from __future__ import annotations

import os
import time

import torch

from wardrobe.models.heads import set_head
from wardrobe.models.registry import create_backbone
from wardrobe.models.stages import stage_modules


def rate(name: str, size: int, frozen_stages: int = 0, channels_last: bool = True, steps: int = 3) -> float:
    model = set_head(create_backbone(name).model, 10).train()
    for stage in stage_modules(model)[:frozen_stages]:
        stage.requires_grad_(False)
        stage.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-3)
    x = torch.randn(32, 3, size, size).to(memory_format=fmt)
    y = torch.randint(0, 10, (32,))
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return 32 * steps / (time.perf_counter() - t0)


def main() -> None:
    print(f"machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    for name, size, frozen, cl in [("efficientnet_lite0", 224, 0, False), ("efficientnet_lite0", 224, 0, True),
                                   ("efficientnet_lite0", 224, 3, True), ("efficientnet_lite1", 240, 0, True),
                                   ("efficientnet_lite1", 240, 4, True)]:
        print(f"{name} {size} px, {'channels-last' if cl else 'contiguous'}, {frozen} frozen stages: "
              f"{rate(name, size, frozen, cl):.1f} images/s")


if __name__ == "__main__":
    main()
