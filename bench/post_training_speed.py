"""The passes a fine-tuning run makes over its photos after training (validation scores, then the
training photos' embeddings for the unknown-photo detector), timed the way `wardrobe train` makes
them (training/finetune.py: predict_probs, pixel cache, the run's own view): the whole network in
ONNX Runtime (today) against eager PyTorch (WARDROBE_FAST_PATH=off, the path before session 34),
taken in turn, with the export counted. Also prints how far the two paths' scores are apart.
Run: WARDROBE_DATA_DIR=../shared/data .venv/bin/python bench/post_training_speed.py runs/best [--photos 1024]"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from wardrobe.data import load_dataset
from wardrobe.data.splits import assign_splits
from wardrobe.models.modelfile import load_model
from wardrobe.training.config import fit_config
from wardrobe.training.datamodule import PhotoDataModule
from wardrobe.training.finetune import predict_probs
from wardrobe.transforms import Preprocess


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path, help="a fine-tuning run folder (its model.safetensors and config.json)")
    ap.add_argument("--photos", type=int, default=1024, help="photos per pass (0: every photo of the run)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    config = json.loads((args.run / "config.json").read_text())
    model, meta = load_model(args.run)
    model = model.eval()
    ds = assign_splits(load_dataset(config["data"]), config.get("val_ratio", 0.15))
    pre = Preprocess.from_dict(meta["preprocess"])
    dm = PhotoDataModule(ds, fit_config(workers=0), pre, show_progress=True)
    dm.setup("fit")
    photos = dm.train_eval_set()
    n = len(photos) if not args.photos else min(args.photos, len(photos))
    subset = [photos[i] for i in range(n)]  # decoded once, so the passes time the network alone
    print(f"{args.run}: {n} photos at {pre.input_size} px, {os.cpu_count()} CPUs")
    times: dict[str, list[float]] = {"eager PyTorch": [], "ONNX Runtime (export included)": []}
    scores = {}
    for _ in range(args.rounds):
        for name, fast in (("eager PyTorch", "off"), ("ONNX Runtime (export included)", "auto")):
            os.environ["WARDROBE_FAST_PATH"] = fast
            t0 = time.perf_counter()
            scores[name] = predict_probs(model, subset, 0)
            times[name].append(time.perf_counter() - t0)
    for name, t in times.items():
        print(f"{name:32s} {n / np.median(t):6.1f} photos/s  ({', '.join(f'{s:.1f}' for s in t)} s)")
    ratio = np.median(times["eager PyTorch"]) / np.median(times["ONNX Runtime (export included)"])
    (pa, ea), (pb, eb) = scores.values()
    print(f"ONNX Runtime / eager: {ratio:.2f}x; probabilities apart by at most {np.abs(pa - pb).max():.2e}, "
          f"embeddings by {np.abs(ea - eb).max():.2e}, top-1 agreement {(pa.argmax(1) == pb.argmax(1)).mean():.4f}")


if __name__ == "__main__":
    main()
