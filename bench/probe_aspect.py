"""Frozen features of input shapes: the Lite1 probe (3 levels, signed square root, logistic
regression) on clothing-top10 validation with each photo squashed into a square, into a 3:4
portrait (its own shape for most of these photos), or its centre cut out. Eager PyTorch, no cache.

Run: .venv/bin/python bench/probe_aspect.py MODE:HEIGHT:WIDTH ...
     (session 32: squash:272:272 squash:320:240 squash:288:224 crop:272:272; ~2.5 min each)
"""

import sys
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from wardrobe.data.presets import load_preset
from wardrobe.models.levels import use_levels
from wardrobe.models.registry import create_backbone
from wardrobe.training.probe import fit_linear_probe, head_features
from wardrobe.transforms import Preprocess


class Views(Dataset):
    """Each photo through ``pre``: squashed into its input, or its centre ("crop": shorter side to
    the input / 0.875, then the centre)."""

    def __init__(self, records, pre: Preprocess):
        self.records, self.pre = records, pre

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.pre.pixels(Image.open(self.records[i].path).convert("RGB"))


def main() -> None:
    torch.set_num_threads(2)
    ds = load_preset("clothing-top10")
    train, val = ds.split("train"), ds.split("validation")
    records = train + val
    y = np.array([ds.classes.index(r.label) for r in records])
    n = len(train)
    model = use_levels(create_backbone("efficientnet_lite1").model, 3).eval().to(memory_format=torch.channels_last)
    for spec in sys.argv[1:]:
        mode, h, w = spec.split(":")
        pre = Preprocess(input_size=int(h), resize_mode=mode, aspect=int(w) / int(h))
        t = time.time()
        feats = []
        with torch.inference_mode():
            for px in DataLoader(Views(records, pre), batch_size=32, num_workers=1):
                x = pre.normalize(px).contiguous(memory_format=torch.channels_last)
                feats.append(model(x).reshape(len(px), -1).numpy())
        x = head_features(np.concatenate(feats), "sqrt_linear")
        weights, bias, fit = fit_linear_probe(x[:n], y[:n], x[n:], y[n:], len(ds.classes))
        right = int(np.sum((x[n:] @ weights.T + bias).argmax(1) == y[n:]))
        loss = min(r["val_log_loss"] for r in fit["search"])
        print(f"{spec}: validation accuracy {right / len(val):.4f} ({right}/{len(val)}), C {fit['C']}, "
              f"log-loss {loss:.4f}, {time.time() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
